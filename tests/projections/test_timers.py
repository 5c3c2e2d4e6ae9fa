"""The scheduler's timer fold: what each event arms, fires and cancels (no clock, no sleep)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts import events as ev
from projections import timers
from projections.timers import due_commands, due_ms, epoch_ms, mark_fired
from tests.projections.events_factory import Story


def _fold(events: list[ev.LifecycleEvent]) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = None
    for event in events:
        doc = timers.apply(doc, event)
    return doc


def _running(story: Story, *, timeout: str | None = None) -> list[ev.LifecycleEvent]:
    created = msgspec.structs.replace(story.created(), timeout=timeout)
    return [created, story.started()]


def _types(doc: dict[str, Any] | None, now_ms: int) -> list[tuple[str, str]]:
    assert doc is not None
    return [(kind, command["type"]) for kind, command in due_commands(doc, now_ms)]


def test_a_sleep_is_due_its_length_after_it_began_and_fires_end_sleep_by_name() -> None:
    story = Story()
    began = story.step_began("nap", "sleep", sleep_ms=1_500)

    doc = _fold([*_running(story), began])

    assert doc is not None and due_ms(doc) == epoch_ms(began.occurred_at) + 1_500
    assert _types(doc, epoch_ms(began.occurred_at) + 1_499) == []
    [(kind, command)] = due_commands(doc, epoch_ms(began.occurred_at) + 1_500)
    assert kind == "sleep" and command["type"] == "EndSleep" and command["name"] == "nap"
    assert command["instance_id"] == story.instance_id


def test_the_sleeps_end_cancels_its_timer_and_drops_an_idle_document() -> None:
    story = Story()

    doc = _fold(
        [*_running(story), story.step_began("nap", "sleep"), story.step_ended("nap", "sleep")]
    )

    assert doc is None


def test_a_wait_times_out_after_its_timeout_unless_the_event_arrives_first() -> None:
    story = Story()
    began = story.step_began("approval", "waitForEvent", wait_timeout="1 hour")
    waiting = [*_running(story), began]

    doc = _fold(waiting)
    assert doc is not None and due_ms(doc) == epoch_ms(began.occurred_at) + 3_600_000
    assert _types(doc, due_ms(doc) or 0) == [("wait", "TimeOutWait")]

    delivered = _fold(
        [*waiting, story.event_delivered(), story.step_ended("approval", "waitForEvent")]
    )
    assert delivered is None


def test_an_attempt_outliving_its_steps_timeout_fires_time_out_attempt_with_its_number() -> None:
    story = Story()
    config = {
        "retries": {"limit": 2, "delay": 1_000, "backoff": "constant"},
        "timeout": "2 seconds",
    }
    attempt = [*_running(story), story.step_began("charge", config=config)]
    began = story.attempt_began("charge", attempt=1)

    doc = _fold([*attempt, began])

    assert doc is not None and due_ms(doc) == epoch_ms(began.occurred_at) + 2_000
    [(kind, command)] = due_commands(doc, due_ms(doc) or 0)
    assert (kind, command["type"], command["attempt"]) == ("attempt", "TimeOutAttempt", 1)


def test_a_failed_attempt_with_retries_left_arms_its_back_off_and_the_next_attempt_ends_it() -> (
    None
):
    story = Story()
    events = [*_running(story), story.step_began("charge"), story.attempt_began("charge")]
    failed = story.attempt_ended("charge", success=False, retry_delay_ms=4_000)

    doc = _fold([*events, failed])
    assert doc is not None and due_ms(doc) == epoch_ms(failed.occurred_at) + 4_000
    assert _types(doc, due_ms(doc) or 0) == [("backoff", "EndSleep")]

    retried = _fold([*events, failed, story.backoff_ended("charge")])
    assert retried is not None and "backoff" not in retried["timers"]


def test_a_paused_instance_keeps_its_due_times_and_fires_nothing_until_resumed() -> None:
    story = Story()
    began = story.step_began("nap", "sleep", sleep_ms=1_000)
    events = [*_running(story), began, story.paused("waiting")]
    late = epoch_ms(began.occurred_at) + 10_000

    paused = _fold(events)
    assert paused is not None and due_ms(paused) is None and _types(paused, late) == []

    resumed = _fold([*events, story.resumed("waiting")])
    assert resumed is not None and due_ms(resumed) == epoch_ms(began.occurred_at) + 1_000
    assert _types(resumed, late) == [("sleep", "EndSleep")]


def test_an_instance_timeout_counts_from_creation_and_again_from_a_restart() -> None:
    story = Story()
    events = _running(story, timeout="30 seconds")

    doc = _fold(events)
    assert doc is not None and due_ms(doc) == epoch_ms(events[0].occurred_at) + 30_000
    assert _types(doc, due_ms(doc) or 0) == [("instance", "TimeOutInstance")]

    restart = story.restarted()
    again = _fold([*events, restart])
    assert again is not None and due_ms(again) == epoch_ms(restart.occurred_at) + 30_000


def test_the_runs_end_cancels_every_timer() -> None:
    story = Story()
    events = [*_running(story, timeout="1 hour"), story.step_began("nap", "sleep")]

    for end in (story.terminated(), story.failed(), story.completed()):
        assert _fold([*events, end]) is None


def test_each_timer_fires_with_an_id_of_its_own_that_is_the_same_every_time() -> None:
    story = Story()
    events = [*_running(story), story.step_began("nap", "sleep", sleep_ms=10)]

    first, second = _fold(events), _fold(events)

    assert first is not None and second is not None
    ids = [c["command_id"] for _, c in due_commands(first, 10**15)]
    assert ids == [c["command_id"] for _, c in due_commands(second, 10**15)]
    other = Story()
    elsewhere = _fold([*_running(other), other.step_began("nap", "sleep", sleep_ms=10)])
    assert elsewhere is not None
    assert ids != [c["command_id"] for _, c in due_commands(elsewhere, 10**15)]


def test_a_fired_timer_is_not_due_again_but_one_armed_since_is() -> None:
    story = Story()
    events = [*_running(story), story.step_began("nap", "sleep", sleep_ms=10)]
    doc = _fold(events)
    assert doc is not None
    fired = mark_fired(doc, 10**15)

    assert due_ms(fired) is None and due_commands(fired, 10**15) == []


def test_a_redelivered_event_is_applied_once() -> None:
    story = Story()
    began = story.step_began("nap", "sleep", sleep_ms=10)
    ended = story.step_ended("nap", "sleep")
    doc = _fold([*_running(story), began, ended, story.step_began("next", "sleep", sleep_ms=99)])
    assert doc is not None

    assert timers.apply(doc, began) == doc


def _registered(schedules: list[str], version: int = 1, minute: int = 0) -> ev.LifecycleEvent:
    kind = ev.WorkflowRegistered if version == 1 else ev.WorkflowVersionDeployed
    return kind(
        event_id=str(uuid.uuid4()),
        account_id="acc",
        workflow_name="nightly",
        version=version,
        occurred_at=datetime(2026, 3, 1, 2, minute, 30, tzinfo=UTC),
        command_id=str(uuid.uuid4()),
        workflow_id=str(uuid.uuid4()),
        version_id=str(uuid.uuid4()),
        schedules=schedules,
    )


def _ms(hour: int, minute: int) -> int:
    return epoch_ms(datetime(2026, 3, 1, hour, minute, tzinfo=UTC))


def test_a_schedule_creates_one_cron_instance_per_tick_with_ids_of_the_tick() -> None:
    doc = timers.apply(None, _registered(["*/5 * * * *"]))
    assert doc is not None and due_ms(doc) == _ms(2, 5)

    [(kind, command)] = due_commands(doc, _ms(2, 5))
    assert kind == "cron" and command["type"] == "CreateInstance"
    assert command["trigger_source"] == "cron" and command["instance_id"].startswith("cron-")
    assert command["schedule"] == {"cron": "*/5 * * * *", "scheduled_time": _ms(2, 5)}
    assert due_commands(doc, _ms(2, 5)) == [(kind, command)]  # the same ids every time

    rearmed = mark_fired(doc, _ms(2, 5))
    assert due_ms(rearmed) == _ms(2, 10)
    [(_, next_one)] = due_commands(rearmed, _ms(2, 10))
    assert next_one["instance_id"] != command["instance_id"]


def test_ticks_missed_while_no_scheduler_ran_create_one_instance_for_the_latest() -> None:
    doc = timers.apply(None, _registered(["*/5 * * * *"]))
    assert doc is not None

    late = _ms(3, 2)  # the ticks of 2:05 ... 3:00 were missed
    [(_, command)] = due_commands(doc, late)
    assert command["schedule"]["scheduled_time"] == _ms(3, 0)
    assert due_ms(mark_fired(doc, late)) == _ms(3, 5)


def test_redeploying_keeps_a_kept_schedules_tick_and_dropping_it_removes_the_timer() -> None:
    doc = timers.apply(None, _registered(["0 * * * *"]))
    kept = timers.apply(doc, _registered(["0 * * * *", "30 * * * *"], version=2, minute=10))
    assert kept is not None and due_ms(kept) == _ms(2, 30)
    assert kept["timers"]["cron 0 * * * *"] == (doc or {})["timers"]["cron 0 * * * *"]

    assert timers.apply(kept, _registered([], version=3)) is None
