"""How the api role writes: publish a command, await its reply, await the projections.

The api never touches the aggregate. A write is a command on `{prefix}.commands`, like any
producer's; its answer is the reply on `{prefix}.replies`. Every api process reads every
partition of the replies topic from the end (no consumer group: each process must see the
replies to its own commands, wherever the commands role published them).

Read-your-writes: a reply is published only after the store committed the command's events,
so the store's notification head read after the reply covers them; the write answers once
every view has reached that head. Past the timeout the caller answers 202 with the command id.

While the broker is away a write is refused at once (`BrokerUnavailable`, a 503), and one
whose command the broker did not acknowledge within the timeout too: the client may send it
again with the same command id, and at most one of the two is applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from contracts.commands import AnyCommand
from contracts.keys import kafka_key
from contracts.limits import MAX_COMMAND_BYTES
from contracts.replies import Reply
from flowledger._producer import Outgoing, ResilientProducer, SendFailed
from flowledger._replies import ReplyListener

log = logging.getLogger(__name__)


# How long the broker may take to acknowledge a command before the write answers 503. Apart
# from the write timeout: a command the broker took is answered 202 past that one.
PUBLISH_TIMEOUT_S = 10.0


class CommandTooLarge(Exception):
    """The command, encoded, is larger than the commands role accepts: it is not published,
    since its only answer would be a `command.too_large` rejection."""


class BrokerUnavailable(Exception):
    """The command could not be handed to the broker: nothing is known to be applied."""


class CommandGateway:
    def __init__(
        self,
        bootstrap: str,
        commands_topic: str,
        replies_topic: str,
        head: Callable[[], int | None],
        positions: Callable[[], list[int | None]],
        timeout_s: float,
        broker_reachable: Callable[[], bool] = lambda: True,
    ) -> None:
        self._commands_topic = commands_topic
        self._replies_topic = replies_topic
        self._head = head
        self._positions = positions
        self.timeout_s = timeout_s
        self._broker_reachable = broker_reachable
        self.healthy = True  # the last publish was acknowledged
        self._replies = ReplyListener(bootstrap, replies_topic, "api")
        # Recreated after a failed send: a broker restart can leave a producer's session dead.
        self._producer = ResilientProducer(bootstrap, ack_timeout_s=PUBLISH_TIMEOUT_S)

    async def start(self) -> None:
        await self._producer.start()
        await self._replies.start()

    async def stop(self) -> None:
        await self._replies.stop()
        await self._producer.stop()

    async def submit(self, command: AnyCommand) -> Reply | None:
        """Publishes `command` and returns its reply once the views show it; None when that
        did not happen within the timeout."""
        if not self._replies.started:
            raise RuntimeError("the gateway is not started")
        if not self._broker_reachable():
            raise BrokerUnavailable("the Kafka broker is unreachable; try again shortly")
        command_id = command.command_id
        key, value = kafka_key(command).encode(), msgspec.json.encode(command)
        if len(key) + len(value) > MAX_COMMAND_BYTES:
            raise CommandTooLarge(
                f"the command is {len(key) + len(value)} bytes as JSON; the limit is "
                f"{MAX_COMMAND_BYTES} ({MAX_COMMAND_BYTES // 1024} KiB)"
            )
        future = self._replies.expect(command_id)
        try:
            await self._publish(command_id, key, value)
            async with asyncio.timeout(self.timeout_s):
                # Shielded: a timeout must not cancel the future, whose reply may still count.
                reply = await asyncio.shield(future)
                if reply.outcome != "rejected":
                    head = await asyncio.to_thread(self._head)
                    await self._projections_reach(head or 0)
            return reply
        except TimeoutError:
            # A rejection needs no projection, so it is answered even when they lag behind.
            late = future.result() if future.done() and not future.cancelled() else None
            return late if late is not None and late.outcome == "rejected" else None
        finally:
            self._replies.forget(command_id)

    async def _publish(self, command_id: str, key: bytes, value: bytes) -> None:
        message = Outgoing(self._commands_topic, value, key)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):  # a producer's start included
                too_large = await self._producer.send_all([message])
        except (SendFailed, TimeoutError) as error:
            self.healthy = False
            raise BrokerUnavailable(
                f"the broker did not take command {command_id}: try again"
            ) from error
        self.healthy = True
        if too_large:
            raise CommandTooLarge(f"the broker refused command {command_id} as too large")

    async def _projections_reach(self, head: int) -> None:
        delay = 0.005
        while any((p or 0) < head for p in await asyncio.to_thread(self._positions)):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
