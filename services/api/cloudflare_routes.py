"""Cloudflare-compatible instance routes under /client/v4 (seed 002).

Reads come from the Cloudflare instance view; writes are commands through the gateway, and
answer once the view shows them. Another account's data answers 404, exactly like absence.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response

from contracts.keys import instance_global_id
from contracts.limits import MAX_BATCH, NAME_PATTERN
from projections import cloudflare_instance as cf
from projections.document_view import DocumentView
from projections.document_view import Query as ViewQuery
from projections.timestamps import iso
from services.api.auth import Principal, authenticate
from services.api.cloudflare_models import (
    ERROR_RESPONSES,
    WRITE_RESPONSES,
    Envelope,
    EventSent,
    InstanceCreate,
    InstanceGet,
    InstanceSummary,
    Status,
    StatusEdit,
    StatusEditResult,
    StepResult,
)
from services.api.envelope import ok
from services.api.paging import decode_cursor, encode_cursor
from services.api.rendering import answer
from services.api.writes import submit

router = APIRouter(
    prefix="/client/v4/accounts/{account_id}/workflows/{workflow_name}/instances",
    tags=["cloudflare instances"],
    responses=ERROR_RESPONSES,
)

AccountId = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN)]
WorkflowName = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN)]
InstanceId = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME_PATTERN)]
EventType = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME_PATTERN)]
Caller = Annotated[Principal, Depends(authenticate)]


def _view(request: Request) -> DocumentView:
    return request.app.state.views[cf.VIEW_NAME]  # type: ignore[no-any-return]


def _visible(principal: Principal, account_id: str) -> None:
    # Another account answers exactly like a missing instance: no existence leak.
    if not principal.may_see(account_id):
        raise HTTPException(status_code=404, detail="instance not found")


async def _document(
    request: Request, account_id: str, workflow_name: str, instance_id: str
) -> dict[str, Any]:
    key = str(instance_global_id(account_id, workflow_name, instance_id))
    doc = await asyncio.to_thread(_view(request).get, key)
    if doc is None or doc["account_id"] != account_id:
        raise HTTPException(status_code=404, detail=f"instance {instance_id!r} not found")
    return doc


def _body(account_id: str, workflow_name: str, item: InstanceCreate) -> dict[str, Any]:
    body: dict[str, Any] = {
        "account_id": account_id,
        "workflow_name": workflow_name,
        "params": item.params,
    }
    if item.instance_id is not None:
        body["instance_id"] = item.instance_id
    if item.instance_retention is not None:
        body["retention"] = item.instance_retention.model_dump(exclude_none=True)
    return body


@router.post(
    "",
    responses=WRITE_RESPONSES,
    response_model_exclude_unset=True,
    response_model=Envelope[InstanceSummary],
)
async def create_instance(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    caller: Caller,
    item: Annotated[InstanceCreate | None, Body()] = None,
) -> Response:
    _visible(caller, account_id)
    command = {
        "type": "CreateInstance",
        **_body(account_id, workflow_name, item or InstanceCreate()),
    }
    reply = await submit(request, command)
    doc = await _document(request, account_id, workflow_name, reply.instance_id or "")
    return answer(request, ok(cf.list_item(doc)))


@router.post(
    "/batch",
    responses=WRITE_RESPONSES,
    response_model_exclude_unset=True,
    response_model=Envelope[list[InstanceSummary]],
)
async def create_instances(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    caller: Caller,
    items: Annotated[list[InstanceCreate], Body(min_length=1, max_length=MAX_BATCH)],
) -> Response:
    _visible(caller, account_id)
    bodies = [_body(account_id, workflow_name, item) for item in items]
    for body in bodies:
        del body["account_id"], body["workflow_name"]
    command = {
        "type": "CreateInstances",
        "account_id": account_id,
        "workflow_name": workflow_name,
        "instances": bodies,
    }
    reply = await submit(request, command)
    keys = [
        str(instance_global_id(account_id, workflow_name, item.instance_id))
        for item in reply.instances or []
    ]
    docs = await asyncio.to_thread(_view(request).get_many, keys)
    return answer(request, ok([cf.list_item(docs[key]) for key in keys if key in docs]))


@router.get("", response_model_exclude_unset=True, response_model=Envelope[list[InstanceSummary]])
async def list_instances(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    caller: Caller,
    status: Status | None = None,
    date_start: datetime | None = None,
    date_end: datetime | None = None,
    page: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    direction: Literal["asc", "desc"] | None = None,
) -> Response:
    # The SDK's auto-pagination sends `page` on top of a cursor: pages then count from it.
    if direction is not None and cursor is None:
        raise HTTPException(status_code=400, detail="direction is only allowed with a cursor")
    _visible(caller, account_id)
    query = ViewQuery(
        account_id=account_id,
        workflow_name=workflow_name,
        statuses=(status,) if status else (),
        created_from=iso(_utc(date_start)) if date_start else None,
        # date_end is inclusive; the view's bound is exclusive.
        created_before=iso(_utc(date_end) + timedelta(microseconds=1)) if date_end else None,
        descending=direction != "asc",
        after=decode_cursor(cursor) if cursor else None,
        limit=per_page + 1,
        offset=((page or 1) - 1) * per_page,
    )
    view = _view(request)
    docs, total = await asyncio.gather(
        asyncio.to_thread(view.find, query), asyncio.to_thread(view.count, query)
    )
    shown = docs[:per_page]
    info: dict[str, Any] = {"count": len(shown), "per_page": per_page, "total_count": total}
    info["page"] = page or 1
    if len(docs) > per_page:
        info["cursor"] = encode_cursor(shown[-1]["created_on"], shown[-1]["global_id"])
    return answer(request, ok([cf.list_item(d) for d in shown], info))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get(
    "/{instance_id}", response_model_exclude_unset=True, response_model=Envelope[InstanceGet]
)
async def get_instance(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    caller: Caller,
    order: Literal["asc", "desc"] = "asc",
    simple: bool = False,
) -> Response:
    _visible(caller, account_id)
    doc = await _document(request, account_id, workflow_name, instance_id)
    response = cf.get_response(doc)
    if simple:
        response["steps"] = []
    elif order == "desc":
        response["steps"] = response["steps"][::-1]
    return answer(request, ok(response))


@router.get(
    "/{instance_id}/step", response_model_exclude_unset=True, response_model=Envelope[StepResult]
)
async def get_step(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    caller: Caller,
    name: Annotated[str, Query(min_length=1, max_length=256)],
    type: Literal["step", "sleep", "waitForEvent"] | None = None,
    attempt: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Response:
    _visible(caller, account_id)
    doc = await _document(request, account_id, workflow_name, instance_id)
    result = cf.step_response(doc, name, type, attempt)
    if result is None:
        raise HTTPException(status_code=404, detail=f"step {name!r} not found")
    return answer(request, ok(result))


@router.patch(
    "/{instance_id}/status",
    responses=WRITE_RESPONSES,
    response_model_exclude_unset=True,
    response_model=Envelope[StatusEditResult],
)
async def edit_status(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    caller: Caller,
    edit: StatusEdit,
) -> Response:
    _visible(caller, account_id)
    command: dict[str, Any] = {
        "type": "ChangeStatus",
        "account_id": account_id,
        "workflow_name": workflow_name,
        "instance_id": instance_id,
        "action": edit.status,
        "rollback": edit.rollback,
    }
    if edit.from_ is not None:
        command["from"] = {**edit.from_.model_dump(), "type": edit.from_.step_type}
    reply = await submit(request, command)
    return answer(request, ok({"status": reply.status, "timestamp": iso(datetime.now(UTC))}))


@router.post(
    "/{instance_id}/events/{event_type}",
    responses=WRITE_RESPONSES,
    response_model_exclude_unset=True,
    response_model=Envelope[EventSent],
)
async def send_event(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    event_type: EventType,
    caller: Caller,
    payload: Annotated[Any, Body()] = None,
) -> Response:
    _visible(caller, account_id)
    command = {
        "type": "SendEvent",
        "account_id": account_id,
        "workflow_name": workflow_name,
        "instance_id": instance_id,
        "event_type": event_type,
        "payload": payload,
    }
    await submit(request, command)
    return answer(request, ok({"instanceId": instance_id, "timestamp": iso(datetime.now(UTC))}))
