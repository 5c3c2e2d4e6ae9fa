"""The retention timer: armed when an instance finishes, firing DeleteInstance "retention"."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from contracts import events as ev
from projections import timers
from projections.timers import due_commands, due_ms, epoch_ms
from tests.projections.events_factory import Story

RETENTION = {"success_retention": "2 seconds", "error_retention": 5_000}


def _fold(events: list[ev.LifecycleEvent]) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = None
    for event in events:
        doc = timers.apply(doc, event)
    return doc


def _running(story: Story, retention: dict[str, Any] | None = RETENTION) -> list[Any]:
    created = msgspec.structs.replace(story.created(), retention=retention)
    return [created, story.started()]


def _retention_timer(doc: dict[str, Any] | None) -> dict[str, Any]:
    assert doc is not None
    return doc["timers"]["retention"]  # type: ignore[no-any-return]


def test_a_completed_instance_is_deleted_its_success_retention_after_it_completed() -> None:
    story = Story()
    running = _running(story)
    completed = story.completed()
    doc = _fold([*running, completed])
    assert doc is not None and due_ms(doc) == epoch_ms(completed.occurred_at) + 2_000
    [(kind, command)] = due_commands(doc, epoch_ms(completed.occurred_at) + 2_000)
    assert kind == "retention"
    assert command["type"] == "DeleteInstance" and command["reason"] == "retention"
    assert command["instance_id"] == story.instance_id
    assert due_commands(doc, epoch_ms(completed.occurred_at) + 1_999) == []


def test_the_retention_command_id_is_the_same_each_time_it_is_folded() -> None:
    story = Story()
    events = [*_running(story), story.completed()]
    first, again = _retention_timer(_fold(events)), _retention_timer(_fold(events))
    assert first["command"]["command_id"] == again["command"]["command_id"]
    uuid.UUID(first["command"]["command_id"])


def test_an_errored_or_terminated_instance_waits_its_error_retention() -> None:
    for ending in ("failed", "terminated"):
        story = Story()
        running = _running(story)
        last = story.failed() if ending == "failed" else story.terminated()
        doc = _fold([*running, last])
        assert _retention_timer(doc)["due_ms"] == epoch_ms(last.occurred_at) + 5_000, ending


def test_a_rollback_arms_the_retention_only_once_it_ended() -> None:
    story = Story()
    rolling = [*_running(story), story.terminated(rollback=True)]
    doc = _fold(rolling)
    assert doc is None or "retention" not in doc["timers"]
    ended = story.rollback_ended()
    doc = _fold([*rolling, ended])
    assert _retention_timer(doc)["due_ms"] == epoch_ms(ended.occurred_at) + 5_000


def test_no_retention_timer_while_the_instance_runs() -> None:
    story = Story()
    doc = _fold([*_running(story), story.step_began("nap", "sleep", sleep_ms=1_000)])
    assert doc is not None and "retention" not in doc["timers"]


def test_an_instance_without_retention_is_kept_forever() -> None:
    story = Story()
    assert _fold([*_running(story, retention=None), story.completed()]) is None


def test_only_the_retention_of_the_outcome_applies() -> None:
    story = Story()
    only_errors = {"error_retention": "1 day"}
    doc = _fold([*_running(story, retention=only_errors), story.completed()])
    # The document stays (a restart's run may end in an error) with nothing due.
    assert doc is not None and doc["timers"] == {} and due_ms(doc) is None


def test_a_restart_cancels_the_retention_timer() -> None:
    story = Story()
    doc = _fold([*_running(story), story.completed(), story.restarted()])
    assert doc is None or "retention" not in doc["timers"]


def test_the_deletion_removes_the_timer_document() -> None:
    story = Story()
    events = [*_running(story), story.completed()]
    assert _fold(events) is not None
    assert _fold([*events, story.deleted(reason="retention")]) is None
