"""Publishing to Kafka: the messages, the producer's settings, and a producer that survives
the broker going away and coming back. The SDK's client and worker, and the service's roles
and api, all publish through it.

Many messages at once: each is handed to aiokafka's accumulator without waiting (it batches per
partition), then all acknowledgements are awaited together, one broker round trip per batch.
The producer is idempotent, so a retried send cannot duplicate or reorder messages within a
partition.

aiokafka's idempotent producer keeps a producer id and per-partition sequence numbers. After
a broker restart it can be left with a session the broker no longer accepts
(`OutOfOrderSequenceNumber`, a fenced or unknown producer id) and then fails every send
forever. So after any failed send this producer is discarded and a new one (a new id, fresh
sequences) is created for the next send. The callers resume from their last acknowledged
position (the relay from its tracking row, the commands role from its committed offset), so
nothing is lost; what was sent twice is deduplicated downstream by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from contracts.limits import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

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


STOP_TIMEOUT_S = 5.0


class SendFailed(KafkaError):
    """The broker did not acknowledge every message; nothing about which ones landed. A
    KafkaError, so that code catching aiokafka's errors catches it too."""


class ResilientProducer:
    def __init__(
        self,
        bootstrap: str,
        *,
        ack_timeout_s: float = 30.0,
        make: Callable[[str], AIOKafkaProducer] = producer_for,
    ) -> None:
        self._bootstrap = bootstrap
        self._ack_timeout_s = ack_timeout_s
        self._make = make
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self.healthy = True  # the last send was acknowledged (or none was tried yet)

    async def start(self) -> None:
        await self._current()

    async def stop(self) -> None:
        async with self._lock:
            await self._discard()

    async def send_all(self, messages: Iterable[Outgoing]) -> list[Outgoing]:
        """Returns once the broker has acknowledged every message, except those too large for
        it (returned: the caller decides what to do with them); raises SendFailed otherwise."""
        batch = list(messages)
        too_large: list[Outgoing] = []
        try:
            producer = await self._current()
            async with asyncio.timeout(self._ack_timeout_s):
                sent: list[tuple[Outgoing, asyncio.Future[object]]] = []
                for m in batch:
                    try:
                        ack = await producer.send(
                            m.topic, m.value, key=m.key, headers=list(m.headers)
                        )
                    except MessageSizeTooLargeError:  # refused before it left this process
                        too_large.append(m)
                        continue
                    sent.append((m, ack))
                outcomes = await asyncio.gather(*(a for _, a in sent), return_exceptions=True)
        except (KafkaError, TimeoutError, OSError) as error:
            await self._failed()
            raise SendFailed(f"{type(error).__name__}: {error}") from error
        too_large += [m for (m, _), o in zip(sent, outcomes, strict=True) if _too_large(o)]
        other = [o for o in outcomes if isinstance(o, BaseException) and not _too_large(o)]
        if other:
            await self._failed()
            raise SendFailed(f"{type(other[0]).__name__}: {other[0]}") from other[0]
        self.healthy = True
        return too_large

    async def _current(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = self._make(self._bootstrap)
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    self.healthy = False
                    raise
                self._producer = producer
            return self._producer

    async def _failed(self) -> None:
        self.healthy = False
        async with self._lock:
            await self._discard()

    async def _discard(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # Pending sends of a dead session are abandoned: the callers redo their batch.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)


def _too_large(outcome: object) -> bool:
    return isinstance(outcome, MessageSizeTooLargeError)
