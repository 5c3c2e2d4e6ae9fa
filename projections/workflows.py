"""The workflow registry: one document per workflow, from its registration and deployments.

`apply` is a pure fold over workflow events (instance events are not ours); the key is the
workflow's uuid. `versions` lists the version ids in deployment order, so a version's ordinal
is its index + 1. `status` is always "active": there is no command that retires a workflow.

`render` gives a small Cloudflare-style workflow object: id, name, class_name, script_name,
created_on, modified_on and `version_id` (the current version); no instance counts.
"""

from __future__ import annotations

from typing import Any

from contracts import events as ev
from projections.instance_status import is_stale
from projections.timestamps import iso

VIEW_NAME = "workflows"
ROW_FIELD: str | None = None  # no list that grows with the steps


def key_of(event: ev.LifecycleEvent) -> str | None:
    if isinstance(event, ev.WorkflowRegistered | ev.WorkflowVersionDeployed):
        return event.workflow_id
    return None


def new_document(event: ev.WorkflowRegistered) -> dict[str, Any]:
    at = iso(event.occurred_at)
    return {
        "id": event.workflow_id,
        "name": event.workflow_name,
        "account_id": event.account_id,
        "workflow_name": event.workflow_name,
        "class_name": event.class_name,
        "script_name": event.script_name,
        "created_on": at,
        "modified_on": at,
        "versions": [event.version_id],
        "status": "active",
        "version": event.version,
    }


def apply(doc: dict[str, Any] | None, event: ev.LifecycleEvent) -> dict[str, Any] | None:
    """The next document; unchanged for events that are not about a workflow."""
    if is_stale(doc, event):
        return doc
    if isinstance(event, ev.WorkflowRegistered):
        return new_document(event)
    if doc is None or not isinstance(event, ev.WorkflowVersionDeployed):
        return doc
    return {
        **doc,
        "class_name": event.class_name,
        "script_name": event.script_name,
        "modified_on": iso(event.occurred_at),
        "versions": [*doc["versions"], event.version_id],
        "version": event.version,
    }


def version_number(doc: dict[str, Any], version_id: str) -> int | None:
    """The 1-based ordinal of a version of this workflow; None when it is not one of them."""
    versions: list[str] = doc["versions"]
    return versions.index(version_id) + 1 if version_id in versions else None


def render(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "name": doc["name"],
        "class_name": doc["class_name"],
        "script_name": doc["script_name"],
        "created_on": doc["created_on"],
        "modified_on": doc["modified_on"],
        "version_id": doc["versions"][-1],
    }
