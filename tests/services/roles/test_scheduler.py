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
from contracts.keys import instance_key, workflow_key
from flowledger._producer import Outgoing
from projections import timers
from services.application import handlers
from services.application.notification_log import NotificationLog
from services.bootstrap import Store, open_store
from services.roles.parking import Parking
from services.roles.scheduler import Scheduler
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
            parking=Parking(self.store.parked, "scheduler", clock=self.clock),
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
    monkeypatch.setattr(crashed, "_settle", lambda plan: None)  # published, never marked
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


# --- isolation: what the scheduler cannot handle is parked, everything else flows on ----------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _force_row(world: World, instance: str, text: str, due: datetime) -> str:
    """A timer row written straight into the store, as no fold would write it."""
    key = instance_key(world.account, "wf", instance)
    table = world.store.timers
    with table.transaction(commit=True) as cursor:
        cursor.execute(
            f"INSERT INTO {table.table} (key, due_ms, doc) VALUES ({table.ph}, {table.ph}, "
            f"{table.ph})",
            [key, _ms(due), text],
        )
    return key


def _poisoned_doc(world: World, instance: str, due: datetime) -> str:
    """A sleep whose command the contract refuses (no step name, no uuid), beside an instance
    timeout whose command is fine."""
    ids = {"account_id": world.account, "workflow_name": "wf", "instance_id": instance}
    timer = {"due_ms": _ms(due), "armed_by": 1}
    doc = {
        **ids,
        "version": 1,
        "held": False,
        "timers": {
            "sleep": {**timer, "command": {"type": "EndSleep", "command_id": "x", **ids}},
            "instance": {
                **timer,
                "command": {"type": "TimeOutInstance", "command_id": str(uuid.uuid4()), **ids},
            },
        },
    }
    return msgspec.json.encode(doc).decode()


def _mine(world: World, commands: list[AnyCommand]) -> list[AnyCommand]:
    return [one for one in commands if one.account_id == world.account]


def _parked_items(world: World) -> dict[str, str]:
    return {
        p.item: p.error_type
        for p in world.store.parked.items("scheduler")
        if world.account in p.item or p.item.startswith("notification")
    }


async def _napping(world: World) -> None:
    """Instance "i" running, in a 1 ms sleep begun at T0."""
    await world.running()
    nap = world.command(c.BeginStep, instance_id="i", name="nap", step_type="sleep", sleep_ms=1)
    await world.do(nap, at=T0)


async def test_a_timer_whose_command_cannot_be_built_is_parked_and_the_others_fire(
    world: World,
) -> None:
    await _napping(world)
    key = _force_row(world, "poisoned", _poisoned_doc(world, "poisoned", T0), T0)

    fired = _mine(world, await world.fire_at(T0 + timedelta(seconds=1)))

    assert sorted((type(f).__name__, getattr(f, "instance_id", None)) for f in fired) == [
        ("EndSleep", "i"),
        ("TimeOutInstance", "poisoned"),
    ]
    assert _parked_items(world) == {f"timer {key} sleep": "ValidationError"}
    assert _mine(world, await world.fire_at(T0 + timedelta(hours=1))) == []  # not retried
    assert len(world.store.parked.items("scheduler")) == 1


async def test_an_unreadable_timer_row_is_held_and_parked_while_the_others_fire(
    world: World,
) -> None:
    await _napping(world)
    key = _force_row(world, "garbled", "{not json", T0)

    [fired] = _mine(world, await world.fire_at(T0 + timedelta(seconds=1)))

    assert isinstance(fired, c.EndSleep) and fired.instance_id == "i"
    assert _parked_items(world) == {f"timer {key}": "DecodeError"}
    assert _mine(world, await world.fire_at(T0 + timedelta(hours=1))) == []
    assert world.store.timers.due(_ms(T0 + timedelta(days=1)), 10) == []  # held, not due


async def test_an_event_whose_fold_raises_is_parked_and_the_rest_of_the_batch_folds(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fold = timers.apply

    def breaks_on_bad(doc: Any, event: Any) -> Any:
        if getattr(event, "instance_id", None) == "bad" and type(event).__name__ == "StepBegan":
            raise RuntimeError("a bug in the fold")
        return fold(doc, event)

    monkeypatch.setattr(timers, "apply", breaks_on_bad)
    await world.running()
    sleep = {"step_type": "sleep", "sleep_ms": 1_000}
    await world.do(
        world.command(c.CreateInstance, instance_id="bad"),
        world.command(c.StartRun, instance_id="bad"),
        world.command(c.BeginStep, instance_id="bad", name="nap", **sleep),
        world.command(c.BeginStep, instance_id="i", name="nap", **sleep),
        at=T0,
    )

    [fired] = _mine(world, await world.fire_at(T0 + timedelta(seconds=1)))

    assert isinstance(fired, c.EndSleep) and fired.instance_id == "i"
    [(item, error_type)] = _parked_items(world).items()
    assert item.startswith("notification ") and error_type == "RuntimeError"
    assert world.scheduler.position() == world.log.head()  # the follower moved past it


async def test_a_schedule_that_never_ticks_stored_before_the_check_is_parked_not_fatal(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "check_cron", lambda *_: None)  # stored by an older version
    schedules = ["0 0 31 2 *", "*/10 * * * *"]
    await world.do(world.command(c.RegisterWorkflow, schedules=schedules), at=T0)

    [create] = _mine(world, await world.fire_at(T0.replace(minute=10, second=0)))

    assert isinstance(create, c.CreateInstance) and create.schedule is not None
    assert create.schedule.cron == "*/10 * * * *"
    key = workflow_key(world.account, "wf")
    assert _parked_items(world) == {f"timer {key} cron 0 0 31 2 *": "CroniterBadDateError"}


async def test_a_store_away_while_folding_is_retried_not_parked(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.running()
    nap = world.command(c.BeginStep, instance_id="i", name="nap", step_type="sleep", sleep_ms=1)
    world.store.app.handle([nap], T0)
    batch = world.log.read(world.position, 100)
    assert batch is not None

    def away(*_: Any) -> None:
        raise ConnectionError("the store is away")

    monkeypatch.setattr(world.store.timers, "apply_changes", away)
    with pytest.raises(ConnectionError):
        await world.scheduler.handle(batch)
    monkeypatch.undo()
    await world.scheduler.handle(batch)  # the follower's retry

    [fired] = _mine(world, await world.fire_at(T0 + timedelta(seconds=1)))
    assert isinstance(fired, c.EndSleep)
    assert _parked_items(world) == {}


async def test_a_broker_away_while_firing_is_retried_not_parked(world: World) -> None:
    await _napping(world)
    sent = world.producer.send_all

    async def away(messages: list[Outgoing]) -> list[Outgoing]:
        raise ConnectionError("the broker is away")

    world.producer.send_all = away  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await world.fire_at(T0 + timedelta(seconds=1))
    world.producer.send_all = sent  # type: ignore[method-assign]

    [fired] = _mine(world, await world.fire_at(T0 + timedelta(seconds=2)))
    assert isinstance(fired, c.EndSleep)
    assert _parked_items(world) == {}
