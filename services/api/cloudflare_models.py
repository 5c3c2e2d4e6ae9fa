"""Cloudflare's shapes (seed 002) as pydantic models: request bodies, results and the envelope.

They document the API in OpenAPI and check every answer on its way out.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.limits import MAX_SCHEDULES, NAME_PATTERN
from contracts.status import Status

TriggerSource = Literal["unknown", "api", "binding", "event", "cron"]
Duration = int | str

T = TypeVar("T")


class ApiError(BaseModel):
    code: int = Field(ge=1000)
    message: str


class ResultInfo(BaseModel):
    count: int
    per_page: int
    total_count: int
    page: int | None = None
    cursor: str | None = None


class Envelope(BaseModel, Generic[T]):
    success: bool
    errors: list[ApiError]
    messages: list[Any]
    result: T | None
    result_info: ResultInfo | None = None


class ErrorEnvelope(BaseModel):
    success: Literal[False]
    errors: list[ApiError]
    messages: list[Any]
    result: None


class Pending(BaseModel):
    """A write that was published but not answered in time (HTTP 202)."""

    command_id: str
    status: Literal["pending"]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in {
        400: "invalid request or command (NaN, Infinity, JSON nested too deep included)",
        401: "missing, malformed, unknown or expired token",
        404: "no such account, workflow, instance or step (or not visible to this token)",
        409: "the command conflicts with the instance's state",
        413: "request body, or a value in it, too large",
        415: "a request body not sent as application/json",
        422: "the request names something the instance does not have",
        503: "this process does not accept writes",
    }.items()
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    202: {"model": Envelope[Pending], "description": "published, not answered in time"},
}


# --- requests -------------------------------------------------------------------------------


class InstanceRetention(BaseModel):
    success_retention: Duration | None = None
    error_retention: Duration | None = None


class InstanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_id: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=NAME_PATTERN
    )
    instance_retention: InstanceRetention | None = None
    params: Any = None


class RestartFrom(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    count: int = Field(default=1, ge=1)
    # The SDK says "do" for what the rest of the API calls a "step".
    type: Literal["step", "do", "sleep", "waitForEvent"] = "step"

    @property
    def step_type(self) -> str:
        return "step" if self.type == "do" else self.type


class StatusEdit(BaseModel):
    status: Literal["resume", "pause", "terminate", "restart"]
    rollback: bool = False
    from_: RestartFrom | None = Field(default=None, alias="from")


class WorkflowPut(BaseModel):
    class_name: str | None = Field(default=None, max_length=256)
    script_name: str | None = Field(default=None, max_length=256)
    # A Flowledger extension: 5-field cron expressions in UTC; omitted, the schedules go.
    schedules: list[str] = Field(default_factory=list, max_length=MAX_SCHEDULES)
    # A Flowledger extension: the default retention of the instances created from now on
    # (each field an instance's own `instance_retention` leaves unset); omitted, it goes.
    instance_retention: InstanceRetention | None = None


# --- results --------------------------------------------------------------------------------


class InstanceSummary(BaseModel):
    """InstanceCreateResponse, InstanceBulkResponse and InstanceListResponse."""

    id: str
    status: Status
    version_id: str
    workflow_id: str
    trigger_source: TriggerSource | None = None
    created_on: str | None = None
    modified_on: str | None = None
    started_on: str | None = None
    ended_on: str | None = None


class ErrorData(BaseModel):
    name: str
    message: str


class Rollback(BaseModel):
    outcome: Literal["complete", "failed"]
    error: ErrorData | None


class Trigger(BaseModel):
    source: TriggerSource


class Schedule(BaseModel):
    cron: str | None
    scheduledTime: int | None


class Retries(BaseModel):
    delay: Duration
    limit: int
    backoff: Literal["constant", "linear", "exponential"] | None = None


class StepConfig(BaseModel):
    retries: Retries
    timeout: Duration
    sensitive: Literal["output"] | None = None


class Attempt(BaseModel):
    end: str | None
    error: ErrorData | None
    start: str
    success: bool | None


class Step(BaseModel):
    attempts: list[Attempt]
    config: StepConfig
    end: str | None
    name: str
    output: str | None = Field(description="JSON text of the step's output, cut (step route)")
    start: str
    success: bool | None
    type: Literal["step", "rollback"]


class Sleep(BaseModel):
    end: str = Field(description="the planned end while sleeping, then the actual end")
    error: ErrorData | None
    finished: bool
    name: str
    start: str
    type: Literal["sleep"]


class TerminationTrigger(BaseModel):
    source: str


class Termination(BaseModel):
    trigger: TerminationTrigger
    type: Literal["termination"]


class WaitForEvent(BaseModel):
    end: str = Field(description="the timeout while waiting, then the actual end")
    error: ErrorData | None
    finished: bool
    name: str
    start: str
    type: Literal["waitForEvent"]
    output: str | None = Field(default=None, description="JSON text of the event, cut")


AnyStep = Annotated[Step | Sleep | Termination | WaitForEvent, Field(discriminator="type")]


class InstanceGet(BaseModel):
    end: str | None
    error: ErrorData | None
    output: str | float = Field(description="JSON text of the run's output")
    params: Any
    queued: str
    rollback: Rollback | None
    start: str | None
    status: Status
    step_count: int
    steps: list[AnyStep]
    success: bool | None
    trigger: Trigger
    versionId: str
    schedule: Schedule | None = None


class StepResult(BaseModel):
    error: ErrorData | None
    status: Status
    output: Any = None


class EventSent(BaseModel):
    instanceId: str
    timestamp: str


class InstanceDeleteResult(BaseModel):
    """The answer to a delete: the shape of Cloudflare's WorkflowDeleteResponse."""

    status: Literal["ok"]
    success: bool | None = None


class StatusEditResult(BaseModel):
    status: Status
    timestamp: str


class Workflow(BaseModel):
    id: str
    name: str
    class_name: str | None
    script_name: str | None
    created_on: str
    modified_on: str
    version_id: str
