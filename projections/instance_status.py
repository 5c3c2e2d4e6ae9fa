"""What every per-instance read model needs: its document key and the domain status.

The domain status (Cloudflare's nine) is folded from lifecycle events with the same rules as
the aggregate (services/domain/instance.py); each view then maps it into its own vocabulary.
"""

from __future__ import annotations

from typing import Any, Final

from contracts import events as ev
from contracts.keys import instance_global_id
from projections.timestamps import iso

TERMINAL: Final = frozenset({"complete", "errored", "terminated"})


def instance_doc_key(event: ev.LifecycleEvent) -> str | None:
    """The instance's global id for instance events; None for workflow events."""
    if not isinstance(event, ev.InstanceEvent):
        return None
    return str(instance_global_id(event.account_id, event.workflow_name, event.instance_id))


def query_columns(event: ev.InstanceCreated) -> dict[str, Any]:
    """The fields every instance document carries for the view's key, queries and dedupe."""
    return {
        "id": event.global_id,
        "account_id": event.account_id,
        "workflow_name": event.workflow_name,
        "created_on": iso(event.occurred_at),
        "version": event.version,
    }


def is_stale(doc: dict[str, Any] | None, event: ev.LifecycleEvent) -> bool:
    """True for an event the document has already seen (a redelivery): apply it once only."""
    return doc is not None and bool(event.version <= doc["version"])


def next_status(status: str, event: ev.InstanceEvent) -> str:
    """The domain status after `event`, given the status before it."""
    match event:
        case ev.InstanceCreated() | ev.InstanceRestarted():
            return "queued"
        case ev.RunStarted() | ev.BackoffEnded() | ev.EventDelivered():
            return "running"
        case ev.StepBegan(step_type="sleep" | "waitForEvent"):
            return "waiting"
        case ev.AttemptEnded(retry_delay_ms=int()) if status == "running":
            return "waiting"
        case ev.StepEnded() if status == "waiting":
            return "running"
        case ev.PauseRequested():
            return "waitingForPause"
        case ev.PauseAcknowledged() | ev.InstancePaused():
            return "paused"
        case ev.InstanceResumed():
            return event.status
        case ev.InstanceTerminated():
            return "rollingBack" if event.rollback else "terminated"
        case ev.RollbackEnded():
            return "terminated"
        case ev.RunCompleted():
            return "complete"
        case ev.RunFailed():
            return "errored"
    return status
