"""Onfido-compatible workflow runs under /v3.6 (seed 001), as onfido-python calls them.

Onfido tokens belong to one account, so these routes act in the token's sole account; a
token for several accounts (or `*`) must name one with the `account_id` query parameter.
A run is an instance with a minted id, created on the workflow whose uuid is `workflow_id`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response

from contracts.commands import CreateInstance
from contracts.keys import instance_global_id, new_command_id
from projections import onfido_run
from projections.timestamps import iso
from services.api import sdk_tokens
from services.api.auth import acting_account
from services.api.deps import Caller, OnfidoRunsView, WorkflowsView
from services.api.onfido_models import ERROR_RESPONSES, WorkflowRun, WorkflowRunCreate
from services.api.rendering import answer
from services.api.writes import StillPending, submit
from services.store.document_view import Query as ViewQuery

PAGE_SIZE = 20

router = APIRouter(prefix="/v3.6/workflow_runs", tags=["onfido"], responses=ERROR_RESPONSES)


def _render(request: Request, doc: dict[str, Any]) -> dict[str, Any]:
    state = request.app.state
    token = sdk_tokens.mint(state.sdk_secret, doc["account_id"], doc["id"], state.sdk_token_ttl_s)
    base = f"{request.app.state.base_url}/v3.6"
    return onfido_run.render(doc, dashboard_base=base, sdk_token=token)


@router.post(
    "",
    status_code=201,
    response_model=WorkflowRun,
    response_model_exclude_unset=True,
    responses={202: {"description": "published, not answered in time: {command_id, status}"}},
)
async def create_workflow_run(
    request: Request,
    body: WorkflowRunCreate,
    caller: Caller,
    workflows: WorkflowsView,
    runs: OnfidoRunsView,
    account_id: str | None = None,
) -> Response:
    account = acting_account(caller, account_id)
    workflow = await asyncio.to_thread(workflows.get, str(body.workflow_id))
    if workflow is None or workflow["account_id"] != account:
        raise HTTPException(status_code=422, detail=f"workflow {body.workflow_id} not found")
    command = CreateInstance(
        command_id=new_command_id(),
        account_id=account,
        workflow_name=workflow["workflow_name"],
        params=body.custom_data,
        applicant_id=str(body.applicant_id),
        tags=body.tags or [],
        customer_user_id=body.customer_user_id,
        link=body.link,
    )
    reply = await submit(request, command)
    key = str(instance_global_id(account, workflow["workflow_name"], reply.instance_id or ""))
    doc = await asyncio.to_thread(runs.get, key)
    if doc is None:  # accepted, yet not projected within the write timeout
        raise StillPending(reply.command_id)
    return answer(request, _render(request, doc))


@router.get("/{workflow_run_id}", response_model=WorkflowRun, response_model_exclude_unset=True)
async def find_workflow_run(
    request: Request, workflow_run_id: UUID, caller: Caller, runs: OnfidoRunsView
) -> Response:
    doc = await asyncio.to_thread(runs.get, str(workflow_run_id))
    if doc is None or not caller.may_read_run(doc["account_id"], doc["id"]):
        raise HTTPException(status_code=404, detail=f"workflow run {workflow_run_id} not found")
    return answer(request, _render(request, doc))


@router.get("", response_model=list[WorkflowRun], response_model_exclude_unset=True)
async def list_workflow_runs(
    request: Request,
    caller: Caller,
    runs: OnfidoRunsView,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    status: Annotated[str | None, Query(max_length=512)] = None,
    created_at_gt: date | datetime | None = None,
    created_at_lt: date | datetime | None = None,
    sort: Literal["asc", "desc"] = "desc",
    applicant_id: UUID | None = None,
    tags: Annotated[str | None, Query(max_length=4096)] = None,
    account_id: str | None = None,
) -> Response:
    query = ViewQuery(
        account_id=acting_account(caller, account_id),
        statuses=tuple(s.strip() for s in status.split(",") if s.strip()) if status else (),
        created_from=_after(created_at_gt),
        created_before=iso(_start(created_at_lt)) if created_at_lt else None,
        equals={"applicant_id": str(applicant_id)} if applicant_id else {},
        contains={"tags": tuple(t for t in tags.split(",") if t)} if tags else {},
        descending=sort == "desc",
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    docs = await asyncio.to_thread(runs.find, query)
    return answer(request, [_render(request, doc) for doc in docs])


def _start(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(), tzinfo=UTC)


def _after(value: date | datetime | None) -> str | None:
    """`created_at_gt` is exclusive: a date means from the next day on."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return iso(_start(value) + timedelta(microseconds=1))
    return iso(_start(value) + timedelta(days=1))
