"""The agent-platform run read model (seed 003 `WorkflowRun`): one document per instance.

`apply` is a pure fold: the current document (or None) and one lifecycle event in, the next
document out; `render` gives exactly the seed's fields.

Decisions (the run metadata of CreateInstance arrives in `InstanceCreated.metadata`):
- `id` is the instance's global id, `cfWorkflowId` its instance id, `input` its params.
- `workspaceId` defaults to the account id (an account is the widest workspace it can be in).
- `subjectId` defaults to `wf_<workflow_name>`: the entity being run is the workflow, and
  its name is its id within the account.
- `userId` defaults to "": no user asked for the run (an engine, a cron or an event did).
- `mode` defaults to "async", `triggeredBy` to "user".
- `parentRunId` is the global id of `parent_instance_id` in the same account and workflow.
- `error` reads `"<name>: <message>"`, as JavaScript's Error.toString() does; it is set only
  for `failed` and `timed_out` runs (a cancelled run has no error).
- `startedAt` is when the run started; `completedAt` when it became terminal; `durationMs` the
  whole milliseconds between them. A run that ends without starting counts from the time it
  was queued: its creation, or its restart for a restarted run.
- A restart starts the run afresh (pending; started/completed/duration/output/error cleared).
- The `status` column holds the run vocabulary (pending, running, ...), as the HTTP filter
  compares it; `domain_status` keeps the Cloudflare status.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from contracts import events as ev
from contracts.keys import instance_global_id
from contracts.status import QUEUED, TERMINAL, status_after
from projections.instance_status import gone, instance_doc_key, is_stale, query_columns
from projections.timestamps import iso, parse

VIEW_NAME = "agent_runs"
ROW_FIELD: str | None = None  # no list that grows with the steps

FIELDS = (
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
)

_STATUS = {
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


def run_status(domain_status: str, timed_out: bool = False) -> str:
    """The run vocabulary for a domain status."""
    if domain_status == "errored" and timed_out:
        return "timed_out"
    return _STATUS[domain_status]


def key_of(event: ev.LifecycleEvent) -> str | None:
    return instance_doc_key(event)


def _parent_run_id(event: ev.InstanceCreated) -> str | None:
    parent = event.metadata.get("parent_instance_id")
    if not parent:
        return None
    return str(instance_global_id(event.account_id, event.workflow_name, parent))


def _fresh_run(queued_at: str) -> dict[str, Any]:
    return {
        "domain_status": QUEUED,
        "status": "pending",
        "timed_out": False,
        "queued_at": queued_at,
        "output": None,
        "error": None,
        "durationMs": None,
        "startedAt": None,
        "completedAt": None,
    }


def new_document(event: ev.InstanceCreated) -> dict[str, Any]:
    meta = event.metadata
    at = iso(event.occurred_at)
    return {
        **query_columns(event),
        "workspaceId": meta.get("workspace_id") or event.account_id,
        "subjectId": meta.get("subject_id") or f"wf_{event.workflow_name}",
        "parentRunId": _parent_run_id(event),
        "mode": meta.get("mode") or "async",
        "input": event.params,
        "triggeredBy": meta.get("triggered_by") or "user",
        "cfWorkflowId": event.instance_id,
        "userId": meta.get("user_id") or "",
        "createdAt": at,
        "updatedAt": at,
        **_fresh_run(at),
    }


def apply(doc: dict[str, Any] | None, event: ev.LifecycleEvent) -> dict[str, Any] | None:
    """The next document; unchanged for events that are not about this run."""
    if is_stale(doc, event):
        return doc
    if isinstance(event, ev.InstanceCreated):
        return new_document(event)
    if isinstance(event, ev.InstanceDeleted):
        return gone(event)
    if doc is None or not isinstance(event, ev.InstanceEvent):
        return doc
    at = iso(event.occurred_at)
    was = doc["domain_status"]
    doc = {**doc, "version": event.version, "updatedAt": at}
    doc["domain_status"] = status_after(was, event)
    match event:
        case ev.InstanceRestarted():
            doc.update(_fresh_run(at))
        case ev.RunStarted():
            doc["startedAt"] = at
        case ev.RunCompleted():
            doc["output"] = event.output
        case ev.RunFailed():
            doc["error"] = f"{event.error.name}: {event.error.message}"
            doc["timed_out"] = event.timed_out
    if doc["domain_status"] in TERMINAL and was not in TERMINAL:
        doc["completedAt"] = at
        doc["durationMs"] = _duration_ms(doc["startedAt"] or doc["queued_at"], event.occurred_at)
    doc["status"] = run_status(doc["domain_status"], doc["timed_out"])
    return doc


def _duration_ms(start: str, end: datetime) -> int:
    return max(0, (end - parse(start)) // timedelta(milliseconds=1))


def render(doc: dict[str, Any]) -> dict[str, Any]:
    """The seed's `WorkflowRun`: exactly its seventeen fields."""
    return {name: doc[name] for name in FIELDS}
