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
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.commands import AnyCommand
from contracts.keys import kafka_key
from contracts.replies import Reply
from services.infra.backoff import Backoff
from services.roles.resilient_producer import ResilientProducer, SendFailed
from services.roles.sending import Outgoing

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
        self._bootstrap = bootstrap
        self._commands_topic = commands_topic
        self._replies_topic = replies_topic
        self._resend_after_s = resend_after_s
        self._producer = ResilientProducer(bootstrap)
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[Reply]] = {}

    async def start(self) -> None:
        await self._producer.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await consumer.start()
        self._consumer = consumer
        partitions = await _partitions(self._bootstrap, self._replies_topic)
        assigned = [TopicPartition(self._replies_topic, p) for p in partitions]
        consumer.assign(assigned)
        # From the end, resolved now: the reply to any command sent after start() lies past it.
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)
        self._reader = asyncio.create_task(self._read_replies(consumer), name="worker-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 10)
        await self._producer.stop()

    async def send(self, command: AnyCommand) -> Reply:
        """The command's reply; sends it again (same id) while none comes."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[command.command_id] = future
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
            self._waiting.pop(command.command_id, None)

    async def _read_replies(self, consumer: AIOKafkaConsumer) -> None:
        decode = msgspec.json.Decoder(Reply).decode
        backoff = Backoff("worker: reading replies", log)
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except Exception as error:  # the consumer reconnects by itself
                await asyncio.sleep(backoff.failed(error))
                continue
            backoff.succeeded()
            for records in batches.values():
                for record in records:
                    try:
                        reply = decode(record.value or b"")
                    except msgspec.DecodeError:
                        continue
                    future = self._waiting.get(reply.command_id)
                    if future is not None and not future.done():
                        future.set_result(reply)


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for p in described.get("partitions", []))
    if not partitions:
        raise RuntimeError(f"topic {topic} has no partitions: was it declared?")
    return partitions
