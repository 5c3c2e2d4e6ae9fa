"""The scheduler's timers: what is due when, folded from an instance's lifecycle events.

`apply` is a pure fold like the read models': the instance's timer document (or None) and one
lifecycle event in, the next document out (None once nothing is pending). The scheduler role
stores the documents with the time of their earliest pending timer, and fires each timer as
the command an engine would have sent.

Each timer is armed by one event and names the command it fires, with a command id derived
from the instance, the kind and the version of the arming event: a timer fired twice (a
crash between publishing and recording it, two schedulers in a rolling restart) is answered
`duplicate`, so its effect is applied once. A timer whose condition no longer holds is
cancelled by the event that ends it; one that fires anyway is answered by the aggregate as a
no-op or a rejection.

Kinds and what arms, fires and cancels them:
- `sleep`:    StepBegan (sleep, `sleep_ms`)        -> EndSleep      ; StepEnded
- `backoff`:  AttemptEnded with `retry_delay_ms`   -> EndSleep      ; BackoffEnded, AttemptBegan
- `wait`:     StepBegan (waitForEvent, timeout)    -> TimeOutWait   ; EventDelivered, StepEnded
- `attempt`:  AttemptBegan (the step's timeout)    -> TimeOutAttempt; AttemptEnded, StepEnded
- `instance`: InstanceCreated (`timeout`)          -> TimeOutInstance; the run's end
- `retention`: the run's end (RunCompleted: the instance's `success_retention`; RunFailed,
  InstanceTerminated without rollback, RollbackEnded: its `error_retention`, both from
  InstanceCreated) -> DeleteInstance {reason: "retention"}; a restart, the deletion
- `cron <expression>`: WorkflowRegistered / WorkflowVersionDeployed with `schedules` -> a
  CreateInstance per tick; a later registration without the expression removes it.
A cron timer is never done: once fired it is armed again for the next tick after the moment
it fired. A tick missed while no scheduler ran is created once, for the latest missed tick.
Its instance id and command id derive from the workflow, the expression and the tick.
A restart cancels the step timers and arms the instance timeout again from the restart; the
run's end (complete, errored, terminated) cancels everything, then arms the retention timer
of the instance's retention (none: it is kept forever). InstanceDeleted drops the document.
While the instance is paused
its timers keep their due times but none fires; one that fell due meanwhile fires on resume.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from croniter import CroniterError, croniter

from contracts import events as ev
from contracts.durations import to_milliseconds
from contracts.keys import instance_key, workflow_key

STEP_TIMERS = ("sleep", "backoff", "wait", "attempt")
# Names command ids, so that the same timer fired twice carries the same id.
_COMMAND_IDS = uuid.UUID("6f3f5a56-3b0e-4d8e-9a57-5c1f0c2d7e11")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def key_of(event: ev.LifecycleEvent) -> str | None:
    if isinstance(event, ev.InstanceEvent):
        return instance_key(event.account_id, event.workflow_name, event.instance_id)
    if isinstance(event, ev.WorkflowRegistered | ev.WorkflowVersionDeployed):
        return workflow_key(event.account_id, event.workflow_name)
    return None


def _pending(timer: dict[str, Any]) -> bool:
    """Neither fired nor parked (a timer whose command could not be built, or a schedule
    with no next tick: it waits for an event that re-arms or cancels it)."""
    return not timer.get("fired") and "parked" not in timer


def due_ms(doc: dict[str, Any]) -> int | None:
    """When the earliest timer of the document is due; None while paused or none pending."""
    if doc["held"]:
        return None
    pending = [t["due_ms"] for t in doc["timers"].values() if _pending(t)]
    return min(pending, default=None)


def due_kinds(doc: dict[str, Any], now_ms: int) -> list[str]:
    """The timers of the document due at `now_ms` and not yet fired, in order."""
    if doc["held"]:
        return []
    return [
        kind
        for kind, timer in sorted(doc["timers"].items())
        if _pending(timer) and timer["due_ms"] <= now_ms
    ]


def command_of(doc: dict[str, Any], kind: str, now_ms: int) -> tuple[str, dict[str, Any]]:
    """(kind without its cron expression, command) of the timer `kind` firing at `now_ms`."""
    return kind.partition(" ")[0], _command_of(doc, doc["timers"][kind], now_ms)


def due_commands(doc: dict[str, Any], now_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """(kind, command) of every timer of the document due at `now_ms` and not yet fired."""
    return [command_of(doc, kind, now_ms) for kind in due_kinds(doc, now_ms)]


def mark_fired(
    doc: dict[str, Any], now_ms: int, parked: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The document once its timers due at `now_ms` have fired: instance timers are marked
    fired (the event that follows cancels them), cron timers armed for their next tick; the
    timers in `parked` (kind -> reason) are parked instead."""
    parked = parked or {}
    timers = {}
    for kind, timer in doc["timers"].items():
        if kind in parked:
            timers[kind] = {**timer, "parked": parked[kind]}
        elif not _pending(timer) or timer["due_ms"] > now_ms:
            timers[kind] = timer
        elif "cron" in timer:
            timers[kind] = _cron_timer(timer["cron"], now_ms)
        else:
            timers[kind] = {**timer, "fired": True}
    return {**doc, "timers": timers}


