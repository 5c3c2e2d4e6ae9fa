"""The scheduler role: time moves by itself.

It follows the notification log like the projections, folding each instance's lifecycle
events into its timers (projections/timers.py), stored with the follower's position in one
transaction (services/store/timer_table.py). A second loop fires the timers that are due: it
publishes the command an engine would have sent (EndSleep, TimeOutWait, TimeOutAttempt,
TimeOutInstance; DeleteInstance with reason "retention" once a finished instance's retention
passed) on the commands topic, then marks the timers fired.

Delivery: at-least-once firing, exactly-once effect. A crash between publishing and marking
fires the timer again after the restart with the same command id (derived from the timer),
which the commands role answers `duplicate`; so does a second scheduler during a rolling
restart. A timer that fell due while no scheduler ran fires as soon as one is back; none fires
early (the clock is read when firing, and the due time comes from the arming event's time).

Isolation: an event whose fold raises, or a timer whose command cannot be built, is parked
(services/roles/parking.py) and the others flow on; only I/O failures (the broker or the
store away) are retried, by the follower and the firing loop's back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Tracking

from contracts.events import LifecycleEvent
from flowledger._backoff import Backoff
from flowledger._producer import ResilientProducer
from projections import timers
from services.application.notification_log import Batch
from services.roles.follower import FollowingRole, follower_for
from services.roles.parking import Parking, parking_for
from services.roles.role import RoleContext, within_drain_time
from services.roles.timer_firing import Fired, FiringPlan, plan_firing
from services.store.parked_table import Parked
from services.store.timer_table import TimerTable

log = logging.getLogger(__name__)

_UNREADABLE = "UnreadableDocument: the stored timer document is not a JSON object; folded afresh"

TIMERS_NAME = "scheduler"  # the timer table's name and the follower's tracking name
FIRE_BATCH = 500
# The longest the firing loop sleeps: also how soon a timer armed by another process fires.
MAX_TICK_S = 1.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


__all__ = ["MAX_TICK_S", "TIMERS_NAME", "Fired", "Scheduler", "SchedulerRole"]

Doc = dict[str, Any]


class Scheduler:
    """The timer table's only writer: folds batches, fires due timers. Both run under one
    lock, so a fold and a firing in this process never write the same row from stale reads;
    against another process's writes, marks are compare-and-set (see `fire_due`)."""

    def __init__(
        self,
        table: TimerTable[Any],
        producer: ResilientProducer,
        commands_topic: str,
        *,
        parking: Parking,
        clock: Clock = utc_now,
        on_fired: Callable[[str], None] = lambda _kind: None,
    ) -> None:
        self.table = table
        self._parking = parking
        self._producer = producer
        self._topic = commands_topic
        self._clock = clock
        self._on_fired = on_fired
        self._lock = asyncio.Lock()
        self.woken = asyncio.Event()
        self.pending = 0
        self.first_due_ms: int | None = None

    def position(self) -> int | None:
        return self.table.position()

    async def handle(self, batch: Batch) -> None:
        async with self._lock:
            await asyncio.to_thread(self._fold, batch)
        self.woken.set()  # a timer armed now may be due before the loop's next tick

    def _fold(self, batch: Batch) -> None:
        """Blocking: the timers of the batch's instances, written with the position; an
        event whose fold raises is parked, the rest of the batch folded."""
        parked: list[Parked] = []
        keyed = self._keyed(batch, parked)
        docs, unreadable = self.table.get_readable(sorted({key for _, key, _ in keyed}))
        parked += [self._parking.note_reason(f"timer {key}", _UNREADABLE) for key in unreadable]
        folded: dict[str, Doc | None] = dict(docs)
        changes: dict[str, tuple[int | None, Doc] | None] = {}
        for notification_id, key, event in keyed:
            try:
                doc = timers.apply(folded.get(key), event)
                changes[key] = None if doc is None else (timers.due_ms(doc), doc)
            except Exception as error:  # noqa: BLE001 - a pure fold: retrying cannot help
                parked.append(self._parking.note(f"notification {notification_id}", error))
                continue
            folded[key] = doc
        for key, change in changes.items():
            reasons = {} if change is None else timers.parked_timers(change[1])
            parked += [self._parking.note_reason(f"timer {key} {k}", r) for k, r in reasons.items()]
        self._parking.record(parked)  # first: a crash before the write folds and parks again
        expected = self.table.position()
        self.table.apply_changes(changes, Tracking(TIMERS_NAME, batch.last_id), expected)

    def _keyed(self, batch: Batch, parked: list[Parked]) -> list[tuple[int, str, LifecycleEvent]]:
        keyed = []
        for notification_id, event in batch.events:
            try:
                key = timers.key_of(event)
            except Exception as error:  # noqa: BLE001 - pure, as the fold
                parked.append(self._parking.note(f"notification {notification_id}", error))
                continue
            if key is not None:
                keyed.append((notification_id, key, event))
        return keyed

    async def fire_due(self) -> list[Fired]:
        """Publishes every due timer's command, then marks those timers fired; a timer whose
        command cannot be built is parked in its document instead (timer_firing.py)."""
        async with self._lock:
            now_ms = timers.epoch_ms(self._clock())
            plan = await asyncio.to_thread(self._plan, now_ms)
            if plan.outgoing:
                await self._producer.send_all(plan.outgoing)
            if plan.marks:
                await asyncio.to_thread(self._settle, plan)
            self.pending, self.first_due_ms = await asyncio.to_thread(self.table.summary)
        for one in plan.fired:
            self._on_fired(one.kind)
        return plan.fired

    def _plan(self, now_ms: int) -> FiringPlan:
        return plan_firing(self.table.due(now_ms, FIRE_BATCH), now_ms, self._topic)

    def _settle(self, plan: FiringPlan) -> None:
        """Blocking: records what was parked, then marks the rows (a crash between the two
        plans the same parks again, recorded once)."""
        self._parking.record([self._parking.note(item, error) for item, error in plan.problems])
        self.table.mark_fired(plan.marks)

    def lag_ms(self) -> int:
        """How long the oldest due timer has been waiting (0 when none is overdue)."""
        if self.first_due_ms is None:
            return 0
        return max(0, timers.epoch_ms(self._clock()) - self.first_due_ms)

    async def run(self, stop: asyncio.Event) -> None:
        """Fires due timers until `stop`; sleeps until the next is due, at most MAX_TICK_S."""
        backoff = Backoff("scheduler: firing due timers", log)
        while not stop.is_set():
            self.woken.clear()
            try:
                await self.fire_due()
                backoff.succeeded()
                wait = self._until_next_s()
            except Exception as error:  # the broker or the store is away: try again
                wait = backoff.failed(error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_either(stop, self.woken), wait)

    def _until_next_s(self) -> float:
        if self.first_due_ms is None:
            return MAX_TICK_S
        now_ms = timers.epoch_ms(self._clock())
        return min(MAX_TICK_S, max(0.0, (self.first_due_ms - now_ms) / 1000))


async def _either(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


class SchedulerRole(FollowingRole):
    name = "scheduler"

    def __init__(self, context: RoleContext, *, clock: Clock = utc_now) -> None:
        table = context.timers
        fired = context.metrics.timers_fired
        self.scheduler = Scheduler(
            table,
            context.producer,
            context.settings.topics.commands,
            parking=parking_for(context, "scheduler", clock=clock),
            clock=clock,
            on_fired=lambda kind: fired.labels(kind).inc(),
        )
        context.metrics.watch_scheduler(lambda: (self.scheduler.pending, self.scheduler.lag_ms()))
        follower = follower_for(
            context, "scheduler", self.scheduler.position, self.scheduler.handle
        )
        super().__init__(follower, context.stopping)
        self._stopping = context.stopping
        self._firing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._firing = asyncio.create_task(self.scheduler.run(self._stopping), name="firing")

    async def stop(self) -> None:
        await super().stop()
        if self._firing is not None:
            await within_drain_time(asyncio.shield(self._firing), "the scheduler's firing")
            self._firing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._firing
