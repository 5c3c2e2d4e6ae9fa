"""The commands role: a FastStream subscriber in a consumer group over `{prefix}.commands`.

Delivery: offsets are committed (NACK_ON_ERROR) only after the handler returns, which is after
the store has committed the batch and every reply and dead letter is confirmed by the broker.
A crash before that redelivers the batch; command records answer the repeats as `duplicate`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from contracts import topics as t
from services.application.app import FlowledgerApplication
from services.roles.intake import Record, decode_records

log = logging.getLogger(__name__)


def register_commands_role(
    broker: KafkaBroker,
    app: FlowledgerApplication,
    topics: t.Topics,
    group_id: str,
    max_records: int,
    after_save: Callable[[], None],
) -> None:
    @broker.subscriber(
        topics.commands,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_commands(msg: KafkaMessage) -> None:
        raw = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        intake = decode_records(
            [Record(r.key, r.value, r.topic, r.partition, r.offset) for r in raw]
        )
        decided = [command for command, _ in intake.commands]
        replies = await asyncio.to_thread(app.handle, decided, datetime.now(UTC))
        after_save()
        keys = [key for _, key in intake.commands]
        sends: list[Any] = [
            _publish(broker, topics.replies, reply, key)
            for reply, key in [*zip(replies, keys, strict=True), *intake.replies]
        ]
        sends += [
            broker.publish(
                dead.record.value or b"",
                topics.dead_letters,
                key=dead.record.key,
                headers={
                    t.DLQ_REASON: dead.reason,
                    t.DLQ_SOURCE_TOPIC: dead.record.topic,
                    t.DLQ_SOURCE_PARTITION: str(dead.record.partition),
                    t.DLQ_SOURCE_OFFSET: str(dead.record.offset),
                },
            )
            for dead in intake.dead_letters
        ]
        for dead in intake.dead_letters:
            log.warning(
                "dead-lettered %s[%d]@%d: %s",
                dead.record.topic,
                dead.record.partition,
                dead.record.offset,
                dead.reason,
            )
        await asyncio.gather(*sends)


def _publish(broker: KafkaBroker, topic: str, reply: Any, key: bytes | None) -> Any:
    return broker.publish(
        msgspec.json.encode(reply),
        topic,
        key=key,
        headers={"content-type": "application/json"},
    )
