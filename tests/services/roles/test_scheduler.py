"""The scheduler over a real store (SQLite and PostgreSQL), with a clock the test moves.

No broker and no sleeping: the producer records what would be published, and each test sets
the time at which the scheduler looks for due timers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from contracts import commands as c
from contracts.commands import AnyCommand
from services.application.notification_log import NotificationLog
from services.bootstrap import Store, open_store
from services.roles.scheduler import Scheduler
from services.roles.sending import Outgoing
from services.settings import Settings

T0 = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[AnyCommand] = []

    async def send_all(self, messages: list[Outgoing]) -> list[Outgoing]:
        self.sent += [msgspec.json.decode(m.value, type=AnyCommand) for m in messages]
        return []


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class World:
    """One instance on a real store, the scheduler following its log."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock
        self.account = f"acc{uuid.uuid4().hex[:8]}"
        self.producer = RecordingProducer()
        self.scheduler = self.new_scheduler()
        self.log = NotificationLog(store.app)
        self.position = self.log.head()

    def new_scheduler(self) -> Scheduler:
        return Scheduler(
            self.store.timers,
            self.producer,  # type: ignore[arg-type]
            "p.commands",
            clock=self.clock,
        )

    def command(self, kind: type[Any], **fields: Any) -> Any:
        base = {"command_id": str(uuid.uuid4()), "account_id": self.account}
        return kind(**base, workflow_name="wf", **fields)

    async def do(self, *commands: Any, at: datetime) -> None:
        replies = self.store.app.handle(list(commands), at)
        assert all(r.outcome == "accepted" for r in replies), replies
        while batch := self.log.read(self.position, 100):
            await self.scheduler.handle(batch)
            self.position = batch.last_id

    async def running(self, **create: Any) -> None:
        await self.do(
            self.command(c.RegisterWorkflow),
            self.command(c.CreateInstance, instance_id="i", **create),
            self.command(c.StartRun, instance_id="i"),
            at=T0,
        )

    async def fire_at(self, moment: datetime) -> list[AnyCommand]:
        self.clock.now = moment
        return [fired.command for fired in await self.scheduler.fire_due()]


@pytest.fixture
def world(store_url: str) -> Any:
    store = open_store(Settings(store=store_url))
    try:
        yield World(store, Clock())
    finally:
        store.app.close()


async def test_a_sleep_fires_end_sleep_when_its_time_comes_and_not_before(world: World) -> None:
    await world.running()
    await world.do(
        world.command(c.BeginStep, instance_id="i", name="nap", step_type="sleep", sleep_ms=1_000),
        at=T0,
    )

    assert await world.fire_at(T0 + timedelta(milliseconds=999)) == []
    [fired] = await world.fire_at(T0 + timedelta(seconds=1))
    assert isinstance(fired, c.EndSleep) and fired.name == "nap" and fired.instance_id == "i"
    assert await world.fire_at(T0 + timedelta(hours=1)) == []  # fired once, marked


async def test_a_wait_times_out_by_itself_but_an_event_that_arrives_first_cancels_it(
    world: World,
) -> None:
    await world.running()
    wait = {"step_type": "waitForEvent", "event_type": "ok", "wait_timeout": "1 minute"}
    await world.do(world.command(c.BeginStep, instance_id="i", name="w1", **wait), at=T0)

    [fired] = await world.fire_at(T0 + timedelta(minutes=1))
    assert isinstance(fired, c.TimeOutWait) and fired.name == "w1"

    await world.do(world.command(c.TimeOutWait, instance_id="i", name="w1"), at=T0)
    await world.do(world.command(c.BeginStep, instance_id="i", name="w2", **wait), at=T0)
    await world.do(world.command(c.SendEvent, instance_id="i", event_type="ok"), at=T0)
    assert await world.fire_at(T0 + timedelta(hours=1)) == []


