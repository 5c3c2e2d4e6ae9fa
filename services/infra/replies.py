"""Awaiting the reply to a command this process published.

Every partition of `{prefix}.replies` is read from its end at start, without a consumer group:
each process that publishes commands (the api's gateway, a worker) sees every reply and picks
out those it waits for. No group means no rebalance pauses and nothing to commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.replies import Reply
from services.infra.backoff import Backoff

log = logging.getLogger(__name__)


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
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await consumer.start()
        self._consumer = consumer
        assigned = [TopicPartition(self._topic, p) for p in await self._partitions()]
        consumer.assign(assigned)
        # Resolved now: the reply to any command published after start() lies past these ends.
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)
        self._reader = asyncio.create_task(self._read(consumer), name=f"{self._what}-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 10)

    def expect(self, command_id: str) -> asyncio.Future[Reply]:
        """The future of the reply to `command_id`; `forget` it once answered or given up."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        return future

    def forget(self, command_id: str) -> None:
        self._waiting.pop(command_id, None)

    async def _partitions(self) -> list[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        try:
            await admin.start()
            [described] = await admin.describe_topics([self._topic])
        finally:
            await admin.close()
        partitions = sorted(p["partition"] for p in described.get("partitions", []))
        if not partitions:
            raise RuntimeError(f"topic {self._topic} has no partitions: was it declared?")
        return partitions

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
