"""Onfido's shapes (seed 001) as pydantic models: the request body, the run and the errors.

They document the API in OpenAPI and check every answer on its way out.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.limits import MAX_TAGS

OnfidoStatus = Literal[
    "processing", "awaiting_input", "awaiting_client_input", "approved", "declined", "review",
    "abandoned", "error",
]  # fmt: skip

Tag = Annotated[str, Field(min_length=1, max_length=128)]


class OnfidoError(BaseModel):
    type: str
    message: str
    fields: dict[str, Any]


class OnfidoErrorBody(BaseModel):
    error: OnfidoError


class RunError(BaseModel):
    type: str | None = None
    message: str | None = None


class WorkflowRun(BaseModel):
    """Seed 001; the optional fields without a value are left out (routes exclude unset)."""

    applicant_id: str
    workflow_id: str
    tags: list[str] | None
    customer_user_id: str | None = None
    link: dict[str, Any] | None = None
    created_at: str
    updated_at: str
    id: str
    workflow_version_id: int
    dashboard_url: str
    status: OnfidoStatus
    output: dict[str, Any] | None = None
    reasons: list[str] | None = None
    error: RunError | None = None
    sdk_token: str


class WorkflowRunCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    workflow_id: UUID
    applicant_id: UUID
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    customer_user_id: str | None = Field(default=None, max_length=256)
    link: dict[str, Any] | None = None
    custom_data: dict[str, Any] | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": OnfidoErrorBody, "description": text}
    for status, text in {
        400: "the body is not JSON, or holds NaN, Infinity or JSON nested too deep",
        401: "missing, malformed, unknown or expired token",
        404: "no such workflow run (or not visible to this token)",
        413: "request body too large",
        415: "a request body not sent as application/json",
        422: "invalid request",
    }.items()
}
