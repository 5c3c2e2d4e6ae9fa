"""The Onfido workflow-run view (seed 001) is a pure fold over lifecycle events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import commands as c
from contracts import events as ev
from projections import onfido_run
from projections.timestamps import iso
from services.application import handlers
from services.application.lifecycle import LifecycleTranslator
from tests.projections.events_factory import Story, fold

SEED_FIELDS = {
    "applicant_id",
    "workflow_id",
    "tags",
    "customer_user_id",
    "link",
    "created_at",
    "updated_at",
    "id",
    "workflow_version_id",
    "dashboard_url",
    "status",
    "output",
    "reasons",
    "error",
    "sdk_token",
}

EXPECTED_STATUS = {
    "queued": "processing",
    "running": "processing",
    "waiting": "processing",  # a sleep; a waitForEvent is awaiting_input (below)
    "waitingForPause": "processing",
    "paused": "processing",
    "rollingBack": "processing",
    "complete": "approved",
    "errored": "error",
    "terminated": "abandoned",
}


def _render(doc: dict[str, Any]) -> dict[str, Any]:
    return onfido_run.render(doc, dashboard_base="https://dash.example/", sdk_token="tok")


@pytest.mark.parametrize("domain_status", sorted(EXPECTED_STATUS))
def test_every_domain_status_maps_to_the_onfido_vocabulary(domain_status: str) -> None:
    doc = fold(onfido_run.apply, Story().to_status(domain_status))
    assert doc["domain_status"] == domain_status
    assert doc["status"] == _render(doc)["status"] == EXPECTED_STATUS[domain_status]


def test_waiting_for_an_event_is_awaiting_input_until_the_event_arrives() -> None:
    story = Story()
    waiting = fold(
        onfido_run.apply,
        [story.created(), story.started(), story.step_began("ok?", "waitForEvent")],
    )
    assert waiting["status"] == "awaiting_input"
    delivered = onfido_run.apply(waiting, story.event_delivered({"yes": True}))
    assert delivered is not None and delivered["status"] == "processing"


def test_waiting_for_a_retry_back_off_is_processing() -> None:
    story = Story()
    events = [
        story.created(),
        story.started(),
        story.step_began("s"),
        story.attempt_began("s"),
        story.attempt_ended("s", success=False, retry_delay_ms=10_000),
    ]
    doc = fold(onfido_run.apply, events)
    assert doc["domain_status"] == "waiting" and doc["status"] == "processing"


@pytest.mark.parametrize(
    ("outcome", "status"),
    [(None, "approved"), ("approved", "approved"), ("declined", "declined"),
     ("review", "review"), ("unheard-of", "review")],
)  # fmt: skip
def test_a_completed_run_reads_its_outcome(outcome: str | None, status: str) -> None:
    story = Story()
    events = [story.created(), story.started(), story.completed({"score": 9}, outcome, ["r1"])]
    run = _render(fold(onfido_run.apply, events))
    assert run["status"] == status
    assert run["output"] == {"score": 9} and run["reasons"] == ["r1"] and "error" not in run


def test_render_has_exactly_the_seed_fields_and_the_query_columns_are_stored() -> None:
    applicant = str(uuid.uuid4())
    link = {"url": "https://link.example/x", "language": "en_US"}
    story = Story(
        workflow_version=3, applicant_id=applicant, customer_user_id="cu-1", tags=["a"], link=link
    )
    doc = fold(onfido_run.apply, [story.created()])
    run = _render(doc)
    assert set(run) == SEED_FIELDS - {"output", "reasons", "error"}  # no value yet
    assert run["workflow_version_id"] == 3 and isinstance(run["workflow_version_id"], int)
    assert run["id"] == story.global_id and run["workflow_id"] == story.workflow_id
    assert run["applicant_id"] == applicant and run["customer_user_id"] == "cu-1"
    assert run["tags"] == ["a"] and run["link"] == link
    assert run["dashboard_url"] == f"https://dash.example/workflow_runs/{story.global_id}"
    assert run["sdk_token"] == "tok"
    assert run["created_at"] == run["updated_at"] == iso(story.at(1))
    assert (doc["account_id"], doc["workflow_name"]) == (story.account_id, story.workflow_name)
    assert doc["created_on"] == iso(story.at(1))
    assert onfido_run.key_of(story.created()) == story.global_id


def test_an_instance_without_run_metadata_leaves_out_the_optional_fields_it_lacks() -> None:
    run = _render(fold(onfido_run.apply, [Story().created()]))
    assert run["applicant_id"] == onfido_run.NO_APPLICANT
    assert run["tags"] == [] and run["workflow_version_id"] == 1
    assert not {"customer_user_id", "link", "output", "reasons", "error"} & set(run)


def test_a_failed_run_carries_its_error_and_a_non_object_output_is_wrapped() -> None:
    story = Story()
    failed = fold(onfido_run.apply, [story.created(), story.started(), story.failed("bad")])
    assert _render(failed)["error"] == {"type": "Error", "message": "bad"}

    story = Story()
    done = fold(onfido_run.apply, [story.created(), story.started(), story.completed([1, 2])])
    assert _render(done)["output"] == {"value": [1, 2]}


def test_a_restart_starts_the_run_afresh() -> None:
    story = Story()
    events = [story.created(), story.started(), story.failed(), story.restarted()]
    run = _render(fold(onfido_run.apply, events))
    assert run["status"] == "processing" and "error" not in run and "output" not in run
    assert run["updated_at"] == iso(story.at(4))


def test_folding_the_same_events_twice_gives_the_same_document() -> None:
    story = Story(tags=["t"])
    events = [story.created(), story.started(), story.completed({"ok": True}, "declined")]
    assert fold(onfido_run.apply, events) == fold(onfido_run.apply, events)


class _Unit:
    """The part of the application's unit of work the handlers use, in memory."""

    def __init__(self) -> None:
        self.aggregates: dict[uuid.UUID, Any] = {}

    def get(self, aggregate_id: uuid.UUID) -> Any:
        return self.aggregates.get(aggregate_id)

    def add(self, aggregate: Any) -> None:
        self.aggregates[aggregate.id] = aggregate


def test_an_instance_names_the_version_number_it_was_created_on() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    unit, account = _Unit(), f"acc-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        register = c.RegisterWorkflow(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
        )
        handlers.register_workflow(unit, register, now)  # type: ignore[arg-type]
    create = c.CreateInstance(
        command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf", instance_id="i"
    )
    instance = handlers.create_instance(unit, create, now).instance  # type: ignore[arg-type]
    assert instance is not None
    [domain_event] = instance.pending_events
    created = LifecycleTranslator(lambda _id: None).translate(domain_event)
    assert isinstance(created, ev.InstanceCreated) and created.workflow_version == 2
    assert _render(fold(onfido_run.apply, [created]))["workflow_version_id"] == 2
