"""Publishing many messages at once, for the commands role's replies and the relay's events.

Each message is handed to aiokafka's accumulator without waiting (it batches per partition),
then all acknowledgements are awaited together: one broker round trip per batch instead of
one per message. The producer is idempotent, so a retried send cannot duplicate or reorder
messages within a partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from contracts.limits import MAX_MESSAGE_BYTES

JSON_HEADERS = (("content-type", b"application/json"),)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...] = JSON_HEADERS


def producer_for(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,  # forces acks=all: a confirmed message is replicated
        linger_ms=2,
        max_batch_size=256 * 1024,
        # As large as the topics it writes to allow (ensure_topics declares it), so that a
        # dead letter of a whole command record, or a large event, is not refused here.
        max_request_size=MAX_MESSAGE_BYTES,
    )


async def send_all(producer: AIOKafkaProducer, messages: Iterable[Outgoing]) -> None:
    """Returns once the broker has confirmed every message; raises if any failed."""
    pending = [
        await producer.send(m.topic, m.value, key=m.key, headers=list(m.headers)) for m in messages
    ]
    await asyncio.gather(*pending)
