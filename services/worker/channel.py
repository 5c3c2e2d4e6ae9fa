"""The worker's progress commands: published on `{prefix}.commands`, each awaited until its
reply arrives on `{prefix}.replies` (the engine's `Progress` port).

Like the api's gateway, the worker reads every partition of the replies topic from the end,
without a consumer group: replies are keyed like their commands, wherever the commands role
published them. A reply that does not come within `resend_after_s` (the commands role is
down, or lagging) makes the worker send the same command again: same command id, so the
commands role applies it once and answers the repeat `duplicate` with the first answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec

from contracts.commands import AnyCommand
from contracts.keys import kafka_key
from contracts.replies import Reply
from flowledger._backoff import Backoff
from flowledger._producer import Outgoing, ResilientProducer, SendFailed
from flowledger._replies import ReplyListener

log = logging.getLogger("flowledger.worker")

RESEND_AFTER_S = 15.0


class CommandChannel:
    def __init__(
        self,
        bootstrap: str,
        commands_topic: str,
        replies_topic: str,
        *,
        resend_after_s: float = RESEND_AFTER_S,
    ) -> None:
        self._commands_topic = commands_topic
        self._resend_after_s = resend_after_s
        self._producer = ResilientProducer(bootstrap)
        self._replies = ReplyListener(bootstrap, replies_topic, "worker")

    async def start(self) -> None:
        await self._producer.start()
        await self._replies.start()

    async def stop(self) -> None:
        await self._replies.stop()
        await self._producer.stop()

    async def send(self, command: AnyCommand) -> Reply:
        """The command's reply; sends it again (same id) while none comes."""
        future = self._replies.expect(command.command_id)
        message = Outgoing(
            self._commands_topic, msgspec.json.encode(command), kafka_key(command).encode()
        )
        backoff = Backoff(f"worker: sending {type(command).__name__}", log)
        try:
            while True:
                try:
                    await self._producer.send_all([message])
                except SendFailed as error:
                    await asyncio.sleep(backoff.failed(error))
                    continue
                backoff.succeeded()
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), self._resend_after_s)
                log.warning(
                    "no reply to %s %s within %.0f s; sending it again",
                    type(command).__name__,
                    command.command_id,
                    self._resend_after_s,
                    extra={"command_id": command.command_id},
                )
        finally:
            self._replies.forget(command.command_id)
