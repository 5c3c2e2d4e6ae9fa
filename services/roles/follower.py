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
from collections.abc import Awaitable, Callable

from flowledger._backoff import Backoff
from services.application.notification_log import Batch, NotificationLog
from services.roles.role import RoleContext, within_drain_time

log = logging.getLogger(__name__)

BatchHandler = Callable[[Batch], Awaitable[None]]


class Follower:
    """One reader of the notification log. `handle` must record the position of each batch."""

    def __init__(
        self,
        notification_log: NotificationLog,
        name: str,
        position: Callable[[], int | None],
        handle: BatchHandler,
        wakeup: asyncio.Event,
        *,
        poll_interval_s: float,
        batch_size: int = 500,
    ) -> None:
        self.name = name
        self._log = notification_log
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
                batch = await asyncio.to_thread(self._log.read, last, self._batch_size)
                if batch is not None:
                    await self._handle(batch)
                    last = batch.last_id
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

    async def _read_position(self, stop: asyncio.Event) -> int:
        while True:
            try:
                return await asyncio.to_thread(self._position) or 0
            except Exception as error:
                if stop.is_set():
                    raise
                await _wait(stop, self.backoff.failed(error))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleeps `seconds`, or less if the service is stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def follower_for(
    context: RoleContext, name: str, position: Callable[[], int | None], handle: BatchHandler
) -> Follower:
    """A follower of the log of `context`'s store, woken by its commands role's saves."""
    return Follower(
        NotificationLog(context.app),
        name,
        position,
        handle,
        context.wakeup.subscribe(),
        poll_interval_s=context.settings.poll_interval_s,
    )


class FollowingRole:
    """A role that is one `Follower` over the notification log: the relay, the projections.
    Stopping waits for the batch in hand (the stop signal is seen between batches)."""

    def __init__(self, follower: Follower, stopping: asyncio.Event) -> None:
        self.name = follower.name
        self.follower = follower
        self._stopping = stopping
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.follower.run(self._stopping), name=self.name)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        await within_drain_time(asyncio.shield(self._task), self.name)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
