"""The agent platform's runs (`/v1/runs`, seed 003) and staged instances
(`/v1/workflow-instances`, seeds 000/004): read-only views of the same instances.

Lists answer `{"data": [...], "nextCursor": str | null}`: pass `cursor=nextCursor` for the
next page (keyset paging, newest first, stable while new runs arrive).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel

from contracts.status import NOT_TERMINAL, TERMINAL
from projections import agent_run, staged_instance
from services.api.auth import Principal, acting_account
from services.api.cloudflare_models import ERROR_RESPONSES
from services.api.deps import AgentRunsView, Caller, StagedView
from services.api.paging import decode_cursor, encode_cursor
from services.api.rendering import answer
from services.store.document_view import DocumentView
from services.store.document_view import Query as ViewQuery

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=1024)]
RunStatus = Literal[
    "pending", "failed", "running", "completed", "cancelled", "timed_out", "paused", "waiting"
]


class Run(BaseModel):
    id: str
    workspaceId: str
    subjectId: str
    parentRunId: str | None
    status: RunStatus
    mode: Literal["sync", "async"]
    input: Any
    output: Any
    error: str | None
    triggeredBy: Literal["workflow", "agent", "swarm", "user", "event"]
    cfWorkflowId: str | None
    durationMs: int | None
    userId: str
    startedAt: str | None
    completedAt: str | None
    createdAt: str
    updatedAt: str


class RunPage(BaseModel):
    data: list[Run]
    nextCursor: str | None


class StageStatus(BaseModel):
    """Seed 004; the optional fields are left out while unset (routes exclude unset)."""

    error: str | None = None
    instance_id: str
    stage: float
    started_at: date
    terminated_at: date | None = None


class WorkflowInstance(BaseModel):
    """Seed 000; the optional fields are left out while unset (routes exclude unset)."""

    createdAt: str
    error: str | None = None
    id: str
    status: list[StageStatus] | None
    terminated: bool
    terminatedAt: str | None = None
    updatedAt: str
    workflowID: str


class WorkflowInstancePage(BaseModel):
    data: list[WorkflowInstance]
    nextCursor: str | None


async def _one(view: DocumentView, caller: Principal, id: UUID) -> dict[str, Any]:
    doc = await asyncio.to_thread(view.get, str(id))
    if doc is None or not caller.may_see(doc["account_id"]):
        raise HTTPException(status_code=404, detail=f"{id} not found")
    return doc


async def _page(
    view: DocumentView,
    query: ViewQuery,
    cursor: str | None,
    render: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    limit = query.limit
    after = decode_cursor(cursor) if cursor else None
    query = msgspec.structs.replace(query, after=after, limit=limit + 1)
    docs = await asyncio.to_thread(view.find, query)
    shown = docs[:limit]
    more = len(docs) > limit
    next_cursor = encode_cursor(shown[-1]["created_on"], shown[-1]["id"]) if more else None
    return {"data": [render(d) for d in shown], "nextCursor": next_cursor}


@router.get("/runs", response_model=RunPage, tags=["runs"])
async def list_runs(
    request: Request,
    caller: Caller,
    runs: AgentRunsView,
    workspace: Annotated[str | None, Query(max_length=256)] = None,
    status: RunStatus | None = None,
    parent: UUID | None = None,
    user: Annotated[str | None, Query(max_length=256)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    account_id: str | None = None,
) -> Response:
    equals = {
        "workspaceId": workspace,
        "parentRunId": str(parent) if parent else None,
        "userId": user,
    }
    query = ViewQuery(
        account_id=acting_account(caller, account_id),
        statuses=(status,) if status else (),
        equals={k: v for k, v in equals.items() if v is not None},
        descending=True,
        limit=limit,
    )
    page = await _page(runs, query, cursor, agent_run.render)
    return answer(request, page)


@router.get("/runs/{run_id}", response_model=Run, tags=["runs"])
async def get_run(request: Request, run_id: UUID, caller: Caller, runs: AgentRunsView) -> Response:
    doc = await _one(runs, caller, run_id)
    return answer(request, agent_run.render(doc))


@router.get(
    "/workflow-instances",
    response_model=WorkflowInstancePage,
    response_model_exclude_unset=True,
    tags=["staged"],
)
async def list_workflow_instances(
    request: Request,
    caller: Caller,
    instances: StagedView,
    terminated: bool | None = None,
    workflow_id: UUID | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    account_id: str | None = None,
) -> Response:
    statuses = () if terminated is None else TERMINAL if terminated else NOT_TERMINAL
    query = ViewQuery(
        account_id=acting_account(caller, account_id),
        statuses=tuple(sorted(statuses)),
        equals={"workflowID": str(workflow_id)} if workflow_id else {},
        descending=True,
        limit=limit,
    )
    page = await _page(instances, query, cursor, staged_instance.render)
    return answer(request, page)


@router.get(
    "/workflow-instances/{instance_id}",
    response_model=WorkflowInstance,
    response_model_exclude_unset=True,
    tags=["staged"],
)
async def get_workflow_instance(
    request: Request, instance_id: UUID, caller: Caller, instances: StagedView
) -> Response:
    doc = await _one(instances, caller, instance_id)
    return answer(request, staged_instance.render(doc))
