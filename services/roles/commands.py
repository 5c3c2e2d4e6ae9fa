"""The commands role: a FastStream subscriber in a consumer group over `{prefix}.commands`.

Delivery: offsets are committed (NACK_ON_ERROR) only after the handler returns, which is after
the store has committed the batch and every reply and dead letter is confirmed by the broker.
A crash before that redelivers the batch; command records answer the repeats as `duplicate`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from contracts import topics as t
from contracts.replies import Reply
from flowledger._backoff import Backoff
from flowledger._producer import Outgoing
from services.infra.kafka_coordinator import await_group_coordinator
from services.roles.intake import DeadLetter, Intake, Record, decode_records
from services.roles.role import RoleContext, within_drain_time

log = logging.getLogger(__name__)


@dataclass
class Answers:
    """Everything a batch of command records produces, in the order it is sent."""

    replies: list[tuple[Reply, bytes | None]]
    dead_letters: list[DeadLetter]
    messages: list[Outgoing]


def answer(intake: Intake, decided: list[Reply], topics: t.Topics) -> Answers:
    """Pure: the replies (one per command, in order, then the intake's own rejections) and
    dead letters of a batch whose decodable commands were decided as `decided`."""
    keys = [key for _, key in intake.commands]
    replies = [*zip(decided, keys, strict=True), *intake.replies]
    encode = msgspec.json.encode
    messages = [Outgoing(topics.replies, encode(reply), key) for reply, key in replies]
    messages += [_dead_letter(dead, topics.dead_letters) for dead in intake.dead_letters]
    return Answers(replies, intake.dead_letters, messages)


class CommandsRole:
    """Consumes `{prefix}.commands` in a consumer group, a batch at a time: decode, decide and
    store (one transaction), then replies and dead letters, then the offset commit."""

    name = "commands"

    def __init__(self, context: RoleContext) -> None:
        self._context = context
        self._app = context.app
        self._producer = context.producer
        self._metrics = context.metrics
        self._topics = context.settings.topics
        self._backoff = Backoff("commands: a batch", log)
        # Idempotent producer: a retried send cannot duplicate or reorder within a partition.
        self._broker = KafkaBroker(context.bootstrap_servers, enable_idempotence=True, logger=None)

    async def start(self) -> None:
        settings = self._context.settings
        self._broker.subscriber(
            self._topics.commands,
            group_id=settings.commands_group,
            batch=True,
            max_records=settings.batch_max_records,
            # FastStream sleeps this long again after an empty poll: its 200 ms default added
            # up to 400 ms to a command arriving at a quiet moment; a busy poll returns at once.
            batch_timeout_ms=10,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            parser=_without_headers,
            decoder=_undecoded,
        )(self._on_batch)
        await await_group_coordinator(self._context.bootstrap_servers, settings.commands_group)
        await self._broker.start()

    async def stop(self) -> None:
        # Waits for the batch in flight and its commit.
        await within_drain_time(self._broker.stop(), "the commands consumer")

    async def _on_batch(self, msg: KafkaMessage) -> None:
        try:
            await self._process(msg)
        except Exception as error:
            # The broker or the store is away: wait before the batch is redelivered (NACK),
            # instead of failing it again hundreds of times a second.
            await asyncio.sleep(self._backoff.failed(error))
            raise
        self._backoff.succeeded()

    async def _process(self, msg: KafkaMessage) -> None:
        started = time.perf_counter()
        raw = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        intake = decode_records(
            [Record(r.key, r.value, r.topic, r.partition, r.offset) for r in raw]
        )
        commands = [command for command, _ in intake.commands]
        decided = await asyncio.to_thread(self._app.handle, commands, datetime.now(UTC))
        self._context.wakeup.notify()
        answers = answer(intake, decided, self._topics)
        for dead in answers.dead_letters:
            _log_dead_letter(dead)
        for message in await self._producer.send_all(answers.messages):
            log.error("parked a message the broker refused as too large, on %s", message.topic)
            self._metrics.parked_messages.labels(message.topic).inc()
        # Counted once the broker confirmed them: what subscribers of the replies topic see.
        self._metrics.count_replies(reply.outcome for reply, _ in answers.replies)
        self._metrics.dead_letters.inc(len(answers.dead_letters))
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        for reply, key in answers.replies:
            _log_reply(reply, key)


def _log_dead_letter(dead: DeadLetter) -> None:
    log.warning(
        "dead-lettered %s[%d]@%d: %s",
        dead.record.topic,
        dead.record.partition,
        dead.record.offset,
        dead.reason,
        extra={
            "instance_key": _text(dead.record.key),
            "partition": dead.record.partition,
            "offset": dead.record.offset,
        },
    )


async def _without_headers(
    records: tuple[ConsumerRecord[bytes, bytes], ...],
    parse: Callable[[tuple[ConsumerRecord[bytes, bytes], ...]], Awaitable[Any]],
) -> Any:
    """FastStream's parser decodes every header as UTF-8: one record with a header that is not
    text (or has no value) would fail its batch, forever. The commands role reads no headers."""
    return await parse(tuple(dataclasses.replace(record, headers=()) for record in records))


def _undecoded(msg: KafkaMessage) -> Any:
    """FastStream would JSON-decode every body, and fail the batch on one it cannot (nested too
    deep, say); the intake decodes them itself, within its limits."""
    return msg.body


def _dead_letter(dead: DeadLetter, topic: str) -> Outgoing:
    key, value = dead.key_and_value()
    return Outgoing(
        topic,
        value,
        key,
        headers=(
            # Reasons are Flowledger's own text, but a header must encode whatever they echo.
            (t.DLQ_REASON, dead.reason.encode("utf-8", "backslashreplace")),
            (t.DLQ_SOURCE_TOPIC, dead.record.topic.encode()),
            (t.DLQ_SOURCE_PARTITION, str(dead.record.partition).encode()),
            (t.DLQ_SOURCE_OFFSET, str(dead.record.offset).encode()),
        ),
    )


def _log_reply(reply: Any, key: bytes | None) -> None:
    """Rejections at INFO (someone may need to act), the rest at DEBUG (one per command)."""
    level = logging.INFO if reply.outcome == "rejected" else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    code = reply.error.code if reply.error is not None else ""
    log.log(
        level,
        "command %s %s %s",
        reply.command_id,
        reply.outcome,
        code,
        extra={
            "command_id": reply.command_id,
            "instance_key": _text(key),
            "outcome": reply.outcome,
            "code": code or None,
        },
    )


def _text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "replace")
