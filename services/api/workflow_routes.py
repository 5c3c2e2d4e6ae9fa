"""Workflow registration under /client/v4: PUT creates or deploys a version, GET reads."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response

from contracts.commands import RegisterWorkflow, Retention
from contracts.keys import new_command_id, workflow_global_id
from projections import workflows
from services.api.auth import Principal
from services.api.cloudflare_models import (
    ERROR_RESPONSES,
    WRITE_RESPONSES,
    Envelope,
    Workflow,
    WorkflowPut,
)
from services.api.deps import AccountId, Caller, WorkflowName, WorkflowsView, view
from services.api.envelope import ok
from services.api.rendering import answer
from services.api.writes import submit
from services.store.document_view import DocumentView
from services.store.document_view import Query as ViewQuery

router = APIRouter(
    prefix="/client/v4/accounts/{account_id}/workflows",
    tags=["cloudflare workflows"],
    responses=ERROR_RESPONSES,
)


async def _workflow(view: DocumentView, caller: Principal, account_id: str, name: str) -> Any:
    doc = None
    if caller.may_see(account_id):
        key = str(workflow_global_id(account_id, name))
        doc = await asyncio.to_thread(view.get, key)
    if doc is None or doc["account_id"] != account_id:
        raise HTTPException(status_code=404, detail=f"workflow {name!r} not found")
    return doc


@router.put(
    "/{workflow_name}",
    responses=WRITE_RESPONSES,
    response_model=Envelope[Workflow],
    response_model_exclude_unset=True,
)
async def put_workflow(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    caller: Caller,
    body: Annotated[WorkflowPut | None, Body()] = None,
) -> Response:
    if not caller.may_see(account_id):
        raise HTTPException(status_code=404, detail="account not found")
    body = body or WorkflowPut()
    command = RegisterWorkflow(
        command_id=new_command_id(),
        account_id=account_id,
        workflow_name=workflow_name,
        class_name=body.class_name,
        script_name=body.script_name,
        schedules=body.schedules,
        retention=None
        if body.instance_retention is None
        else Retention(
            success_retention=body.instance_retention.success_retention,
            error_retention=body.instance_retention.error_retention,
        ),
    )
    await submit(request, command)
    # Read once the write is answered (see deps.view).
    registered = view(request, workflows.VIEW_NAME)
    doc = await _workflow(registered, caller, account_id, workflow_name)
    return answer(request, ok(workflows.render(doc)))


@router.get(
    "/{workflow_name}", response_model=Envelope[Workflow], response_model_exclude_unset=True
)
async def get_workflow(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    caller: Caller,
    registered: WorkflowsView,
) -> Response:
    doc = await _workflow(registered, caller, account_id, workflow_name)
    return answer(request, ok(workflows.render(doc)))


@router.get("", response_model=Envelope[list[Workflow]], response_model_exclude_unset=True)
async def list_workflows(
    request: Request,
    account_id: AccountId,
    caller: Caller,
    registered: WorkflowsView,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    if not caller.may_see(account_id):
        raise HTTPException(status_code=404, detail="account not found")
    query = ViewQuery(account_id=account_id, limit=per_page, offset=(page - 1) * per_page)
    docs, total = await asyncio.gather(
        asyncio.to_thread(registered.find, query), asyncio.to_thread(registered.count, query)
    )
    info = {"count": len(docs), "per_page": per_page, "total_count": total, "page": page}
    return answer(request, ok([workflows.render(d) for d in docs], info))
