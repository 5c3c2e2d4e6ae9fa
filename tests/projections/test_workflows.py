"""The workflow registry is a pure fold over workflow events."""

from __future__ import annotations

import uuid
from typing import Any

from contracts import events as ev
from projections import workflows
from projections.timestamps import iso
from tests.projections.events_factory import STEP, T0, Story, fold


class _Workflow:
    """The events of one fresh workflow."""

    def __init__(self) -> None:
        self.account_id = f"acc-{uuid.uuid4().hex[:8]}"
        self.workflow_id = str(uuid.uuid4())
        self.version = 0

    def _common(self) -> dict[str, Any]:
        self.version += 1
        return {
            "event_id": str(uuid.uuid4()),
            "account_id": self.account_id,
            "workflow_name": "wf",
            "version": self.version,
            "occurred_at": T0 + STEP * self.version,
            "command_id": str(uuid.uuid4()),
            "workflow_id": self.workflow_id,
            "version_id": str(uuid.uuid4()),
        }

    def registered(self) -> ev.WorkflowRegistered:
        return ev.WorkflowRegistered(**self._common(), class_name="Flow", script_name="w")

    def deployed(self) -> ev.WorkflowVersionDeployed:
        return ev.WorkflowVersionDeployed(**self._common(), class_name="Flow2", script_name="w2")


def test_registration_makes_an_active_workflow_with_one_version() -> None:
    wf = _Workflow()
    registered = wf.registered()
    doc = fold(workflows.apply, [registered])
    assert workflows.key_of(registered) == wf.workflow_id
    assert doc["status"] == "active" and doc["versions"] == [registered.version_id]
    assert (doc["account_id"], doc["workflow_name"]) == (wf.account_id, "wf")
    assert doc["created_on"] == iso(T0 + STEP)
    assert workflows.render(doc) == {
        "id": wf.workflow_id,
        "name": "wf",
        "class_name": "Flow",
        "script_name": "w",
        "created_on": iso(T0 + STEP),
        "modified_on": iso(T0 + STEP),
        "version_id": registered.version_id,
    }


def test_a_deployment_adds_the_current_version() -> None:
    wf = _Workflow()
    registered, deployed = wf.registered(), wf.deployed()
    doc = fold(workflows.apply, [registered, deployed])
    assert doc["versions"] == [registered.version_id, deployed.version_id]
    assert workflows.version_number(doc, deployed.version_id) == 2
    assert workflows.version_number(doc, str(uuid.uuid4())) is None
    rendered = workflows.render(doc)
    assert rendered["version_id"] == deployed.version_id and rendered["class_name"] == "Flow2"
    assert rendered["created_on"] == iso(T0 + STEP)
    assert rendered["modified_on"] == iso(T0 + 2 * STEP)


def test_instance_events_are_not_about_workflows() -> None:
    story = Story()
    assert workflows.key_of(story.created()) is None
    doc = fold(workflows.apply, [_Workflow().registered()])
    assert workflows.apply(doc, story.started()) == doc


def test_folding_the_same_events_twice_gives_the_same_document() -> None:
    wf = _Workflow()
    events = [wf.registered(), wf.deployed(), wf.deployed()]
    assert fold(workflows.apply, events) == fold(workflows.apply, events)
    assert fold(workflows.apply, [*events, events[1]]) == fold(workflows.apply, events)
