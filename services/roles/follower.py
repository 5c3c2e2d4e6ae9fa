"""Following the event store's notification log: the shared loop of the relay and projections.

eventsourcing's SQLite recorder has no subscriptions, so both stores are followed the same way:
read notifications after the tracked position, handle them, record the new position; woken
at once by an in-process signal after each save, and by a short poll for other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from eventsourcing.persistence import Notification

from services.application.app import FlowledgerApplication

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


async def follow(
    app: FlowledgerApplication,
    name: str,
    position: Callable[[], int | None],
    handle: BatchHandler,
    wakeup: asyncio.Event,
    stop: asyncio.Event,
    *,
    poll_interval_s: float,
    batch_size: int = 500,
) -> None:
    """Runs until `stop` is set. `handle` must record the position of the batch it was given."""
    last = await asyncio.to_thread(position)
    while not stop.is_set():
        wakeup.clear()  # before reading, so a save during the read is not missed
        try:
            notifications = await asyncio.to_thread(
                app.recorder.select_notifications,
                last,
                batch_size,
                inclusive_of_start=last is None,
            )
            if notifications:
                await handle(notifications)
                last = notifications[-1].id
                continue
        except Exception:  # a broker or database hiccup: log, back off, try again
            log.exception("%s: failed to follow the notification log; retrying", name)
            last = await asyncio.to_thread(position)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout=poll_interval_s)
