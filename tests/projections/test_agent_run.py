"""The agent-platform run view (seed 003) is a pure fold over lifecycle events."""

from __future__ import annotations

import pytest

from contracts.keys import instance_global_id
from projections import agent_run
from projections.timestamps import iso
from tests.projections.events_factory import Story, fold

SEED_FIELDS = {
    "id",
    "workspaceId",
    "subjectId",
    "parentRunId",
    "status",
    "mode",
    "input",
    "output",
    "error",
    "triggeredBy",
    "cfWorkflowId",
    "durationMs",
    "userId",
    "startedAt",
    "completedAt",
    "createdAt",
    "updatedAt",
}

EXPECTED_STATUS = {
    "queued": "pending",
    "running": "running",
    "waiting": "waiting",
    "waitingForPause": "paused",
    "paused": "paused",
    "rollingBack": "running",
    "complete": "completed",
    "errored": "failed",
    "terminated": "cancelled",
}


@pytest.mark.parametrize("domain_status", sorted(EXPECTED_STATUS))
def test_every_domain_status_maps_to_the_run_vocabulary(domain_status: str) -> None:
    doc = fold(agent_run.apply, Story().to_status(domain_status))
    assert doc["domain_status"] == domain_status
    assert doc["status"] == EXPECTED_STATUS[domain_status]
    assert agent_run.render(doc)["status"] == EXPECTED_STATUS[domain_status]


def test_render_has_exactly_the_seed_fields_and_the_query_columns_are_stored() -> None:
    story = Story()
    doc = fold(agent_run.apply, [story.created({"q": 1})])
    assert set(agent_run.render(doc)) == SEED_FIELDS
    assert doc["account_id"] == story.account_id
    assert doc["workflow_name"] == story.workflow_name
    assert doc["created_on"] == iso(story.at(1))
    assert agent_run.key_of(story.created()) == story.global_id


def test_a_new_run_reads_as_pending_with_its_defaults() -> None:
    story = Story()
    run = agent_run.render(fold(agent_run.apply, [story.created({"q": 1})]))
    assert run["id"] == story.global_id and run["cfWorkflowId"] == story.instance_id
    assert run["input"] == {"q": 1} and run["status"] == "pending"
    assert run["workspaceId"] == story.account_id
    assert run["subjectId"] == f"wf_{story.workflow_name}"
    assert run["userId"] == "" and run["mode"] == "async" and run["triggeredBy"] == "user"
    assert run["parentRunId"] is None
    assert run["startedAt"] is None and run["completedAt"] is None
    assert run["durationMs"] is None and run["output"] is None and run["error"] is None
    assert run["createdAt"] == run["updatedAt"] == iso(story.at(1))


def test_run_metadata_fills_the_run_and_names_the_parent_run() -> None:
    story = Story(
        workspace_id="ws_1",
        subject_id="agt_7",
        user_id="usr_3",
        mode="sync",
        triggered_by="agent",
        parent_instance_id="parent-1",
    )
    run = agent_run.render(fold(agent_run.apply, [story.created()]))
    assert (run["workspaceId"], run["subjectId"], run["userId"]) == ("ws_1", "agt_7", "usr_3")
    assert (run["mode"], run["triggeredBy"]) == ("sync", "agent")
    parent = instance_global_id(story.account_id, story.workflow_name, "parent-1")
    assert run["parentRunId"] == str(parent)


def test_a_completed_run_has_its_output_times_and_duration() -> None:
    story = Story()
    events = [story.created(), story.started(), story.step_began("s"), story.completed([1])]
    run = agent_run.render(fold(agent_run.apply, events))
    assert run["status"] == "completed" and run["output"] == [1] and run["error"] is None
    assert run["startedAt"] == iso(story.at(2))
    assert run["completedAt"] == run["updatedAt"] == iso(story.at(4))
    assert run["durationMs"] == 2000


def test_a_failed_run_reads_its_error_and_a_timeout_reads_timed_out() -> None:
    story = Story()
    failed = fold(agent_run.apply, [story.created(), story.started(), story.failed("bad")])
    assert agent_run.render(failed)["error"] == "Error: bad"
    assert failed["status"] == "failed"

    story = Story()
    events = [story.created(), story.started(), story.failed("late", timed_out=True)]
    run = agent_run.render(fold(agent_run.apply, events))
    assert run["status"] == "timed_out" and run["durationMs"] == 1000


def test_a_run_that_never_started_counts_its_duration_from_creation() -> None:
    story = Story()
    run = agent_run.render(fold(agent_run.apply, [story.created(), story.terminated()]))
    assert run["status"] == "cancelled" and run["startedAt"] is None
    assert run["durationMs"] == 1000 and run["completedAt"] == iso(story.at(2))


def test_a_rolled_back_run_completes_when_the_rollback_ends() -> None:
    story = Story()
    rolling = fold(
        agent_run.apply, [story.created(), story.started(), story.terminated(rollback=True)]
    )
    assert rolling["status"] == "running" and rolling["completedAt"] is None
    done = agent_run.apply(rolling, story.rollback_ended())
    assert done is not None and done["status"] == "cancelled"
    assert done["completedAt"] == iso(story.at(4)) and done["durationMs"] == 2000


def test_a_restart_starts_the_run_afresh() -> None:
    story = Story()
    events = [story.created({"q": 1}), story.started(), story.failed(), story.restarted()]
    run = agent_run.render(fold(agent_run.apply, events))
    assert run["status"] == "pending" and run["input"] == {"q": 1}
    for cleared in ("startedAt", "completedAt", "durationMs", "output", "error"):
        assert run[cleared] is None, cleared
    assert run["createdAt"] == iso(story.at(1)) and run["updatedAt"] == iso(story.at(4))


def test_folding_the_same_events_twice_gives_the_same_document() -> None:
    story = Story()
    events = [story.created({"q": 1}), story.started(), story.completed({"ok": True})]
    assert fold(agent_run.apply, events) == fold(agent_run.apply, events)


def test_a_redelivered_event_is_applied_once() -> None:
    story = Story()
    created, started = story.created(), story.started()
    doc = fold(agent_run.apply, [created, started])
    assert agent_run.apply(doc, started) == doc
    assert agent_run.apply(doc, created) == doc
