"""The console's pages; their URLs mirror the Cloudflare API's under /client/v4:
`/console/accounts/{account_id}/workflows[/{workflow_name}[/instances[/{instance_id}]]]`.

Reads go through the same document views as the API (`services.api.deps.view`), writes through
the same path as its routes (`services.api.writes.submit` with the contract's typed commands),
and the same tenant rule holds: another account's workflow or instance is a 404 page, exactly
like one that does not exist.

Every action is two POSTs: the first (from the instance page) changes nothing and answers a
confirmation page, the second (`confirmed=yes`) publishes the command. The confirmation page
mints the command's id, so submitting it twice (a reload) is answered `duplicate` and applied
once. Both carry the session's CSRF token (see `session`). Delete (a finished instance only)
answers a page saying so once accepted: the instance's own page is a 404 from then on.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from contracts.commands import AnyCommand, ChangeStatus, DeleteInstance, SendEvent
from contracts.keys import instance_global_id, new_command_id, workflow_global_id
from contracts.limits import MAX_COMMAND_DEPTH, NAME_PATTERN
from contracts.status import ALL_STATUSES, NOT_TERMINAL, TERMINAL
from projections import cloudflare_instance as cf
from projections import workflows
from services.api.body_guard import is_console_form, json_problem
from services.api.deps import AccountId, InstanceId, WorkflowName, view
from services.api.time_travel import checkpoints_of, document_at, history_item
from services.api.writes import Rejected, StillPending, submit
from services.application.history import InstanceHistory
from services.console import paging
from services.console import session as sessions
from services.console.render import base_path, page, render_text
from services.console.session import ConsoleSessions, Session
from services.console.timeline import build, spans
from services.store.document_view import Query as ViewQuery

router = APIRouter()

PER_PAGE = 25
WORKFLOWS_PER_PAGE = 50
STATUS_ORDER = (
    "queued", "running", "waiting", "waitingForPause", "paused", "rollingBack", "complete",
    "errored", "terminated",
)  # fmt: skip
Action = Literal["pause", "resume", "terminate", "restart", "delete"]
ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    # action: (what the button says, the statuses it applies in)
    "pause": ("Pause", frozenset({"queued", "running", "waiting"})),
    "resume": ("Resume", frozenset({"paused", "waitingForPause"})),
    "terminate": ("Terminate", frozenset(NOT_TERMINAL)),
    "restart": ("Restart", frozenset(ALL_STATUSES)),
    "delete": ("Delete", frozenset(TERMINAL)),
}
_NAME = re.compile(NAME_PATTERN)

# --- who is asking -----------------------------------------------------------------------------


async def current(request: Request) -> Session:
    state = request.app.state
    return await sessions.current_session(
        request, state.api_tokens, state.sdk_secret, state.console_sessions
    )


def _visible(session: Session, account_id: str) -> None:
    if not session.principal.may_see(account_id):
        raise HTTPException(status_code=404, detail="There is no such page.")


def to_sign_in(request: Request) -> Response:
    """303 to the sign-in page, coming back here afterwards (GET pages only)."""
    target = f"{base_path(request)}/sign-in"
    if request.method == "GET":
        here = request.url.path[len(base_path(request)) :] or "/"
        if request.url.query:
            here += f"?{request.url.query}"
        target += f"?next={quote(here, safe='')}"
    return RedirectResponse(target, status_code=303)


def _safe_next(value: str | None) -> str | None:
    """A console path to return to after signing in; None for anything that is not one."""
    if not value or not value.startswith("/") or value.startswith("//") or len(value) > 2000:
        return None
    if any(c in value for c in "\\\r\n\t\x00") or not value.isprintable():
        return None
    return value


async def _form(request: Request) -> dict[str, str]:
    """The URL-encoded fields of a form; 415 for any other body, 400 for unreadable ones."""
    if not is_console_form(request.url.path, request.headers.get("content-type")):
        raise HTTPException(status_code=415, detail="Send the form URL-encoded.")
    try:
        body = (await request.body()).decode("utf-8")
        fields = parse_qs(body, keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as error:
        raise HTTPException(status_code=400, detail="The form could not be read.") from error
    if any("\x00" in v for values in fields.values() for v in values):
        raise HTTPException(status_code=400, detail="A field holds NUL (\\u0000).")
    return {name: values[-1] for name, values in fields.items()}


def _check_csrf(session: Session, form: dict[str, str]) -> None:
    if not sessions.csrf_ok(session, form.get("csrf_token")):
        raise HTTPException(
            status_code=403,
            detail="The form's CSRF token is missing or does not match this session: "
            "reload the page and try again.",
        )


# --- signing in and out ------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    await current(request)
    return RedirectResponse(f"{base_path(request)}/accounts", status_code=303)


def _sign_in_page(
    request: Request, next_path: str | None, error: str = "", status_code: int = 200
) -> Response:
    nonce = sessions.sign_in_nonce(request)
    response = page(
        request,
        "sign_in.html",
        status_code=status_code,
        title="Sign in",
        nonce=nonce,
        next_path=next_path or "",
        error=error,
    )
    sessions.keep_sign_in_nonce(request, response, nonce)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    return _sign_in_page(request, _safe_next(next))


def _too_many(request: Request, retry_after: int) -> Response:
    message = f"Too many wrong sign-ins from this address: try again in {retry_after} s."
    response = _sign_in_page(request, None, message, status_code=429)
    response.headers["retry-after"] = str(retry_after)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    console: ConsoleSessions = request.app.state.console_sessions
    address = request.client.host if request.client else ""
    retry_after = console.sign_in_limiter.retry_after(address, console.clock())
    if retry_after is not None:  # before the form is read: a refused guess costs nothing
        return _too_many(request, retry_after)
    form = await _form(request)
    next_path = _safe_next(form.get("next"))
    if not sessions.sign_in_nonce_ok(request, form.get("sign_in_token")):
        return _sign_in_page(
            request, next_path, "The form expired: please sign in again.", status_code=403
        )
    token = form.get("token", "").strip()
    if sessions.accounts_of(request.app.state.api_tokens, token) is None:
        console.sign_in_limiter.failed(address, console.clock())
        return _sign_in_page(request, next_path, "That token is not valid.", status_code=401)
    if console.store is None:
        raise HTTPException(
            status_code=503,
            detail="This process keeps no console sessions: use an Authorization header.",
        )
    session_id = await asyncio.to_thread(
        sessions.open_session, console.store, token, console.policy, console.now_ms()
    )
    response = RedirectResponse(f"{base_path(request)}{next_path or '/accounts'}", 303)
    sessions.set_session_cookie(request, response, session_id, console.policy)
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request) -> Response:
    session = await current(request)
    _check_csrf(session, await _form(request))
    console: ConsoleSessions = request.app.state.console_sessions
    if session.via == "cookie" and console.store is not None:
        session_id = sessions.cookie_session_id(request)
        await asyncio.to_thread(sessions.close_session, console.store, session_id)
    response = RedirectResponse(f"{base_path(request)}/sign-in", status_code=303)
    sessions.clear_session_cookie(response)
    return response


# --- accounts and workflows --------------------------------------------------------------------


@router.get("/accounts", response_class=HTMLResponse)
async def accounts(request: Request, account_id: str | None = None) -> Response:
    session = await current(request)
    sole = session.principal.sole_account()
    chosen = account_id.strip() if account_id else sole
    if chosen and _NAME.match(chosen) and len(chosen) <= 64:
        return RedirectResponse(
            f"{base_path(request)}/accounts/{quote(chosen, safe='')}/workflows", status_code=303
        )
    listed = sorted(a for a in session.principal.accounts if a != "*")
    return page(
        request,
        "accounts.html",
        session=session,
        title="Accounts",
        accounts=listed,
        any_account="*" in session.principal.accounts,
        error="Not an account id." if account_id else "",
    )


def _counts_by_workflow(counts: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    by_workflow: dict[str, dict[str, int]] = {}
    for (workflow_name, status), n in counts.items():
        by_workflow.setdefault(workflow_name, {})[status] = n
    return by_workflow


@router.get("/accounts/{account_id}/workflows", response_class=HTMLResponse)
async def workflows_page(
    request: Request,
    account_id: AccountId,
    page_number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
) -> Response:
    session = await current(request)
    _visible(session, account_id)
    registered, instances = view(request, workflows.VIEW_NAME), view(request, cf.VIEW_NAME)
    query = ViewQuery(
        account_id=account_id,
        limit=WORKFLOWS_PER_PAGE,
        offset=(page_number - 1) * WORKFLOWS_PER_PAGE,
    )
    docs, total, counts = await asyncio.gather(
        asyncio.to_thread(registered.find, query),
        asyncio.to_thread(registered.count, query),
        asyncio.to_thread(instances.status_counts, ViewQuery(account_id=account_id)),
    )
    return page(
        request,
        "workflows.html",
        session=session,
        title=f"Workflows of {account_id}",
        account_id=account_id,
        workflows=docs,
        counts=_counts_by_workflow(counts),
        statuses=STATUS_ORDER,
        page_number=page_number,
        pages=max(1, math.ceil(total / WORKFLOWS_PER_PAGE)),
        total=total,
        crumbs=_crumbs(request, account_id),
    )


async def _workflow(request: Request, account_id: str, workflow_name: str) -> dict[str, Any]:
    key = str(workflow_global_id(account_id, workflow_name))
    doc = await asyncio.to_thread(view(request, workflows.VIEW_NAME).get, key)
    if doc is None or doc["account_id"] != account_id:
        raise HTTPException(status_code=404, detail=f"There is no workflow {workflow_name!r}.")
    return doc


@router.get("/accounts/{account_id}/workflows/{workflow_name}", response_class=HTMLResponse)
async def workflow_page(
    request: Request, account_id: AccountId, workflow_name: WorkflowName
) -> Response:
    session = await current(request)
    _visible(session, account_id)
    doc = await _workflow(request, account_id, workflow_name)
    counts = await asyncio.to_thread(
        view(request, cf.VIEW_NAME).status_counts,
        ViewQuery(account_id=account_id, workflow_name=workflow_name),
    )
    return page(
        request,
        "workflow.html",
        session=session,
        title=f"Workflow {workflow_name}",
        account_id=account_id,
        workflow=doc,
        counts=_counts_by_workflow(counts).get(workflow_name, {}),
        statuses=STATUS_ORDER,
        crumbs=_crumbs(request, account_id, workflow_name),
    )


# --- instances ---------------------------------------------------------------------------------


@router.get(
    "/accounts/{account_id}/workflows/{workflow_name}/instances", response_class=HTMLResponse
)
async def instances_page(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    status: Annotated[str, Query(max_length=32)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
) -> Response:
    session = await current(request)
    _visible(session, account_id)
    await _workflow(request, account_id, workflow_name)
    if status and status not in ALL_STATUSES:
        raise HTTPException(status_code=400, detail=f"Not a status: {status!r}.")
    q = q.strip()
    docs, total = await _instances(request, account_id, workflow_name, status, q, page_number)
    return page(
        request,
        "instances.html",
        session=session,
        title=f"Instances of {workflow_name}",
        account_id=account_id,
        workflow_name=workflow_name,
        instances=docs,
        status=status,
        q=q,
        statuses=STATUS_ORDER,
        page_number=page_number,
        pages=max(1, math.ceil(total / PER_PAGE)),
        total=total,
        crumbs=_crumbs(request, account_id, workflow_name, instances=True),
    )


async def _instances(
    request: Request, account_id: str, workflow_name: str, status: str, q: str, page_number: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the workflow's instances (summaries: no steps), or the one named `q`."""
    instances = view(request, cf.VIEW_NAME)
    if q:
        # Search by id: the one document with that id (ids are exact names, not text).
        if not _NAME.match(q) or len(q) > 100:
            return [], 0
        key = str(instance_global_id(account_id, workflow_name, q))
        found = await asyncio.to_thread(instances.get, key)
        if found is None or found["account_id"] != account_id:
            return [], 0
        return ([found], 1) if not status or found["status"] == status else ([], 0)
    query = ViewQuery(
        account_id=account_id,
        workflow_name=workflow_name,
        statuses=(status,) if status else (),
        descending=True,
        limit=PER_PAGE,
        offset=(page_number - 1) * PER_PAGE,
    )
    docs, total = await asyncio.gather(
        asyncio.to_thread(instances.find_summaries, query),
        asyncio.to_thread(instances.count, query),
    )
    return docs, total


