"""The api role: FastAPI over the projections. Reads only views; writes only via Kafka."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api import (
    cloudflare_routes,
    history_routes,
    onfido_routes,
    ops_routes,
    run_routes,
    sdk_tokens,
    workflow_routes,
)
from services.api.auth import ApiTokens
from services.api.body_guard import BodyGuard
from services.api.envelope import http_error, still_pending, unknown_key, validation_error
from services.api.gateway import CommandGateway
from services.api.writes import StillPending
from services.application.history import InstanceHistory
from services.application.sealing import UnknownKeyEncryptionKey
from services.console.app import create_console
from services.store.document_view import DocumentView


def reject_nul_in_query(request: Request) -> None:
    """A query value with a NUL can match nothing, and PostgreSQL cannot even compare one
    (text holds no NUL): a filter with one is invalid input, answered 400/422, never a 500."""
    bad = [
        {"type": "value_error", "loc": ("query", key), "msg": "must not contain NUL (\\u0000)"}
        for key, value in request.query_params.multi_items()
        if "\x00" in key or "\x00" in value
    ]
    if bad:
        raise RequestValidationError(bad)


def create_api(
    *,
    tokens: dict[str, frozenset[str]],
    views: dict[str, DocumentView],
    gateway: CommandGateway | None = None,
    history: InstanceHistory | None = None,
    base_url: str = "http://127.0.0.1:8787",
    sdk_secret: str = "",
    sdk_token_ttl_s: float = sdk_tokens.DEFAULT_TTL_S,
    readiness: Callable[[], dict[str, Any]],
    refresh: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    api = FastAPI(title="Flowledger", version="0.1.0", dependencies=[Depends(reject_nul_in_query)])
    api.state.api_tokens = ApiTokens(tokens)
    api.state.views = views
    api.state.gateway = gateway
    api.state.history = history  # instances' histories (None: history and as_of answer 503)
    api.state.base_url = base_url
    # Unset, a random secret: sdk_tokens then work only on this process, until it restarts
    # (a deployment sets one; services.settings refuses to start it without).
    api.state.sdk_secret = sdk_secret or secrets.token_hex(32)
    api.state.sdk_token_ttl_s = sdk_token_ttl_s
    api.add_middleware(BodyGuard)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(RequestValidationError, validation_error)
    api.add_exception_handler(StillPending, still_pending)
    api.add_exception_handler(UnknownKeyEncryptionKey, unknown_key)
    api.include_router(workflow_routes.router)
    api.include_router(cloudflare_routes.router)
    api.include_router(history_routes.router)
    api.include_router(onfido_routes.router)
    api.include_router(run_routes.router)
    api.include_router(ops_routes.router)  # /metrics, unauthenticated like the probes
    api.mount("/console", create_console(api))  # the web console (services/console)

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        if refresh is not None:
            await refresh()  # the store's answer now, not a second ago
        report = readiness()
        return JSONResponse(status_code=200 if report["ready"] else 503, content=report)

    return api