def parked_timers(doc: dict[str, Any]) -> dict[str, str]:
    """kind -> reason of the document's parked timers."""
    return {k: t["parked"] for k, t in doc["timers"].items() if "parked" in t}


def _command_of(doc: dict[str, Any], timer: dict[str, Any], now_ms: int) -> dict[str, Any]:
    if "cron" not in timer:
        return timer["command"]  # type: ignore[no-any-return]
    return _cron_instance(doc, timer["cron"], _latest_tick_ms(timer["cron"], now_ms))


def apply(doc: dict[str, Any] | None, event: ev.LifecycleEvent) -> dict[str, Any] | None:
    if isinstance(event, ev.WorkflowRegistered | ev.WorkflowVersionDeployed):
        return _scheduled(doc, event)
    if not isinstance(event, ev.InstanceEvent):
        return doc
    if doc is not None and event.version <= doc["version"]:
        return doc  # a redelivery: applied once
    if isinstance(event, ev.InstanceDeleted):
        return None  # nothing is pending for an instance that is gone
    # No document: nothing was pending for the instance (documents are dropped when idle).
    doc = _blank(event) if doc is None else {**doc, "timers": dict(doc["timers"])}
    doc["version"] = event.version
    _fold(doc, event)
    return doc if _worth_keeping(doc) else None


def _worth_keeping(doc: dict[str, Any]) -> bool:
    """Pending timers, or what a later event needs to arm one."""
    return bool(
        doc["timers"]
        or doc["held"]
        or doc["instance_timeout_ms"] is not None
        or doc["step_timeout_ms"] is not None
        or doc.get("retention_ms")
    )


def _fold(doc: dict[str, Any], event: ev.InstanceEvent) -> None:
    timers: dict[str, Any] = doc["timers"]
    match event:
        case ev.InstanceCreated(timeout=timeout):
            doc["instance_timeout_ms"] = None if timeout is None else to_milliseconds(timeout)
            retention = _retention_ms(event.retention)
            if retention:
                doc["retention_ms"] = retention
            _arm_instance_timeout(doc, event)
        case ev.StepBegan(step_type="sleep", sleep_ms=int() as sleep_ms):
            _arm(doc, "sleep", event, sleep_ms, {"type": "EndSleep", "name": event.name})
        case ev.StepBegan(step_type="waitForEvent", wait_timeout=timeout) if timeout is not None:
            command = {"type": "TimeOutWait", "name": event.name}
            _arm(doc, "wait", event, to_milliseconds(timeout), command)
        case ev.StepBegan(step_type="step", config=config):
            timeout = (config or {}).get("timeout")
            doc["step_timeout_ms"] = None if timeout is None else to_milliseconds(timeout)
        case ev.AttemptBegan():
            timers.pop("backoff", None)
            if doc.get("step_timeout_ms") is not None:
                timeout_ms = doc["step_timeout_ms"]
                fires = {"type": "TimeOutAttempt", "name": event.name, "attempt": event.attempt}
                _arm(doc, "attempt", event, timeout_ms, fires)
        case ev.AttemptEnded(retry_delay_ms=delay):
            timers.pop("attempt", None)
            if delay is not None:
                _arm(doc, "backoff", event, delay, {"type": "EndSleep", "name": event.name})
        case ev.BackoffEnded():
            timers.pop("backoff", None)
        case ev.StepEnded() | ev.EventDelivered():  # a delivered event ends its wait
            for kind in STEP_TIMERS:
                timers.pop(kind, None)
            doc["step_timeout_ms"] = None
        case ev.InstancePaused():
            doc["held"] = True
        case ev.InstanceResumed():
            doc["held"] = False
        case ev.InstanceRestarted():
            timers.clear()
            doc["held"] = False
            doc["step_timeout_ms"] = None
            _arm_instance_timeout(doc, event)
        case ev.InstanceTerminated() | ev.RunCompleted() | ev.RunFailed() | ev.RollbackEnded():
            timers.clear()
            doc.update(held=False, instance_timeout_ms=None, step_timeout_ms=None)
            _arm_retention(doc, event)


def _blank(event: ev.InstanceEvent) -> dict[str, Any]:
    return {
        "account_id": event.account_id,
        "workflow_name": event.workflow_name,
        "instance_id": event.instance_id,
        "version": 0,
        "held": False,
        "instance_timeout_ms": None,
        "step_timeout_ms": None,
        "timers": {},
    }


