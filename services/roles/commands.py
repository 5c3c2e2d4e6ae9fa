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
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from contracts import topics as t
from services.application.app import FlowledgerApplication
from services.infra.backoff import Backoff
from services.metrics import Metrics
from services.roles.intake import DeadLetter, Record, decode_records
from services.roles.resilient_producer import ResilientProducer
from services.roles.sending import Outgoing

log = logging.getLogger(__name__)


def register_commands_role(
    broker: KafkaBroker,
    producer: ResilientProducer,
    app: FlowledgerApplication,
    topics: t.Topics,
    group_id: str,
    max_records: int,
    after_save: Callable[[], None],
    *,
    metrics: Metrics | None = None,
) -> None:
    metrics = metrics or Metrics()  # unscraped, but the role never checks for None
    backoff = Backoff("commands: a batch", log)

    @broker.subscriber(
        topics.commands,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        # FastStream sleeps this long again after an empty poll: its 200 ms default added up
        # to 400 ms to a command arriving at a quiet moment. A busy poll returns at once anyway.
        batch_timeout_ms=10,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=_without_headers,
        decoder=_undecoded,
    )
    async def on_commands(msg: KafkaMessage) -> None:
        try:
            await process(msg)
        except Exception as error:
            # The broker or the store is away: wait before the batch is redelivered (NACK),
            # instead of failing it again hundreds of times a second.
            await asyncio.sleep(backoff.failed(error))
            raise
        backoff.succeeded()

    async def process(msg: KafkaMessage) -> None:
        started = time.perf_counter()
        raw = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        intake = decode_records(
            [Record(r.key, r.value, r.topic, r.partition, r.offset) for r in raw]
        )
        decided = [command for command, _ in intake.commands]
        replies = await asyncio.to_thread(app.handle, decided, datetime.now(UTC))
        after_save()
        keys = [key for _, key in intake.commands]
        answers = [*zip(replies, keys, strict=True), *intake.replies]
        encode = msgspec.json.encode
        sends = [Outgoing(topics.replies, encode(reply), key) for reply, key in answers]
        sends += [_dead_letter(dead, topics.dead_letters) for dead in intake.dead_letters]
        for dead in intake.dead_letters:
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
        for message in await producer.send_all(sends):
            log.error("parked a message the broker refused as too large, on %s", message.topic)
            metrics.parked_messages.labels(message.topic).inc()
        # Counted once the broker confirmed them: what subscribers of the replies topic see.
        metrics.count_replies(reply.outcome for reply, _ in answers)
        metrics.dead_letters.inc(len(intake.dead_letters))
        metrics.batch_seconds.observe(time.perf_counter() - started)
        for reply, key in answers:
            _log_reply(reply, key)


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
