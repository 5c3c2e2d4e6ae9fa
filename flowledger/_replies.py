"""Awaiting the reply to a command this process published; reading a topic without a group.

Every partition of `{prefix}.replies` is read from its end at start, without a consumer group:
each process that publishes commands (the SDK's client, a worker, the api's gateway) sees every
reply and picks out those it waits for. No group means no rebalance pauses and nothing to
commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.replies import Reply
from flowledger._backoff import Backoff

log = logging.getLogger(__name__)


class TopicMissing(RuntimeError):
    """The replies or events topic does not exist: no Flowledger with this topic prefix has
    started on this broker."""


async def consumer_at(bootstrap: str, topic: str, *, from_beginning: bool) -> AIOKafkaConsumer:
    """A started consumer of every partition of `topic`, no group, at its beginning or its
    end, resolved now: whatever is published after this call is read."""
    assigned = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)
    except BaseException:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise
    return consumer


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for p in described.get("partitions", []))
    if not partitions:
        raise TopicMissing(f"topic {topic!r} does not exist: is Flowledger running?")
    return partitions


class ReplyListener:
    def __init__(self, bootstrap: str, replies_topic: str, what: str) -> None:
        self._bootstrap = bootstrap
        self._topic = replies_topic
        self._what = what
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._reader is not None

    async def start(self) -> None:
        # At the end now: the reply to any command published after start() lies past it.
        consumer = await consumer_at(self._bootstrap, self._topic, from_beginning=False)
        self._consumer = consumer
        self._reader = asyncio.create_task(self._read(consumer), name=f"{self._what}-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for future in self._waiting.values():
            future.cancel()
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 10)
            self._consumer = None

    def expect(self, command_id: str) -> asyncio.Future[Reply]:
        """The future of the reply to `command_id`; `forget` it once answered or given up."""
        if self._reader is None:
            raise RuntimeError(f"the {self._what}'s reply listener is not started")
        if command_id in self._waiting:
            # Two awaiters of one id: the second would orphan the first one's future.
            raise ValueError(f"command {command_id} is already awaiting its reply")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        return future

    def forget(self, command_id: str) -> None:
        self._waiting.pop(command_id, None)

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        decode = msgspec.json.Decoder(Reply).decode
        backoff = Backoff(f"{self._what}: reading replies", log)
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except Exception as error:  # the broker may blip; the consumer reconnects by itself
                await asyncio.sleep(backoff.failed(error))
                continue
            backoff.succeeded()
            for records in batches.values():
                for record in records:
                    try:
                        reply = decode(record.value or b"")
                    except msgspec.DecodeError:
                        log.warning("undecodable reply at offset %d", record.offset)
                        continue
                    future = self._waiting.get(reply.command_id)
                    if future is not None and not future.done():
                        future.set_result(reply)
