"""Every instance's history, and the instance as it was at any moment (a Flowledger extension
under /client/v4, in the same envelope).

`GET .../instances/{id}/history`: the instance's lifecycle events in version order, each with
`version`, `type`, `occurred_at`, `command_id`, `event_id` and the event's own fields in
`data`, paged like the instance list (`page`/`per_page`, `cursor`). `GET .../instances/{id}?
as_of=T` (cloudflare_routes) answers the instance document as it was at T, an RFC 3339 time
or a version number, folded from this history with the live view's own fold
(`projections.cloudflare_instance.apply`), so it is what the view served at that moment.

The history is read from the event store (services.application.history), off the event loop;
another account's instance answers 404, exactly like a missing one.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel

from contracts.events import InstanceEvent
from projections.timestamps import parse
from services.api.cloudflare_models import ERROR_RESPONSES, Envelope
from services.api.deps import AccountId, Caller, InstanceId, WorkflowName
from services.api.envelope import ok
from services.api.paging import decode_cursor, encode_cursor
from services.api.rendering import answer
from services.api.time_travel import checkpoints_of, document_at, history_item
from services.application.history import InstanceHistory

router = APIRouter(
    prefix="/client/v4/accounts/{account_id}/workflows/{workflow_name}/instances",
    tags=["flowledger history"],
    responses=ERROR_RESPONSES,
)

# The envelope of every lifecycle event; the rest of its fields are its `data`.
_VERSION = re.compile(r"[0-9]{1,18}")
_SPACED_OFFSET = re.compile(r"(?<=[0-9]) ([0-9]{2}:?[0-9]{2})$")
_CURSOR_MARK = "version"


class HistoryEvent(BaseModel):
    """One lifecycle event of the instance, as published on `{prefix}.events`."""

    version: int
    type: str
    occurred_at: str
    command_id: str
    event_id: str
    data: dict[str, Any]


def _history(request: Request) -> InstanceHistory:
    history: InstanceHistory | None = request.app.state.history
    if history is None:
        raise HTTPException(status_code=503, detail="this process does not serve histories")
    return history


def _not_found(instance_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"instance {instance_id!r} not found")


@router.get(
    "/{instance_id}/history",
    response_model=Envelope[list[HistoryEvent]],
    response_model_exclude_unset=True,
)
async def get_history(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    caller: Caller,
    page: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    if not caller.may_see(account_id):
        raise _not_found(instance_id)
    history = _history(request)
    after = _decode_version_cursor(cursor) if cursor else 0
    # Versions run 1, 2, ... without gaps: page N after the cursor starts N-1 pages later.
    start = after + ((page or 1) - 1) * per_page
    # Both reads end before the answer, even when one fails: a read left running in its thread
    # could outlive the request, and a store closed meanwhile (a test's) crashed the process.
    found, latest = await asyncio.gather(
        asyncio.to_thread(
            history.events, account_id, workflow_name, instance_id,
            after=start, limit=per_page + 1,
        ),
        asyncio.to_thread(history.version, account_id, workflow_name, instance_id),
        return_exceptions=True,
    )  # fmt: skip
    for outcome in (found, latest):
        if isinstance(outcome, BaseException):
            raise outcome
    events, total = cast("list[InstanceEvent]", found), cast("int", latest)
    if total == 0:
        raise _not_found(instance_id)
    shown = events[:per_page]
    info: dict[str, Any] = {
        "count": len(shown),
        "per_page": per_page,
        "total_count": total,
        "page": page or 1,
    }
    if len(events) > per_page:
        info["cursor"] = encode_cursor(_CURSOR_MARK, str(shown[-1].version))
    return answer(request, ok([history_item(e) for e in shown], info))


def _decode_version_cursor(cursor: str) -> int:
    mark, version = decode_cursor(cursor)
    if mark != _CURSOR_MARK or not _VERSION.fullmatch(version):
        raise HTTPException(status_code=400, detail="cursor is not one this API handed out")
    return int(version)


AS_OF_DESCRIPTION = (
    "Flowledger extension: the instance as it was at this RFC 3339 time (e.g. "
    "2025-01-02T03:04:05Z; without an offset, UTC) or at this version (1 is its creation), "
    "folded from its history. Before the instance existed: 404."
)


def parse_as_of(as_of: str) -> int | datetime:
    """A version number, or an aware time; 400 for anything else."""
    text = as_of.strip()
    if _VERSION.fullmatch(text):
        return int(text)
    # An unencoded `+01:00` in a query string arrives as ` 01:00`.
    text = _SPACED_OFFSET.sub(r"+\1", text)
    try:
        return parse(text)
    except ValueError:
        raise HTTPException(
            status_code=400,
            detail=f"as_of must be an RFC 3339 time or a version number, not {as_of[:100]!r}",
        ) from None


async def document_as_of(
    request: Request, account_id: str, workflow_name: str, instance_id: str, as_of: str
) -> dict[str, Any]:
    """The Cloudflare instance document as the live view held it at `as_of`, folded from the
    nearest fold checkpoint (services.api.time_travel)."""
    moment = parse_as_of(as_of)
    history = _history(request)
    upto = moment if isinstance(moment, int) else None
    if upto == 0:
        raise _before_creation(instance_id, as_of)
    key = (account_id, workflow_name, instance_id)
    checkpoints = checkpoints_of(request.app.state)
    latest = await asyncio.to_thread(history.version, *key)
    if latest == 0:
        checkpoints.forget(key)  # deleted (or never was): nothing of it stays in memory
        raise _not_found(instance_id)
    if upto is not None and latest < upto:
        raise HTTPException(
            status_code=404,
            detail=f"instance {instance_id!r} has no version {upto}: its latest is {latest}",
        )
    until = moment if isinstance(moment, datetime) else None
    doc = await asyncio.to_thread(document_at, history, checkpoints, key, upto, until)
    if doc is None:
        raise _before_creation(instance_id, as_of)
    return doc




def _before_creation(instance_id: str, as_of: str) -> HTTPException:
    return HTTPException(
        status_code=404, detail=f"instance {instance_id!r} did not exist at {as_of[:100]}"
    )
