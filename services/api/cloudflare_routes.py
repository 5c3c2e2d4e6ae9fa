"""Cloudflare-compatible instance routes under /client/v4 (seed 002).

Reads come from the Cloudflare instance view; writes are commands through the gateway, and
answer once the view shows them. Another account's data answers 404, exactly like absence.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response

from contracts.commands import (
    ChangeStatus,
    CreateInstance,
    CreateInstances,
    DeleteInstance,
    InstanceBody,
    RestartFrom,
    Retention,
    SendEvent,
    StepType,
)
from contracts.keys import instance_global_id, new_command_id
from contracts.limits import MAX_BATCH
from projections import cloudflare_instance as cf
from projections.timestamps import iso
from services.api.auth import Principal
from services.api.cloudflare_models import (
    ERROR_RESPONSES,
    WRITE_RESPONSES,
    Envelope,
    EventSent,
    InstanceCreate,
    InstanceDeleteResult,
    InstanceGet,
    InstanceSummary,
    Status,
    StatusEdit,
    StatusEditResult,
    StepResult,
)
from services.api.deps import (
    AccountId,
    Caller,
    CloudflareView,
    EventType,
    InstanceId,
    WorkflowName,
    view,
)
from services.api.envelope import ok
from services.api.history_routes import AS_OF_DESCRIPTION, document_as_of
from services.api.paging import decode_cursor, encode_cursor
from services.api.rendering import answer
from services.api.writes import submit
from services.store.document_view import DocumentView
from services.store.document_view import Query as ViewQuery

router = APIRouter(
    prefix="/client/v4/accounts/{account_id}/workflows/{workflow_name}/instances",
    tags=["cloudflare instances"],
    responses=ERROR_RESPONSES,
)


def _visible(principal: Principal, account_id: str) -> None:
    # Another account answers exactly like a missing instance: no existence leak.
    if not principal.may_see(account_id):
        raise HTTPException(status_code=404, detail="instance not found")


async def _document(
    view: DocumentView, account_id: str, workflow_name: str, instance_id: str
) -> dict[str, Any]:
    key = str(instance_global_id(account_id, workflow_name, instance_id))
    doc = await asyncio.to_thread(view.get, key)
    if doc is None or doc["account_id"] != account_id:
        raise HTTPException(status_code=404, detail=f"instance {instance_id!r} not found")
    return doc


def _retention(item: InstanceCreate) -> Retention | None:
    given = item.instance_retention
    if given is None:
        return None
    return Retention(
        success_retention=given.success_retention, error_retention=given.error_retention
    )


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
    item = item or InstanceCreate()
    command = CreateInstance(
        command_id=new_command_id(),
        account_id=account_id,
        workflow_name=workflow_name,
        instance_id=item.instance_id,
        params=item.params,
        retention=_retention(item),
    )
    reply = await submit(request, command)
    # Read once the write is answered (see deps.view).
    instances = view(request, cf.VIEW_NAME)
    doc = await _document(instances, account_id, workflow_name, reply.instance_id or "")
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
    command = CreateInstances(
        command_id=new_command_id(),
        account_id=account_id,
        workflow_name=workflow_name,
        instances=[
            InstanceBody(
                instance_id=item.instance_id, params=item.params, retention=_retention(item)
            )
            for item in items
        ],
    )
    reply = await submit(request, command)
    keys = [
        str(instance_global_id(account_id, workflow_name, item.instance_id))
        for item in reply.instances or []
    ]
    # Read once the write is answered (see deps.view).
    docs = await asyncio.to_thread(view(request, cf.VIEW_NAME).get_many, keys)
    return answer(request, ok([cf.list_item(docs[key]) for key in keys if key in docs]))


@router.get("", response_model_exclude_unset=True, response_model=Envelope[list[InstanceSummary]])
async def list_instances(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    caller: Caller,
    instances: CloudflareView,
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
    docs, total = await asyncio.gather(
        # A list shows no steps: summaries only, whatever the instances' lengths.
        asyncio.to_thread(instances.find_summaries, query),
        asyncio.to_thread(instances.count, query),
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
    instances: CloudflareView,
    order: Literal["asc", "desc"] = "asc",
    simple: bool = False,
    as_of: Annotated[str | None, Query(max_length=64, description=AS_OF_DESCRIPTION)] = None,
) -> Response:
    _visible(caller, account_id)
    if as_of is None:
        doc = await _document(instances, account_id, workflow_name, instance_id)
    else:
        doc = await document_as_of(request, account_id, workflow_name, instance_id, as_of)
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
    instances: CloudflareView,
    name: Annotated[str, Query(min_length=1, max_length=256)],
    type: Literal["step", "sleep", "waitForEvent"] | None = None,
    attempt: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Response:
    _visible(caller, account_id)
    doc = await _document(instances, account_id, workflow_name, instance_id)
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
    restart_from = None
    if edit.from_ is not None:
        step_type = cast(StepType, edit.from_.step_type)
        restart_from = RestartFrom(name=edit.from_.name, count=edit.from_.count, type=step_type)
    command = ChangeStatus(
        command_id=new_command_id(),
        account_id=account_id,
        workflow_name=workflow_name,
        instance_id=instance_id,
        action=edit.status,
        rollback=edit.rollback,
        from_=restart_from,
    )
    reply = await submit(request, command)
    return answer(request, ok({"status": reply.status, "timestamp": iso(datetime.now(UTC))}))


@router.delete(
    "/{instance_id}",
    responses=WRITE_RESPONSES,
    response_model_exclude_unset=True,
    response_model=Envelope[InstanceDeleteResult],
)
async def delete_instance(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    caller: Caller,
) -> Response:
    """A Flowledger extension (Cloudflare's API deletes workflows, not instances): deletes a
    finished instance (409 `instance.running` while it is not); afterwards every route
    answers 404 for it, lists omit it and its id is not reused. The result has the shape of
    Cloudflare's workflow delete: `{"status": "ok", "success": true}`."""
    _visible(caller, account_id)
    command = DeleteInstance(
        command_id=new_command_id(),
        account_id=account_id,
        workflow_name=workflow_name,
        instance_id=instance_id,
        reason="api",
    )
    await submit(request, command)
    return answer(request, ok({"status": "ok", "success": True}))


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
    command = SendEvent(
        command_id=new_command_id(),
        account_id=account_id,
        workflow_name=workflow_name,
        instance_id=instance_id,
        event_type=event_type,
        payload=payload,
    )
    await submit(request, command)
    return answer(request, ok({"instanceId": instance_id, "timestamp": iso(datetime.now(UTC))}))
