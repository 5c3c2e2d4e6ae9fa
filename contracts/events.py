"""Lifecycle events published on `{prefix}.events`, one per domain event, keyed by instance key.

Every event carries `event_id` (stable across redeliveries: dedupe on it), a gap-free 1-based
`version` per instance (or per workflow, for workflow events), `occurred_at` (UTC) and the
`command_id` that caused it. A subscriber can rebuild an instance from these events alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import Struct


class ErrorData(Struct, kw_only=True):
    name: str
    message: str


class LifecycleEvent(Struct, tag_field="type", kw_only=True, forbid_unknown_fields=False):
    event_id: str
    account_id: str
    workflow_name: str
    version: int
    occurred_at: datetime
    command_id: str


class InstanceEvent(LifecycleEvent, kw_only=True):
    instance_id: str


# --- workflows -------------------------------------------------------------------------


class WorkflowRegistered(LifecycleEvent, tag="WorkflowRegistered", kw_only=True):
    workflow_id: str
    version_id: str
    class_name: str | None = None
    script_name: str | None = None
    schedules: list[str] = []
    retention: dict[str, Any] | None = None


class WorkflowVersionDeployed(LifecycleEvent, tag="WorkflowVersionDeployed", kw_only=True):
    workflow_id: str
    version_id: str
    class_name: str | None = None
    script_name: str | None = None
    schedules: list[str] = []
    retention: dict[str, Any] | None = None


# --- instances -------------------------------------------------------------------------


class InstanceCreated(InstanceEvent, tag="InstanceCreated", kw_only=True):
    global_id: str
    workflow_id: str
    version_id: str
    # The ordinal (1-based) of `version_id` among the workflow's versions at create time.
    workflow_version: int = 1
    params: Any = None
    trigger_source: str = "api"
    schedule: dict[str, Any] | None = None
    retention: dict[str, Any] | None = None
    timeout: int | str | None = None
    metadata: dict[str, Any] = {}


class RunStarted(InstanceEvent, tag="RunStarted", kw_only=True):
    pass


class StepBegan(InstanceEvent, tag="StepBegan", kw_only=True):
    name: str
    step_type: str
    count: int
    config: dict[str, Any] | None = None
    sleep_ms: int | None = None
    event_type: str | None = None
    wait_timeout: int | str | None = None


class AttemptBegan(InstanceEvent, tag="AttemptBegan", kw_only=True):
    name: str
    attempt: int


class AttemptEnded(InstanceEvent, tag="AttemptEnded", kw_only=True):
    name: str
    attempt: int
    success: bool
    output: Any = None
    error: ErrorData | None = None
    retry_delay_ms: int | None = None


class StepEnded(InstanceEvent, tag="StepEnded", kw_only=True):
    name: str
    step_type: str
    success: bool
    output: Any = None
    error: ErrorData | None = None


class BackoffEnded(InstanceEvent, tag="BackoffEnded", kw_only=True):
    name: str


class PauseRequested(InstanceEvent, tag="PauseRequested", kw_only=True):
    pass


class PauseAcknowledged(InstanceEvent, tag="PauseAcknowledged", kw_only=True):
    pass


class InstancePaused(InstanceEvent, tag="InstancePaused", kw_only=True):
    resume_to: str


class InstanceResumed(InstanceEvent, tag="InstanceResumed", kw_only=True):
    status: str


class InstanceTerminated(InstanceEvent, tag="InstanceTerminated", kw_only=True):
    rollback: bool


class RollbackEnded(InstanceEvent, tag="RollbackEnded", kw_only=True):
    outcome: str
    error: ErrorData | None = None


class InstanceRestarted(InstanceEvent, tag="InstanceRestarted", kw_only=True):
    run: int
    kept_steps: int
    from_step: dict[str, Any] | None = None


class InstanceDeleted(InstanceEvent, tag="InstanceDeleted", kw_only=True):
    """The instance is gone: read models drop its document; no command applies to it again."""

    reason: str = "api"


class EventReceived(InstanceEvent, tag="EventReceived", kw_only=True):
    event_type: str
    payload: Any = None


class EventDelivered(InstanceEvent, tag="EventDelivered", kw_only=True):
    event_type: str | None
    payload: Any = None
    from_buffer: bool = True


class RunCompleted(InstanceEvent, tag="RunCompleted", kw_only=True):
    output: Any = None
    outcome: str | None = None
    reasons: list[str] = []


class RunFailed(InstanceEvent, tag="RunFailed", kw_only=True):
    error: ErrorData
    timed_out: bool = False


WorkflowEventUnion = WorkflowRegistered | WorkflowVersionDeployed

InstanceEventUnion = (
    InstanceCreated
    | RunStarted
    | StepBegan
    | AttemptBegan
    | AttemptEnded
    | StepEnded
    | BackoffEnded
    | PauseRequested
    | PauseAcknowledged
    | InstancePaused
    | InstanceResumed
    | InstanceTerminated
    | RollbackEnded
    | InstanceRestarted
    | InstanceDeleted
    | EventReceived
    | EventDelivered
    | RunCompleted
    | RunFailed
)

AnyEvent = WorkflowEventUnion | InstanceEventUnion

EVENT_TYPES: tuple[type[LifecycleEvent], ...] = AnyEvent.__args__  # type: ignore[attr-defined]
