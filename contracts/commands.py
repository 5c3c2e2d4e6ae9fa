"""The commands accepted on `{prefix}.commands`: one JSON object each, tagged by `type`.

Producers in any language write these; `schemas/commands/*.json` is generated from this file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from contracts.limits import (
    MAX_BATCH,
    MAX_RETRIES,
    MAX_SCHEDULES,
    MAX_TAGS,
    AccountId,
    CommandId,
    CronExpression,
    EventType,
    InstanceId,
    StepName,
    Tag,
    WorkflowName,
)

TriggerSource = Literal["unknown", "api", "binding", "event", "cron"]
StepType = Literal["step", "sleep", "waitForEvent"]
Backoff = Literal["constant", "linear", "exponential"]
Duration = Annotated[
    int | str,
    Meta(description="Milliseconds, or a duration string such as '10 seconds' or '5 minutes'."),
]


class Command(Struct, tag_field="type", kw_only=True, forbid_unknown_fields=False):
    command_id: CommandId
    account_id: AccountId
    workflow_name: WorkflowName


class InstanceCommand(Command, kw_only=True):
    instance_id: InstanceId


# --- workflows ---------------------------------------------------------------------------


class RegisterWorkflow(Command, tag="RegisterWorkflow", kw_only=True):
    """Creates the workflow, or deploys a new version of it.

    `schedules`: 5-field cron expressions in UTC; the scheduler creates one instance per tick
    (`trigger_source: "cron"`). Registering without them removes the workflow's schedules.
    """

    class_name: str | None = None
    script_name: str | None = None
    schedules: Annotated[list[CronExpression], Meta(max_length=MAX_SCHEDULES)] = msgspec.field(
        default_factory=list
    )
    # The default retention of instances created from now on (each field that a create
    # leaves unset); a registration without it removes the default. Neither: kept forever.
    retention: Retention | None = None


# --- creating instances ------------------------------------------------------------------


class Schedule(Struct, kw_only=True):
    cron: str
    scheduled_time: int = 0


class Retention(Struct, kw_only=True):
    success_retention: Duration | None = None
    error_retention: Duration | None = None


class InstanceBody(Struct, kw_only=True, forbid_unknown_fields=False):
    """One instance to create: the body of CreateInstance and each item of CreateInstances."""

    instance_id: InstanceId | None = None
    params: Any = None
    trigger_source: TriggerSource = "api"
    schedule: Schedule | None = None
    retention: Retention | None = None
    timeout: Duration | None = None
    parent_instance_id: InstanceId | None = None
    mode: Literal["sync", "async"] = "async"
    triggered_by: Literal["workflow", "agent", "swarm", "user", "event"] = "user"
    user_id: str | None = None
    workspace_id: str | None = None
    subject_id: str | None = None
    applicant_id: str | None = None
    customer_user_id: Annotated[str, Meta(max_length=256)] | None = None
    tags: Annotated[list[Tag], Meta(max_length=MAX_TAGS)] = msgspec.field(default_factory=list)
    link: dict[str, Any] | None = None


class CreateInstance(InstanceBody, tag_field="type", tag="CreateInstance", kw_only=True):
    """Creates an instance; without `instance_id` the service mints `cf_<64 hex>`.

    Ids of that shape (`cf_` + 64 lowercase hex) are reserved for minting: a client's own
    `instance_id` of that shape is rejected (`instance.id_reserved`), here and in CreateInstances.

    msgspec allows one base with fields, so the common command fields are repeated here.
    """

    command_id: CommandId
    account_id: AccountId
    workflow_name: WorkflowName


class CreateInstances(Command, tag="CreateInstances", kw_only=True):
    """Creates 1-100 instances at once; ids that already exist are skipped, not errors."""

    instances: Annotated[list[InstanceBody], Meta(min_length=1, max_length=MAX_BATCH)]


# --- changing status ---------------------------------------------------------------------


class RestartFrom(Struct, kw_only=True):
    name: StepName
    count: Annotated[int, Meta(ge=1)] = 1
    type: StepType = "step"


class ChangeStatus(InstanceCommand, tag="ChangeStatus", kw_only=True):
    action: Literal["pause", "resume", "terminate", "restart"]
    rollback: bool = False
    from_: RestartFrom | None = msgspec.field(default=None, name="from")


class DeleteInstance(InstanceCommand, tag="DeleteInstance", kw_only=True):
    """Deletes a finished (complete, errored, terminated) instance; a live one is rejected
    (`instance.running`: terminate it first). Afterwards the instance is gone: every command
    for it, a second delete included, is rejected `instance.not_found`, and its id is not
    reused (a create with it is rejected `instance.already_exists`). `reason` is "retention"
    when the scheduler expires it."""

    reason: Annotated[str, Meta(max_length=256)] = "api"


class SendEvent(InstanceCommand, tag="SendEvent", kw_only=True):
    event_type: EventType
    payload: Any = None


# --- progress, reported by the engine that runs the workflow's code ------------------------


class RetryConfig(Struct, kw_only=True):
    limit: Annotated[int, Meta(ge=0, le=MAX_RETRIES)] = 5
    delay: Duration = 10_000
    backoff: Backoff = "exponential"


class StepConfig(Struct, kw_only=True):
    retries: RetryConfig = msgspec.field(default_factory=RetryConfig)
    timeout: Duration = 600_000
    sensitive: Literal["output"] | None = None


class ErrorInfo(Struct, kw_only=True):
    name: str = "Error"
    message: str


class StartRun(InstanceCommand, tag="StartRun", kw_only=True):
    """The engine picked the instance up: queued -> running."""


class BeginStep(InstanceCommand, tag="BeginStep", kw_only=True):
    """A step, sleep or waitForEvent begins. Sleeps and waits put the instance in `waiting`.

    A sleep needs `sleep_ms` (at most 365 days); a wait's `wait_timeout` defaults to 24 hours.
    """

    name: StepName
    step_type: StepType = msgspec.field(default="step", name="step_type")
    config: StepConfig | None = None
    sleep_ms: Annotated[int, Meta(ge=0)] | None = None
    event_type: EventType | None = None
    wait_timeout: Duration | None = None


class BeginAttempt(InstanceCommand, tag="BeginAttempt", kw_only=True):
    name: StepName


class EndAttempt(InstanceCommand, tag="EndAttempt", kw_only=True):
    """An attempt of the current step ended. A failure with retries left waits for back-off,
    unless `retryable` is false (a non-retryable error): then no retry follows, and the engine
    ends the step as failed."""

    name: StepName
    success: bool
    output: Any = None
    error: ErrorInfo | None = None
    retryable: bool = True


class EndStep(InstanceCommand, tag="EndStep", kw_only=True):
    """The current step is over: it succeeded with `output`, or failed for good with `error`."""

    name: StepName
    success: bool = True
    output: Any = None
    error: ErrorInfo | None = None


class RecordStep(InstanceCommand, tag="RecordStep", kw_only=True):
    """A step that succeeded at its first attempt, reported once it has run: BeginStep,
    BeginAttempt, EndAttempt (success) and EndStep in one command, recording the same events
    (StepBegan, AttemptBegan, AttemptEnded, StepEnded) as the four would, at one moment.

    `start_run`: the instance is still `queued`; its run starts first (RunStarted), as StartRun
    would. `complete_run`: the run returns `run_output` after this step; it completes after it
    (RunCompleted), as CompleteRun would. No attempt is in flight while the step runs, so the
    scheduler cannot time it out: an engine that needs attempt timeouts uses the four commands.
    """

    name: StepName
    config: StepConfig | None = None
    output: Any = None
    start_run: bool = False
    complete_run: bool = False
    run_output: Any = None


class EndSleep(InstanceCommand, tag="EndSleep", kw_only=True):
    """A sleep or a retry back-off elapsed: waiting -> running."""

    name: StepName | None = None


class TimeOutWait(InstanceCommand, tag="TimeOutWait", kw_only=True):
    """A waitForEvent reached its timeout; the wait fails."""

    name: StepName


class TimeOutAttempt(InstanceCommand, tag="TimeOutAttempt", kw_only=True):
    """Sent by the scheduler: attempt `attempt` of step `name` outlived the step's
    `config.timeout`. It ends as failed with a timeout error and the retry policy applies; a
    no-op if that attempt is no longer in flight."""

    name: StepName
    attempt: Annotated[int, Meta(ge=1)]


class TimeOutInstance(InstanceCommand, tag="TimeOutInstance", kw_only=True):
    """Sent by the scheduler: the instance's `timeout` (from CreateInstance) passed. The run
    fails, timed out; a no-op once it has ended."""


class AcknowledgePause(InstanceCommand, tag="AcknowledgePause", kw_only=True):
    """The engine reached a step boundary while a pause was pending: waitingForPause -> paused."""


class CompleteRun(InstanceCommand, tag="CompleteRun", kw_only=True):
    output: Any = None
    outcome: Literal["approved", "declined", "review"] | None = None
    reasons: list[str] = msgspec.field(default_factory=list)


class FailRun(InstanceCommand, tag="FailRun", kw_only=True):
    error: ErrorInfo
    timed_out: bool = False


class EndRollback(InstanceCommand, tag="EndRollback", kw_only=True):
    outcome: Literal["complete", "failed"]
    error: ErrorInfo | None = None


AnyCommand = (
    RegisterWorkflow
    | CreateInstance
    | CreateInstances
    | ChangeStatus
    | DeleteInstance
    | SendEvent
    | StartRun
    | BeginStep
    | BeginAttempt
    | EndAttempt
    | EndStep
    | RecordStep
    | EndSleep
    | TimeOutWait
    | TimeOutAttempt
    | TimeOutInstance
    | AcknowledgePause
    | CompleteRun
    | FailRun
    | EndRollback
)

COMMAND_TYPES: tuple[type[Struct], ...] = AnyCommand.__args__  # type: ignore[attr-defined]
COMMAND_TYPE_NAMES = frozenset(t.__struct_config__.tag for t in COMMAND_TYPES)
