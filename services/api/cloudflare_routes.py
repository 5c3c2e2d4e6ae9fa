"""Cloudflare-compatible instance routes under /client/v4 (seed 002)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from contracts.keys import instance_global_id
from contracts.limits import NAME_PATTERN
from projections import cloudflare_instance
from projections.document_view import DocumentView
from services.api.auth import Principal, authenticate
from services.api.envelope import ok

router = APIRouter(prefix="/client/v4/accounts/{account_id}/workflows/{workflow_name}")

AccountId = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN)]
WorkflowName = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN)]
InstanceId = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME_PATTERN)]


def _view(request: Request) -> DocumentView:
    return request.app.state.views[cloudflare_instance.VIEW_NAME]  # type: ignore[no-any-return]


def _not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} not found")


@router.get("/instances/{instance_id}")
async def get_instance(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    # Another account's instance answers exactly like a missing one: no existence leak.
    if not principal.may_see(account_id):
        raise _not_found("instance")
    key = str(instance_global_id(account_id, workflow_name, instance_id))
    doc = await asyncio.to_thread(_view(request).get, key)
    if doc is None or doc["account_id"] != account_id:
        raise _not_found("instance")
    return ok(cloudflare_instance.get_response(doc))
