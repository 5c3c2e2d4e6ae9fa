"""Following the event store's notification log: the shared loop of the relay and projections.

eventsourcing's SQLite recorder has no subscriptions, so both stores are followed the same way:
read notifications after the tracked position, handle them, record the new position; woken
at once by an in-process signal after each save, and by a short poll for other processes.

When reading or handling fails (the broker or the store is away) the follower backs off,
logs once per change of state, and re-reads its position from the store before trying again:
whatever the failed batch did not record is done again, nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from eventsourcing.persistence import Notification

from services.application.app import FlowledgerApplication
from services.infra.backoff import Backoff

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[Notification]], Awaitable[None]]


class Wakeup:
    """Set by the commands role after a save; followers in the same process react at once."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.append(event)
        return event

    def notify(self) -> None:
        for event in self._waiters:
            event.set()


class Follower:
    """One reader of the notification log. `handle` must record the position of each batch."""

    def __init__(
        self,
        app: FlowledgerApplication,
        name: str,
        position: Callable[[], int | None],
        handle: BatchHandler,
        wakeup: asyncio.Event,
        *,
        poll_interval_s: float,
        batch_size: int = 500,
    ) -> None:
        self.name = name
        self._app = app
        self._position = position
        self._handle = handle
        self._wakeup = wakeup
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self.backoff = Backoff(f"{name}: following the notification log", log)
        self.last_progress = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; a failure never ends the loop."""
        last = await self._read_position(stop)
        while not stop.is_set():
            self._wakeup.clear()  # before reading, so a save during the read is not missed
            try:
                notifications = await asyncio.to_thread(
                    self._app.recorder.select_notifications,
                    last,
                    self._batch_size,
                    inclusive_of_start=last is None,
                )
                if notifications:
                    await self._handle(notifications)
                    last = notifications[-1].id
                    self._progressed()
                    continue
                self._progressed()
            except Exception as error:  # the broker or the store is unwell
                await _wait(stop, self.backoff.failed(error))
                last = await self._read_position(stop)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval_s)

    def stuck_for(self) -> float:
        """Seconds this follower has been failing without a successful read or batch."""
        return self.backoff.failing_for()

    def _progressed(self) -> None:
        self.last_progress = time.monotonic()
        self.backoff.succeeded()

    async def _read_position(self, stop: asyncio.Event) -> int | None:
        while True:
            try:
                return await asyncio.to_thread(self._position)
            except Exception as error:
                if stop.is_set():
                    raise
                await _wait(stop, self.backoff.failed(error))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleeps `seconds`, or less if the service is stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
