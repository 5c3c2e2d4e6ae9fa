"""The Cloudflare instance read model (seed 002): one document per instance.

`apply` is pure: the current document (or None) and one lifecycle event in, the next document
out. The same function serves the live projection and anyone rebuilding from the events topic.

Decisions:
- The document keeps every output whole (the step route serves it "without truncation");
  `get_response` shows outputs as seed 002 types them: the instance's `output` (string |
  number) is the JSON text of the run's output, `"null"` until the run completes; a step's
  (string | null) and a wait's (optional string) are the JSON text of what the step returned
  or the event carried, cut to `OUTPUT_PREVIEW_CHARS`, and absent (wait) or null (step) until
  there is one; a sensitive step shows `[REDACTED]`.
- A sleep's and a wait's `end` (a string in seed 002, never null) is the planned end while
  pending, start + `sleep_ms` or + the wait's timeout, and the actual end once done.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from contracts import events as ev
from contracts.durations import to_milliseconds
from contracts.status import QUEUED, status_after
from projections.instance_status import gone, instance_doc_key, is_stale
from projections.row_window import cut
from projections.timestamps import iso
from services.domain.instance import DEFAULT_WAIT_TIMEOUT

VIEW_NAME = "cloudflare_instances"
# Stored one row per step beside the document (projections/row_window.py): `apply` sees the
# steps from the last stored one on, and never needs the others.
ROW_FIELD: str | None = "steps"
REDACTED = "[REDACTED]"
# A step's output in the get response is a preview: up to MAX_JSON_BYTES per step would make
# one instance's answer unbounded. The step route serves the whole value.
OUTPUT_PREVIEW_CHARS = 1024
ELLIPSIS = "…"


def _ts(value: datetime) -> str:
    return iso(value)


def _error(value: ev.ErrorData | None) -> dict[str, str] | None:
    return None if value is None else {"name": value.name, "message": value.message}


def new_document(event: ev.InstanceCreated) -> dict[str, Any]:
    at = _ts(event.occurred_at)
    return {
        "id": event.instance_id,
        "global_id": event.global_id,
        "account_id": event.account_id,
        "workflow_name": event.workflow_name,
        "workflow_id": event.workflow_id,
        "version_id": event.version_id,
        "trigger_source": event.trigger_source,
        "schedule": event.schedule,
        "retention": event.retention,
        "timeout": event.timeout,
        "metadata": event.metadata,
        "params": event.params,
        "created_on": at,
        "modified_on": at,
        "version": event.version,
        **_fresh_run(at, run=1),
    }


def _fresh_run(queued_at: str, run: int) -> dict[str, Any]:
    return {
        "run": run,
        "status": QUEUED,
        "queued": queued_at,
        "start": None,
        "end": None,
        "output": None,
        "error": None,
        "success": None,
        "outcome": None,
        "reasons": [],
        "rollback": None,
        "steps": [],
        "pending_events": {},
    }


def key_of(event: ev.LifecycleEvent) -> str | None:
    """One document per instance, named by its global id; workflow events are not ours."""
    return instance_doc_key(event)


def apply(doc: dict[str, Any] | None, event: ev.LifecycleEvent) -> dict[str, Any] | None:
    """The next document; unchanged for events that are not about an instance or that it has
    already folded (a redelivery)."""
    if is_stale(doc, event):
        return doc
    if isinstance(event, ev.InstanceCreated):
        return new_document(event)
    if isinstance(event, ev.InstanceDeleted):
        return gone(event)
    if doc is None or not isinstance(event, ev.InstanceEvent):
        return doc
    at = _ts(event.occurred_at)
    # The status comes from the one table; the appliers below keep the rest of the document.
    status = status_after(doc["status"], event)
    doc = {**doc, "modified_on": at, "version": event.version, "steps": list(doc["steps"])}
    _APPLIERS.get(type(event), _ignore)(doc, event, at)
    doc["status"] = status
    return doc


def _ignore(doc: dict[str, Any], event: Any, at: str) -> None:
    return None


def _last_step(doc: dict[str, Any]) -> dict[str, Any]:
    step = dict(doc["steps"][-1])
    doc["steps"][-1] = step
    return step


def _sensitive(step: dict[str, Any]) -> bool:
    return (step.get("config") or {}).get("sensitive") == "output"


def _run_started(doc: dict[str, Any], e: ev.RunStarted, at: str) -> None:
    doc["start"] = at


def _step_began(doc: dict[str, Any], e: ev.StepBegan, at: str) -> None:
    step: dict[str, Any] = {"type": e.step_type, "name": e.name, "count": e.count, "start": at}
    if e.step_type == "step":
        step.update(end=None, success=None, output=None, config=e.config, attempts=[])
    else:
        step.update(end=_planned_end(e), finished=False, error=None)
        if e.step_type == "waitForEvent":
            step["event_type"] = e.event_type
    doc["steps"].append(step)


def _planned_end(e: ev.StepBegan) -> str:
    """When a sleep or wait will end unless something ends it first: its start (the event's
    time) plus its length. An event without a readable length plans no wait at all."""
    if e.step_type == "sleep":
        length: int | str | None = e.sleep_ms
    else:
        length = DEFAULT_WAIT_TIMEOUT if e.wait_timeout is None else e.wait_timeout
    try:
        ms = 0 if length is None else to_milliseconds(length)
        return iso(e.occurred_at + timedelta(milliseconds=ms))
    except ValueError:
        return iso(e.occurred_at)
    except OverflowError:  # past year 9999: the end of time will do
        return iso(datetime.max.replace(tzinfo=UTC))


def _attempt_began(doc: dict[str, Any], e: ev.AttemptBegan, at: str) -> None:
    step = _last_step(doc)
    step["attempts"] = [
        *step["attempts"],
        {"start": at, "end": None, "success": None, "error": None},
    ]


def _attempt_ended(doc: dict[str, Any], e: ev.AttemptEnded, at: str) -> None:
    step = _last_step(doc)
    attempts = list(step["attempts"])
    attempts[-1] = {**attempts[-1], "end": at, "success": e.success, "error": _error(e.error)}
    step["attempts"] = attempts


def _step_ended(doc: dict[str, Any], e: ev.StepEnded, at: str) -> None:
    step = _last_step(doc)
    step["end"] = at
    if e.step_type == "step":
        step["success"] = e.success
        step["output"] = REDACTED if _sensitive(step) and e.output is not None else e.output
        if e.error is not None:
            step["error"] = _error(e.error)
    else:
        step["finished"] = True
        step["error"] = _error(e.error)


def _event_received(doc: dict[str, Any], e: ev.EventReceived, at: str) -> None:
    pending = dict(doc["pending_events"])
    pending[e.event_type] = [*pending.get(e.event_type, []), e.payload]
    doc["pending_events"] = pending


def _event_delivered(doc: dict[str, Any], e: ev.EventDelivered, at: str) -> None:
    pending = dict(doc["pending_events"])
    queue = pending.get(e.event_type or "", [])[1:]
    if queue:
        pending[e.event_type or ""] = queue
    else:
        pending.pop(e.event_type or "", None)
    doc["pending_events"] = pending
    step = _last_step(doc)
    step.update(end=at, finished=True, output=e.payload)


def _instance_terminated(doc: dict[str, Any], e: ev.InstanceTerminated, at: str) -> None:
    doc["steps"].append({"type": "termination", "trigger": {"source": "api"}})
    if not e.rollback:
        doc["end"] = at
        doc["success"] = False


def _rollback_ended(doc: dict[str, Any], e: ev.RollbackEnded, at: str) -> None:
    doc.update(end=at, success=False)
    doc["rollback"] = {"outcome": e.outcome, "error": _error(e.error)}


def _instance_restarted(doc: dict[str, Any], e: ev.InstanceRestarted, at: str) -> None:
    # Terminations only ever end a run's list and the kept steps are steps of the run, so the
    # kept ones are the first `kept_steps` of the list: a cut, wherever the window starts.
    window = [s for s in doc["steps"] if s["type"] != "termination"]
    doc.update(_fresh_run(at, run=e.run))
    doc["steps"] = window
    cut(doc, "steps", e.kept_steps)


def _run_completed(doc: dict[str, Any], e: ev.RunCompleted, at: str) -> None:
    doc.update(end=at, success=True, output=e.output, outcome=e.outcome)
    doc["reasons"] = e.reasons


def _run_failed(doc: dict[str, Any], e: ev.RunFailed, at: str) -> None:
    doc.update(end=at, success=False, error=_error(e.error))
    doc["timed_out"] = e.timed_out


# What each event does to the document besides its status (PauseRequested, PauseAcknowledged,
# InstancePaused, InstanceResumed and BackoffEnded change nothing else).
_APPLIERS: dict[type, Any] = {
    ev.RunStarted: _run_started,
    ev.StepBegan: _step_began,
    ev.AttemptBegan: _attempt_began,
    ev.AttemptEnded: _attempt_ended,
    ev.StepEnded: _step_ended,
    ev.EventReceived: _event_received,
    ev.EventDelivered: _event_delivered,
    ev.InstanceTerminated: _instance_terminated,
    ev.RollbackEnded: _rollback_ended,
    ev.InstanceRestarted: _instance_restarted,
    ev.RunCompleted: _run_completed,
    ev.RunFailed: _run_failed,
}


def json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def preview(value: Any) -> str:
    """The JSON text of `value`, cut to OUTPUT_PREVIEW_CHARS (the last one then `…`)."""
    text = json_text(value)
    if len(text) <= OUTPUT_PREVIEW_CHARS:
        return text
    return text[: OUTPUT_PREVIEW_CHARS - len(ELLIPSIS)] + ELLIPSIS


def get_response(doc: dict[str, Any]) -> dict[str, Any]:
    """InstanceGetResponse, exactly the fields and types of seed 002."""
    steps = [_public_step(s) for s in doc["steps"]]
    response: dict[str, Any] = {
        "end": doc["end"],
        "error": doc["error"],
        # Not cut: no Cloudflare route serves the run's output otherwise.
        "output": json_text(doc["output"]),
        "params": doc["params"],
        "queued": doc["queued"],
        "rollback": doc["rollback"],
        "start": doc["start"],
        "status": doc["status"],
        "step_count": len(steps),
        "steps": steps,
        "success": doc["success"],
        "trigger": {"source": doc["trigger_source"]},
        "versionId": doc["version_id"],
    }
    if doc.get("schedule"):
        response["schedule"] = {
            "cron": doc["schedule"].get("cron"),
            "scheduledTime": doc["schedule"].get("scheduled_time"),
        }
    return response


# Seed 002's step shapes; a step's error lives in its attempts (kept in the document for the
# step route), the count and event type only tell repeated names and waits apart.
STEP_FIELDS = {
    "step": ("attempts", "config", "end", "name", "output", "start", "success", "type"),
    "sleep": ("end", "error", "finished", "name", "start", "type"),
    "waitForEvent": ("end", "error", "finished", "name", "output", "start", "type"),
    "termination": ("trigger", "type"),
}


def _public_step(step: dict[str, Any]) -> dict[str, Any]:
    public = {k: step[k] for k in STEP_FIELDS[step["type"]] if k in step}
    if step["type"] == "step":
        public["output"] = _step_output(step)
        public["config"] = _public_config(step.get("config"))
    elif step["type"] != "termination":
        # A document folded before planned ends were kept has none: its start will do
        # until `flowledger projections rebuild` refolds it.
        public["end"] = public.get("end") or public["start"]
        if "output" in public:
            public["output"] = preview(public["output"])
    return public


def _step_output(step: dict[str, Any]) -> str | None:
    # Only a step that succeeded returned something; `null` would be a real return value.
    if not step.get("success"):
        return None
    return REDACTED if _sensitive(step) else preview(step.get("output"))


def _public_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    # `sensitive` is optional in seed 002, never null: an unset one is left out.
    if config is None or config.get("sensitive") is not None:
        return config
    return {k: v for k, v in config.items() if k != "sensitive"}


def list_item(doc: dict[str, Any]) -> dict[str, Any]:
    """InstanceListResponse / InstanceCreateResponse fields."""
    return {
        "id": doc["id"],
        "created_on": doc["created_on"],
        "ended_on": doc["end"],
        "modified_on": doc["modified_on"],
        "started_on": doc["start"],
        "status": doc["status"],
        "version_id": doc["version_id"],
        "workflow_id": doc["workflow_id"],
        "trigger_source": doc["trigger_source"],
    }


def step_response(
    doc: dict[str, Any], name: str, step_type: str | None, attempt: int | None
) -> dict[str, Any] | None:
    """InstanceStepResponse for the latest step called `name` (of `step_type`, if given):
    the whole output, `[REDACTED]` for sensitive steps; with `attempt`, that attempt's outcome."""
    matches = [
        s
        for s in doc["steps"]
        if s.get("name") == name and (step_type is None or s["type"] == step_type)
    ]
    if not matches:
        return None
    step = matches[-1]
    if step["type"] != "step":
        done = step.get("finished", False)
        status = ("errored" if step.get("error") else "complete") if done else "waiting"
        return {"error": step.get("error"), "status": status, "output": step.get("output")}
    if attempt is not None:
        attempts = step.get("attempts", [])
        if attempt > len(attempts):
            return None
        chosen = attempts[attempt - 1]
        status = _outcome(chosen["success"])
        output = step.get("output") if chosen["success"] and attempt == len(attempts) else None
        return {"error": chosen.get("error"), "status": status, "output": output}
    return {
        "error": step.get("error"),
        "status": _outcome(step.get("success")),
        "output": step.get("output"),
    }


def _outcome(success: bool | None) -> str:
    return "running" if success is None else "complete" if success else "errored"
