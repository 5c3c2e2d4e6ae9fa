"""Deleting an instance: only a finished one, and nothing of its content stays in memory."""

from __future__ import annotations

import pytest

from services.domain.errors import InstanceNotFound, InstanceStillRunning
from services.domain.instance import WorkflowInstance
from tests.services.domain.instance_factory import (
    AT,
    BUILDERS,
    NON_TERMINAL_BUILDERS,
    TERMINAL_BUILDERS,
    assert_rejected,
    begin_attempt,
    begin_step,
    cid,
    complete,
    end_attempt,
    end_step,
    event_names,
    new_instance,
    send,
    start,
)


def delete(i: WorkflowInstance, reason: str = "api") -> None:
    i.delete(reason=reason, command_id=cid(), at=AT)


@pytest.mark.parametrize("builder", TERMINAL_BUILDERS)
def test_a_finished_instance_can_be_deleted_and_keeps_its_status(builder: str) -> None:
    i = BUILDERS[builder]()
    status = i.status
    delete(i, reason="retention")
    assert event_names(i)[-1] == "InstanceDeleted"
    assert i.pending_events[-1].reason == "retention"  # type: ignore[attr-defined]
    assert i.deleted
    assert i.status == status


@pytest.mark.parametrize("builder", NON_TERMINAL_BUILDERS)
def test_an_instance_that_is_not_finished_cannot_be_deleted(builder: str) -> None:
    i = BUILDERS[builder]()
    error = assert_rejected(i, InstanceStillRunning, "instance.running", lambda: delete(i))
    assert "terminate it first" in error.message
    assert not i.deleted


def test_deleting_drops_params_outputs_errors_and_payloads_from_memory() -> None:
    i = new_instance(params={"email": "ann@example.com"})
    start(i)
    begin_step(i, "charge")
    begin_attempt(i, "charge")
    end_attempt(i, "charge", success=True, output={"card": "4242"})
    end_step(i, "charge", output={"card": "4242"})
    send(i, "never-waited-for", {"secret": 1})
    complete(i, output={"receipt": "r-1"})
    delete(i)
    assert i.params is None
    assert i.run.steps == []
    assert i.run.output is None and i.run.error is None
    assert i.event_buffer == {}


def test_deleting_twice_is_not_found() -> None:
    i = BUILDERS["complete"]()
    delete(i)
    assert_rejected(i, InstanceNotFound, "instance.not_found", lambda: delete(i))


def test_a_deleted_instance_replays_as_deleted() -> None:
    i = BUILDERS["errored"]()
    delete(i)
    events = i.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, WorkflowInstance)
    assert replayed.deleted and replayed.params is None and replayed.status == "errored"