async def _document(
    request: Request, account_id: str, workflow_name: str, instance_id: str
) -> dict[str, Any]:
    key = str(instance_global_id(account_id, workflow_name, instance_id))
    doc = await asyncio.to_thread(view(request, cf.VIEW_NAME).get, key)
    if doc is None or doc["account_id"] != account_id:
        raise HTTPException(status_code=404, detail=f"There is no instance {instance_id!r}.")
    return doc


async def _as_of(
    request: Request, history: InstanceHistory | None, names: tuple[str, str, str], as_of: int
) -> tuple[dict[str, Any], datetime]:
    """The document folded up to version `as_of` (from the api's fold checkpoints, as
    `?as_of=` is), and that version's time."""
    if history is None:
        raise HTTPException(status_code=503, detail="This process does not serve histories.")
    at = await asyncio.to_thread(history.events, *names, after=as_of - 1, upto=as_of)
    if not at or at[-1].version != as_of:
        raise HTTPException(
            status_code=404, detail=f"Instance {names[2]!r} has no version {as_of}."
        )
    checkpoints = checkpoints_of(request.app.state)
    folded = await asyncio.to_thread(document_at, history, checkpoints, names, as_of, None)
    if folded is None:
        raise HTTPException(
            status_code=404, detail=f"Instance {names[2]!r} has no version {as_of}."
        )
    return folded, at[-1].occurred_at