def _retention_ms(retention: dict[str, Any] | None) -> dict[str, int]:
    """The instance's retention in milliseconds, by outcome ("success", "error"); a value
    that is not a duration (validated on create, so never) keeps the instance forever."""
    found = {}
    for outcome in ("success", "error"):
        value = (retention or {}).get(f"{outcome}_retention")
        try:
            if value is not None:
                found[outcome] = to_milliseconds(value)
        except ValueError:
            continue
    return found


def _arm_retention(doc: dict[str, Any], event: ev.InstanceEvent) -> None:
    """A finished instance is deleted once its retention passed: `success_retention` after
    it completed, `error_retention` after it errored or was terminated (a rollback: once it
    ended). Not while a terminate's rollback is under way: the instance is not finished."""
    if isinstance(event, ev.InstanceTerminated) and event.rollback:
        return
    outcome = "success" if isinstance(event, ev.RunCompleted) else "error"
    after_ms = (doc.get("retention_ms") or {}).get(outcome)
    if after_ms is not None:
        _arm(doc, "retention", event, after_ms, {"type": "DeleteInstance", "reason": "retention"})


def _arm_instance_timeout(doc: dict[str, Any], event: ev.InstanceEvent) -> None:
    if doc["instance_timeout_ms"]:
        _arm(doc, "instance", event, doc["instance_timeout_ms"], {"type": "TimeOutInstance"})


def _arm(
    doc: dict[str, Any],
    kind: str,
    event: ev.InstanceEvent,
    after_ms: int,
    command: Mapping[str, object],
) -> None:
    key = instance_key(event.account_id, event.workflow_name, event.instance_id)
    doc["timers"][kind] = {
        "due_ms": epoch_ms(event.occurred_at) + after_ms,
        "armed_by": event.version,
        "command": {
            **command,
            "command_id": str(uuid.uuid5(_COMMAND_IDS, f"{key}:{kind}:{event.version}")),
            "account_id": event.account_id,
            "workflow_name": event.workflow_name,
            "instance_id": event.instance_id,
        },
    }


# --- cron schedules --------------------------------------------------------------------------


def _scheduled(
    doc: dict[str, Any] | None, event: ev.WorkflowRegistered | ev.WorkflowVersionDeployed
) -> dict[str, Any] | None:
    """The workflow's cron timers: those of expressions it keeps are left as they are (a
    redeployment does not move a tick), new ones armed for their first tick, others dropped."""
    if doc is not None and event.version <= doc["version"]:
        return doc
    before = {} if doc is None else doc["timers"]
    at_ms = epoch_ms(event.occurred_at)
    timers = {
        f"cron {cron}": before.get(f"cron {cron}") or _cron_timer(cron, at_ms)
        for cron in event.schedules
    }
    if not timers:
        return None
    return {
        "account_id": event.account_id,
        "workflow_name": event.workflow_name,
        "version": event.version,
        "held": False,
        "timers": timers,
    }


def _cron_timer(cron: str, after_ms: int) -> dict[str, Any]:
    """The timer of `cron` armed for its next tick after `after_ms`; parked when there is
    none (the commands role refuses such expressions, but an event stored before it did, or
    a croniter that disagrees, must not stop the fold: "0 0 31 2 *" raises)."""
    try:
        start = datetime.fromtimestamp(after_ms / 1000, UTC)
        return {"cron": cron, "due_ms": epoch_ms(croniter(cron, start).get_next(datetime))}
    except (CroniterError, ValueError, KeyError, OverflowError) as error:
        reason = f"{type(error).__name__}: no next tick of {cron!r}: {error}"
        return {"cron": cron, "due_ms": after_ms, "parked": reason[:300]}


def _latest_tick_ms(cron: str, at_ms: int) -> int:
    """The latest tick at or before `at_ms`."""
    start = datetime.fromtimestamp((at_ms + 1) / 1000, UTC)
    return epoch_ms(croniter(cron, start).get_prev(datetime))


def _cron_instance(doc: dict[str, Any], cron: str, tick_ms: int) -> dict[str, Any]:
    key = workflow_key(doc["account_id"], doc["workflow_name"])
    tick = datetime.fromtimestamp(tick_ms / 1000, UTC)
    digest = hashlib.sha256(cron.encode()).hexdigest()[:8]
    return {
        "type": "CreateInstance",
        "command_id": str(uuid.uuid5(_COMMAND_IDS, f"{key}:cron {cron}:{tick_ms}")),
        "account_id": doc["account_id"],
        "workflow_name": doc["workflow_name"],
        "instance_id": f"cron-{tick:%Y%m%dT%H%M}-{digest}",
        "trigger_source": "cron",
        "schedule": {"cron": cron, "scheduled_time": tick_ms},
        # A tick is an event in the agent platform's vocabulary (no user asked for the run).
        "triggered_by": "event",
    }
