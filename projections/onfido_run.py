"""The Onfido workflow-run read model (seed 001 `WorkflowRun`): one document per instance.

`apply` is a pure fold over lifecycle events; `render` gives exactly the seed's fields, in a
shape the onfido-python SDK's `WorkflowRun` model accepts.

Decisions:
- `id` is the instance's global id, `workflow_id` the workflow's uuid, `workflow_version_id`
  the ordinal (1-based) of the version the instance was created on.
- `applicant_id`, `customer_user_id`, `tags` and `link` come from the run metadata of
  CreateInstance. An instance created without an applicant (say through the Cloudflare API)
  reads `applicant_id` = the nil UUID, since the SDK requires a UUID there.
- Status: complete -> the completion's outcome (approved when none; an outcome Onfido does not
  know reads `review`, so a person looks at it); errored -> error; terminated -> abandoned;
  waiting inside a waitForEvent -> awaiting_input; everything else -> processing. The `status`
  column holds this vocabulary; `domain_status` keeps the Cloudflare one.
- `output` is the completion's output when it is a JSON object; any other value is wrapped
  as {"value": output} (the SDK types output as an object); absent until the run completes.
- `reasons` is absent until the run completes, then the completion's reasons.
- `error` is {type, message} (the error's name and message) when the status is `error`, else
  absent: Onfido sets it only then.
- Optional fields without a value (`customer_user_id`, `link`, `output`, `reasons`, `error`)
  are left out, never null: seed 001 declares them optional, not nullable.
- `dashboard_url` and `sdk_token` are not stored: `render` takes them from the HTTP layer.
- A restart starts afresh: processing, with output, reasons, error and outcome cleared.
"""

from __future__ import annotations

from typing import Any

from contracts import events as ev
from contracts.status import QUEUED, status_after
from projections.instance_status import gone, instance_doc_key, is_stale, query_columns
from projections.timestamps import iso

VIEW_NAME = "onfido_runs"
ROW_FIELD: str | None = None  # no list that grows with the steps
NO_APPLICANT = "00000000-0000-0000-0000-000000000000"
OUTCOMES = frozenset({"approved", "declined", "review"})

FIELDS = (
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
)
# Seed 001's required fields; every other one is optional and absent when it has no value.
REQUIRED = frozenset({"applicant_id", "workflow_id", "id"})


def onfido_status(domain_status: str, open_step_type: str | None, outcome: str | None) -> str:
    """The Onfido vocabulary for a domain status."""
    if domain_status == "complete":
        if outcome is None:
            return "approved"
        return outcome if outcome in OUTCOMES else "review"
    if domain_status == "errored":
        return "error"
    if domain_status == "terminated":
        return "abandoned"
    if domain_status == "waiting" and open_step_type == "waitForEvent":
        return "awaiting_input"
    return "processing"


def key_of(event: ev.LifecycleEvent) -> str | None:
    return instance_doc_key(event)


def _fresh_run() -> dict[str, Any]:
    return {
        "domain_status": QUEUED,
        "status": "processing",
        "open_step_type": None,
        "outcome": None,
        "output": None,
        "reasons": None,
        "error": None,
    }


def new_document(event: ev.InstanceCreated) -> dict[str, Any]:
    meta = event.metadata
    at = iso(event.occurred_at)
    return {
        **query_columns(event),
        "applicant_id": meta.get("applicant_id") or NO_APPLICANT,
        "workflow_id": event.workflow_id,
        "workflow_version_id": event.workflow_version,
        "tags": list(meta.get("tags") or []),
        "customer_user_id": meta.get("customer_user_id"),
        "link": meta.get("link"),
        "created_at": at,
        "updated_at": at,
        **_fresh_run(),
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
    doc = {**doc, "version": event.version, "updated_at": iso(event.occurred_at)}
    doc["domain_status"] = status_after(doc["domain_status"], event)
    match event:
        case ev.InstanceRestarted():
            doc.update(_fresh_run())
        case ev.StepBegan():
            doc["open_step_type"] = event.step_type
        case ev.StepEnded() | ev.EventDelivered():
            doc["open_step_type"] = None
        case ev.RunCompleted():
            doc.update(outcome=event.outcome, output=_object(event.output))
            doc["reasons"] = list(event.reasons)
        case ev.RunFailed():
            doc["error"] = {"type": event.error.name, "message": event.error.message}
    doc["status"] = onfido_status(doc["domain_status"], doc["open_step_type"], doc["outcome"])
    return doc


def _object(output: Any) -> dict[str, Any] | None:
    if output is None or isinstance(output, dict):
        return output
    return {"value": output}


def render(doc: dict[str, Any], *, dashboard_base: str, sdk_token: str) -> dict[str, Any]:
    """The seed's `WorkflowRun`: exactly its fifteen fields."""
    computed = {
        "dashboard_url": f"{dashboard_base.rstrip('/')}/workflow_runs/{doc['id']}",
        "sdk_token": sdk_token,
        "error": doc["error"] if doc["status"] == "error" else None,
    }
    rendered = {name: computed[name] if name in computed else doc[name] for name in FIELDS}
    return {k: v for k, v in rendered.items() if v is not None or k in REQUIRED}