async def _history_page(
    history: InstanceHistory | None, names: tuple[str, str, str], asked: int | None
) -> tuple[paging.Window, list[dict[str, Any]]]:
    """One page of the instance's history, read alone (versions run 1, 2, ... without gaps,
    so a page of versions is a page of events): a long history is never read whole."""
    total = 0 if history is None else await asyncio.to_thread(history.version, *names)
    past = paging.window(total, asked)
    if history is None or not total:
        return past, []
    events = await asyncio.to_thread(history.events, *names, after=past.first, upto=past.end)
    return past, [history_item(e) for e in events]


async def _instance(
    request: Request,
    session: Session,
    names: tuple[str, str, str],
    as_of: int | None = None,
    asked: Mapping[str, int | None] | None = None,
    live_doc: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the instance page shows: the live document (`live_doc` if read already: a long
    instance's is large), or the one folded up to `as_of`, a page of its timeline and one of
    its history (`asked`: the page numbers asked for, by query parameter)."""
    account_id, workflow_name, instance_id = names
    asked = asked or {}
    doc = live_doc or await _document(request, *names)
    history: InstanceHistory | None = getattr(request.app.state, "history", None)
    shown, now = doc, datetime.now(UTC)
    if as_of is not None:
        shown, now = await _as_of(request, history, names, as_of)
    past, items = await _history_page(history, names, asked.get(paging.HISTORY))
    url, keep = _instance_url(request, *names), {"as_of": as_of, **asked}
    steps = paging.window(len(spans(shown)), asked.get(paging.STEPS))
    return {
        "session": session,
        "account_id": account_id,
        "workflow_name": workflow_name,
        "instance_id": instance_id,
        "doc": shown,
        "live_doc": doc,
        "live_url": f"{url}/live{paging.query_string(asked)}",
        "as_of": as_of,
        "latest_version": max(doc["version"], past.total),
        "timeline": build(shown, now, steps.first, paging.PER_PAGE),
        "steps_pager": paging.pager(url, paging.STEPS, steps, keep),
        "history": items,
        "history_pager": paging.pager(url, paging.HISTORY, past, keep),
        "has_history": history is not None,
        "actions": [
            (name, label) for name, (label, applies) in ACTIONS.items() if doc["status"] in applies
        ],
        "running": doc["status"] not in TERMINAL,
        "crumbs": _crumbs(request, *names[:2], instances=True, instance_id=instance_id),
        "title": f"Instance {instance_id}",
        "outcome": None,
        "event_type": "",
        "payload": "",
    }


InstancePath = "/accounts/{account_id}/workflows/{workflow_name}/instances/{instance_id}"
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]


@router.get(InstancePath, response_class=HTMLResponse)
async def instance_page(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    as_of: Annotated[int | None, Query(ge=1, le=10**12)] = None,
    steps_page: PageNumber = None,
    history_page: PageNumber = None,
) -> Response:
    session = await current(request)
    _visible(session, account_id)
    asked = {paging.STEPS: steps_page, paging.HISTORY: history_page}
    names = (account_id, workflow_name, instance_id)
    context = await _instance(request, session, names, as_of, asked)
    return page(request, "instance.html", **context)


@router.get(f"{InstancePath}/live", response_class=HTMLResponse)
async def instance_live(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    since: Annotated[int | None, Query(ge=0, le=10**12)] = None,
    steps_page: PageNumber = None,
    history_page: PageNumber = None,
) -> Response:
    """The part of the instance page that changes while it runs (polled by console.js), with
    the pages of steps and history the page shows: 204 while the view is still at `since`."""
    session = await current(request)
    _visible(session, account_id)
    doc = await _document(request, account_id, workflow_name, instance_id)
    if since is not None and doc["version"] == since:
        return Response(status_code=204, headers={"x-console-fragment": "live"})
    asked = {paging.STEPS: steps_page, paging.HISTORY: history_page}
    names = (account_id, workflow_name, instance_id)
    context = await _instance(request, session, names, None, asked, doc)
    html = render_text(request, "live_top.html", **context) + render_text(
        request, "live_body.html", **context
    )
    return HTMLResponse(html, headers={"x-console-fragment": "live"})


# --- actions -----------------------------------------------------------------------------------


def _command_id(form: dict[str, str]) -> str:
    try:
        return str(uuid.UUID(form.get("command_id", "")))
    except ValueError:
        raise HTTPException(status_code=400, detail="The form has no valid command id.") from None


async def _outcome(request: Request, command: AnyCommand, what: str) -> tuple[int, dict[str, Any]]:
    """Publishes `command` the way the API's routes do; the HTTP status and what to say."""
    try:
        reply = await submit(request, command)
    except Rejected as rejected:
        return rejected.status_code, {
            "ok": False,
            "text": f"{what}: rejected ({rejected.code}). {rejected.detail}",
        }
    except StillPending as pending:
        return 202, {
            "ok": True,
            "text": f"{what}: published as command {pending.command_id}; its answer has not "
            "arrived yet. This page will show the change once it does.",
        }
    except HTTPException as error:
        return error.status_code, {"ok": False, "text": f"{what}: failed. {error.detail}"}
    if reply.outcome == "duplicate":
        text = f"{what}: already done (this form was sent before); status {reply.status}."
    else:
        text = f"{what}: accepted; the instance is now {reply.status}."
    return 200, {"ok": True, "text": text}


async def _after(
    request: Request,
    session: Session,
    names: tuple[str, str, str],
    status_code: int,
    outcome: dict[str, Any],
    **extra: Any,
) -> Response:
    context = await _instance(request, session, names)
    context.update(outcome=outcome, **extra)
    return page(request, "instance.html", status_code=status_code, **context)


@router.post(f"{InstancePath}/actions/{{action}}", response_class=HTMLResponse)
async def act(
    request: Request,
    account_id: AccountId,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    action: Action,
) -> Response:
    session = await current(request)
    form = await _form(request)
    _check_csrf(session, form)
    _visible(session, account_id)
    doc = await _document(request, account_id, workflow_name, instance_id)
    names = (account_id, workflow_name, instance_id)
    label = ACTIONS[action][0]
    if form.get("confirmed") != "yes":
        return page(
            request,
            "confirm.html",
            session=session,
            title=f"{label} {instance_id}?",
            label=label,
            sentence=f"{label} instance",
            danger=action in ("terminate", "restart", "delete"),
            action_url=f"{_instance_url(request, *names)}/actions/{action}",
            instance_url=_instance_url(request, *names),
            instance_id=instance_id,
            status=doc["status"],
            command_id=new_command_id(),
            fields={},
            crumbs=_crumbs(request, *names[:2], instances=True, instance_id=instance_id),
        )
    if action == "delete":
        return await _delete(request, session, names, _command_id(form))
    command = ChangeStatus(
        command_id=_command_id(form),
        account_id=account_id,
        workflow_name=workflow_name,
        instance_id=instance_id,
        action=action,
    )
    status_code, outcome = await _outcome(request, command, label)
    return await _after(request, session, names, status_code, outcome)


async def _delete(
    request: Request, session: Session, names: tuple[str, str, str], command_id: str
) -> Response:
    account_id, workflow_name, instance_id = names
    command = DeleteInstance(
        command_id=command_id,
        account_id=account_id,
        workflow_name=workflow_name,
        instance_id=instance_id,
    )
    status_code, outcome = await _outcome(request, command, "Delete")
    if not outcome["ok"]:
        return await _after(request, session, names, status_code, outcome)
    if status_code == 200:
        outcome["text"] = f"Delete: accepted; instance {instance_id} is deleted."
    instances_url = _instance_url(request, *names).rsplit("/", 1)[0]
    return page(
        request,
        "deleted.html",
        status_code=status_code,
        session=session,
        title=f"Instance {instance_id} deleted",
        outcome=outcome,
        workflow_name=workflow_name,
        instances_url=instances_url,
        crumbs=_crumbs(request, account_id, workflow_name, instances=True),
    )


def _payload(text: str) -> Any:
    """The event's payload from the form's JSON text (empty: null), judged as the HTTP door
    judges a body; raises ValueError with what is wrong."""
    if not text.strip():
        return None
    raw = text.encode()
    problem = json_problem(raw, MAX_COMMAND_DEPTH)
    if problem is not None:
        raise ValueError(problem)
    try:
        return json.loads(raw)
    except ValueError as error:
        raise ValueError(f"the payload is not JSON: {error}") from None


@router.post(f"{InstancePath}/events", response_class=HTMLResponse)
async def send_event(
    request: Request, account_id: AccountId, workflow_name: WorkflowName, instance_id: InstanceId
) -> Response:
    session = await current(request)
    form = await _form(request)
    _check_csrf(session, form)
    _visible(session, account_id)
    await _document(request, account_id, workflow_name, instance_id)
    names = (account_id, workflow_name, instance_id)
    event_type, text = form.get("event_type", "").strip(), form.get("payload", "")
    kept = {"event_type": event_type, "payload": text}
    problem, payload = _event_problem(event_type, text)
    if problem is not None:
        return await _after(
            request, session, names, 400, {"ok": False, "text": f"Send event: {problem}"}, **kept
        )
    if form.get("confirmed") != "yes":
        return page(
            request,
            "confirm.html",
            session=session,
            title=f"Send {event_type} to {instance_id}?",
            label=f"Send event {event_type}",
            sentence=f"Send the event {event_type} to instance",
            danger=False,
            action_url=f"{_instance_url(request, *names)}/events",
            instance_url=_instance_url(request, *names),
            instance_id=instance_id,
            status=None,
            command_id=new_command_id(),
            fields=kept,
            payload=payload,
            crumbs=_crumbs(request, *names[:2], instances=True, instance_id=instance_id),
        )
    command = SendEvent(
        command_id=_command_id(form),
        account_id=account_id,
        workflow_name=workflow_name,
        instance_id=instance_id,
        event_type=event_type,
        payload=payload,
    )
    status_code, outcome = await _outcome(request, command, f"Send event {event_type}")
    return await _after(request, session, names, status_code, outcome)


def _event_problem(event_type: str, text: str) -> tuple[str | None, Any]:
    """What is wrong with the event the form asks to send (None), and its payload."""
    if not (_NAME.match(event_type) and len(event_type) <= 100):
        return "The event type must be 1 to 100 letters, digits, '_' or '-'.", None
    try:
        return None, _payload(text)
    except ValueError as error:
        return f"The payload cannot be sent: {error}", None


# --- links -------------------------------------------------------------------------------------


def _instance_url(request: Request, account_id: str, workflow_name: str, instance_id: str) -> str:
    return (
        f"{base_path(request)}/accounts/{quote(account_id, safe='')}/workflows/"
        f"{quote(workflow_name, safe='')}/instances/{quote(instance_id, safe='')}"
    )


def _crumbs(
    request: Request,
    account_id: str,
    workflow_name: str | None = None,
    *,
    instances: bool = False,
    instance_id: str | None = None,
) -> list[tuple[str, str]]:
    url = f"{base_path(request)}/accounts/{quote(account_id, safe='')}/workflows"
    crumbs = [(account_id, url)]
    if workflow_name is not None:
        url += f"/{quote(workflow_name, safe='')}"
        crumbs.append((workflow_name, url))
    if instances:
        url += "/instances"
        crumbs.append(("instances", url))
    if instance_id is not None:
        url += f"/{quote(instance_id, safe='')}"
        crumbs.append((instance_id, url))
    return crumbs