async def test_a_failed_attempts_back_off_ends_by_itself(world: World) -> None:
    await world.running()
    config = c.StepConfig(retries=c.RetryConfig(limit=3, delay="2 seconds", backoff="constant"))
    await world.do(
        world.command(c.BeginStep, instance_id="i", name="charge", config=config),
        world.command(c.BeginAttempt, instance_id="i", name="charge"),
        world.command(
            c.EndAttempt,
            instance_id="i",
            name="charge",
            success=False,
            error=c.ErrorInfo(message="no"),
        ),
        at=T0,
    )

    assert await world.fire_at(T0 + timedelta(milliseconds=1_999)) == []
    [fired] = await world.fire_at(T0 + timedelta(seconds=2))
    assert isinstance(fired, c.EndSleep) and fired.name == "charge"


async def test_a_paused_instance_fires_nothing_and_its_overdue_sleep_ends_on_resume(
    world: World,
) -> None:
    await world.running()
    await world.do(
        world.command(c.BeginStep, instance_id="i", name="nap", step_type="sleep", sleep_ms=10),
        world.command(c.ChangeStatus, instance_id="i", action="pause"),
        at=T0,
    )
    assert await world.fire_at(T0 + timedelta(hours=1)) == []

    await world.do(world.command(c.ChangeStatus, instance_id="i", action="resume"), at=T0)
    [fired] = await world.fire_at(T0 + timedelta(hours=1))
    assert isinstance(fired, c.EndSleep)


async def test_a_timer_fired_again_after_a_crash_before_it_was_marked_has_the_same_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.running()
    await world.do(
        world.command(c.BeginStep, instance_id="i", name="nap", step_type="sleep", sleep_ms=10),
        at=T0,
    )
    crashed = world.new_scheduler()
    monkeypatch.setattr(crashed, "_mark", lambda marks: None)  # published, never marked
    world.clock.now = T0 + timedelta(seconds=1)
    [first] = [f.command for f in await crashed.fire_due()]

    [again] = await world.fire_at(T0 + timedelta(seconds=2))  # a fresh scheduler, restarted

    assert again.command_id == first.command_id


async def test_an_attempt_without_an_end_times_out_and_its_retry_backs_off(world: World) -> None:
    await world.running()
    config = c.StepConfig(
        retries=c.RetryConfig(limit=1, delay=500, backoff="constant"), timeout="3 seconds"
    )
    await world.do(
        world.command(c.BeginStep, instance_id="i", name="slow", config=config),
        world.command(c.BeginAttempt, instance_id="i", name="slow"),
        at=T0,
    )

    [fired] = await world.fire_at(T0 + timedelta(seconds=3))
    assert isinstance(fired, c.TimeOutAttempt) and (fired.name, fired.attempt) == ("slow", 1)
    await world.do(fired, at=T0 + timedelta(seconds=3))  # the commands role applies it
    [backoff] = await world.fire_at(T0 + timedelta(seconds=3, milliseconds=500))
    assert isinstance(backoff, c.EndSleep) and backoff.name == "slow"


async def test_an_instance_past_its_timeout_is_timed_out_once(world: World) -> None:
    await world.running(timeout="1 minute")

    [fired] = await world.fire_at(T0 + timedelta(minutes=1))
    assert isinstance(fired, c.TimeOutInstance)
    await world.do(fired, at=T0 + timedelta(minutes=1))
    instance = world.store.app.get_instance(world.account, "wf", "i")
    assert instance.status == "errored" and instance.run.error is not None
    assert await world.fire_at(T0 + timedelta(days=1)) == []  # the run's end cancelled it


async def test_a_cron_schedule_creates_its_instance_once_per_tick(world: World) -> None:
    await world.do(world.command(c.RegisterWorkflow, schedules=["*/10 * * * *"]), at=T0)
    tick = T0.replace(minute=10, second=0)  # T0 is 07:08:09

    assert await world.fire_at(tick - timedelta(seconds=1)) == []
    [create] = await world.fire_at(tick)
    assert isinstance(create, c.CreateInstance) and create.trigger_source == "cron"
    await world.do(create, at=tick)
    [created] = world.store.app.handle([create], tick)  # fired again: the same command
    assert created.outcome == "duplicate"
    assert await world.fire_at(tick + timedelta(minutes=9)) == []

    await world.do(world.command(c.RegisterWorkflow), at=tick)  # without schedules: removed
    assert await world.fire_at(tick + timedelta(days=1)) == []
