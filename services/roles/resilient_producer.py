"""A Kafka producer that survives the broker going away and coming back.

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

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from services.roles.sending import Outgoing, producer_for

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


class SendFailed(Exception):
    """The broker did not acknowledge every message; nothing about which ones landed."""


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
