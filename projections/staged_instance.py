"""The staged instance read model (seeds 000 and 004): one `WorkflowInstance` per instance,
with one `StageStatus` per step of the current run.

`apply` is a pure fold over lifecycle events; `render` gives exactly the seeds' fields.

Decisions:
- `id` is the instance's global id; each stage's `instance_id` is that same id (the stage
  belongs to this `WorkflowInstance`); `workflowID` is the workflow's uuid.
- Every step of the current run is a stage (step, sleep and waitForEvent alike), in the order
  they began; `stage` is its 1-based ordinal. A stage's `started_at` is the UTC day the step
  began, `terminated_at` the UTC day it ended, `error` the step's error message when it
  failed. Seed 004 types both as `date`, so they are RFC 3339 full dates (YYYY-MM-DD): a time
  of day would be refused by its model. The document keeps the full timestamps. A
  termination is not a stage. A restart keeps the stages it keeps (`kept_steps`) and drops
  the rest.
- `terminated` is true exactly in the terminal statuses (complete, errored, terminated);
  `terminatedAt` is when it became so; `error` is the run's error message.
- Optional fields (`error`, `terminatedAt`, a stage's `error` and `terminated_at`) are left
  out while unset: the seeds declare them optional, not nullable, so null is not theirs.
- Filtering: the `status` column holds the domain (Cloudflare) status and the document also
  keeps a top-level `terminated` bool.
"""

from __future__ import annotations

from typing import Any

from contracts import events as ev
from contracts.status import QUEUED, TERMINAL, status_after
from projections.instance_status import gone, instance_doc_key, is_stale, query_columns
from projections.row_window import cut
from projections.timestamps import iso, utc_date

VIEW_NAME = "staged_instances"
# Stored one row per stage beside the document (projections/row_window.py): `apply` sees the
# stages from the last stored one on, and never needs the others.
ROW_FIELD: str | None = "stages"
OPTIONAL_FIELDS = frozenset({"error", "terminatedAt"})
OPTIONAL_STAGE_FIELDS = frozenset({"error", "terminated_at"})


def key_of(event: ev.LifecycleEvent) -> str | None:
    return instance_doc_key(event)


def new_document(event: ev.InstanceCreated) -> dict[str, Any]:
    at = iso(event.occurred_at)
    return {
        **query_columns(event),
        "status": QUEUED,
        "terminated": False,
        "terminatedAt": None,
        "error": None,
        "stages": [],
        "workflowID": event.workflow_id,
        "createdAt": at,
        "updatedAt": at,
    }


def apply(doc: dict[str, Any] | None, event: ev.LifecycleEvent) -> dict[str, Any] | None:
    """The next document; unchanged for events that are not about this instance."""
    if is_stale(doc, event):
        return doc
    if isinstance(event, ev.InstanceCreated):
        return new_document(event)
    if isinstance(event, ev.InstanceDeleted):
        return gone(event)
    if doc is None or not isinstance(event, ev.InstanceEvent):
        return doc
    at = iso(event.occurred_at)
    was = doc["status"]
    doc = {**doc, "version": event.version, "updatedAt": at, "stages": list(doc["stages"])}
    doc["status"] = status_after(was, event)
    match event:
        case ev.InstanceRestarted():
            doc.update(terminatedAt=None, error=None)
            cut(doc, "stages", event.kept_steps)
        case ev.StepBegan():
            doc["stages"].append(
                {
                    "name": event.name,
                    "type": event.step_type,
                    "started_at": at,
                    "terminated_at": None,
                    "error": None,
                }
            )
        case ev.StepEnded():
            _end_last_stage(doc, at, event.error)
        case ev.EventDelivered():
            _end_last_stage(doc, at, None)
        case ev.RunFailed():
            doc["error"] = event.error.message
    doc["terminated"] = doc["status"] in TERMINAL
    if doc["terminated"] and was not in TERMINAL:
        doc["terminatedAt"] = at
    return doc


def _end_last_stage(doc: dict[str, Any], at: str, error: ev.ErrorData | None) -> None:
    if not doc["stages"]:
        return  # an end without a beginning: nothing to end, and no reason to stop the view
    stage = {**doc["stages"][-1], "terminated_at": at}
    stage["error"] = None if error is None else error.message
    doc["stages"][-1] = stage


def render(doc: dict[str, Any]) -> dict[str, Any]:
    """The seed's `WorkflowInstance`, its `status` the list of `StageStatus`."""
    stages = [
        _render_stage(doc["id"], ordinal, stage)
        for ordinal, stage in enumerate(doc["stages"], start=1)
    ]
    return _without_unset(
        {
            "createdAt": doc["createdAt"],
            "error": doc["error"],
            "id": doc["id"],
            "status": stages,
            "terminated": doc["terminated"],
            "terminatedAt": doc["terminatedAt"],
            "updatedAt": doc["updatedAt"],
            "workflowID": doc["workflowID"],
        },
        OPTIONAL_FIELDS,
    )


def _render_stage(instance_id: str, ordinal: int, stage: dict[str, Any]) -> dict[str, Any]:
    ended = stage["terminated_at"]
    return _without_unset(
        {
            "error": stage["error"],
            "instance_id": instance_id,
            "stage": ordinal,
            "started_at": utc_date(stage["started_at"]),
            "terminated_at": None if ended is None else utc_date(ended),
        },
        OPTIONAL_STAGE_FIELDS,
    )


def _without_unset(fields: dict[str, Any], optional: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None or k not in optional}
