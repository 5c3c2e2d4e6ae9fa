"""The staged instance view (seeds 000 and 004) is a pure fold over lifecycle events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from projections import staged_instance
from projections.timestamps import iso, utc_date
from tests.projections.events_factory import Story, fold

SEED_FIELDS = {
    "createdAt",
    "error",
    "id",
    "status",
    "terminated",
    "terminatedAt",
    "updatedAt",
    "workflowID",
}
STAGE_FIELDS = {"error", "instance_id", "stage", "started_at", "terminated_at"}
PARIS = timezone(timedelta(hours=1))
TERMINATED = {
    "queued": False,
    "running": False,
    "waiting": False,
    "waitingForPause": False,
    "paused": False,
    "rollingBack": False,
    "complete": True,
    "errored": True,
    "terminated": True,
}


@pytest.mark.parametrize("domain_status", sorted(TERMINATED))
def test_terminated_holds_exactly_in_the_terminal_statuses(domain_status: str) -> None:
    story = Story()
    events = story.to_status(domain_status)
    doc = fold(staged_instance.apply, events)
    instance = staged_instance.render(doc)
    assert doc["status"] == domain_status
    assert doc["terminated"] is instance["terminated"] is TERMINATED[domain_status]
    ended_at = iso(story.at(events[-1].version)) if TERMINATED[domain_status] else None
    assert instance.get("terminatedAt") == ended_at


def test_render_has_the_seed_fields_and_leaves_out_the_unset_optional_ones() -> None:
    story = Story()
    doc = fold(staged_instance.apply, [story.created(), story.started(), story.step_began("a")])
    instance = staged_instance.render(doc)
    assert set(instance) == SEED_FIELDS - {"error", "terminatedAt"}
    [stage] = instance["status"]
    assert instance["id"] == story.global_id and instance["workflowID"] == story.workflow_id
    assert instance["createdAt"] == iso(story.at(1)) and instance["updatedAt"] == iso(story.at(3))
    assert stage == {"instance_id": story.global_id, "stage": 1, "started_at": "2026-01-02"}
    assert (doc["account_id"], doc["workflow_name"]) == (story.account_id, story.workflow_name)
    assert doc["created_on"] == iso(story.at(1)) and doc["status"] == "running"
    assert staged_instance.key_of(story.started()) == story.global_id


def test_every_kind_of_step_is_a_stage_in_the_order_it_began() -> None:
    story = Story()
    events = [
        story.created(),
        story.started(),
        story.step_began("fetch"),  # 3
        story.attempt_began("fetch"),
        story.attempt_ended("fetch"),
        story.step_ended("fetch"),  # 6
        story.step_began("nap", "sleep"),  # 7
        story.step_ended("nap", "sleep"),  # 8
        story.step_began("ok?", "waitForEvent"),  # 9
        story.event_delivered({"yes": True}),  # 10
        story.step_began("charge"),  # 11
        story.attempt_began("charge"),
        story.attempt_ended("charge", success=False),
        story.step_ended("charge", error="card declined"),  # 14
        story.failed("card declined"),  # 15
    ]
    instance = staged_instance.render(fold(staged_instance.apply, events))
    stages = instance["status"]
    assert [s["stage"] for s in stages] == [1, 2, 3, 4]
    assert all(set(s) == STAGE_FIELDS for s in stages[3:])
    assert [(s["started_at"], s["terminated_at"]) for s in stages] == [
        (utc_date(iso(story.at(3))), utc_date(iso(story.at(6)))),
        (utc_date(iso(story.at(7))), utc_date(iso(story.at(8)))),
        (utc_date(iso(story.at(9))), utc_date(iso(story.at(10)))),
        (utc_date(iso(story.at(11))), utc_date(iso(story.at(14)))),
    ]
    assert [s.get("error") for s in stages] == [None, None, None, "card declined"]
    assert instance["error"] == "card declined" and instance["terminated"] is True
    assert instance["terminatedAt"] == iso(story.at(15))


def test_a_restart_keeps_the_kept_stages_and_clears_the_run() -> None:
    story = Story()
    events = [
        story.created(),
        story.started(),
        story.step_began("a"),
        story.step_ended("a"),
        story.step_began("b"),
        story.step_ended("b", error="nope"),
        story.failed("nope"),
        story.restarted(kept_steps=1),
    ]
    instance = staged_instance.render(fold(staged_instance.apply, events))
    assert [s["stage"] for s in instance["status"]] == [1]
    assert instance["status"][0]["started_at"] == utc_date(iso(story.at(3)))
    assert instance["terminated"] is False
    assert "terminatedAt" not in instance and "error" not in instance


def test_a_termination_is_not_a_stage() -> None:
    story = Story()
    events = [story.created(), story.started(), story.terminated(rollback=True)]
    rolling = fold(staged_instance.apply, events)
    assert rolling["terminated"] is False
    done = staged_instance.apply(rolling, story.rollback_ended())
    assert done is not None and done["terminated"] is True and done["status"] == "terminated"
    assert staged_instance.render(done)["status"] == []


def test_folding_the_same_events_twice_gives_the_same_document() -> None:
    story = Story()
    events = [story.created(), story.started(), story.step_began("a"), story.step_ended("a")]
    assert fold(staged_instance.apply, events) == fold(staged_instance.apply, events)


def test_stage_dates_are_the_utc_days_the_step_began_and_ended() -> None:
    story = Story()
    created, started, began, ended = (
        story.created(),
        story.started(),
        story.step_began("late"),
        story.step_ended("late"),
    )
    began = msgspec.structs.replace(began, occurred_at=datetime(2026, 1, 2, 23, 59, tzinfo=UTC))
    ended = msgspec.structs.replace(ended, occurred_at=datetime(2026, 1, 3, 1, 0, tzinfo=PARIS))
    instance = staged_instance.render(fold(staged_instance.apply, [created, started, began, ended]))
    [stage] = instance["status"]
    assert (stage["started_at"], stage["terminated_at"]) == ("2026-01-02", "2026-01-03")
    assert instance["updatedAt"] == "2026-01-03T00:00:00.000000Z"  # still a full timestamp
