"""The console as an application of its own, mounted by the api under `/console`.

A sub-application rather than a router, so that its errors are pages (the api's handlers
answer in the dialects' JSON shapes) and its routes stay out of the OpenAPI document. It shares
the api's `state` object: the same token table, views, command gateway, histories and secret,
so `services.api.writes.submit` and `services.api.deps.view` work unchanged on its requests;
it adds `state.console_sessions` (its sessions' store, expiry and sign-in limit).

Every answer carries a Content-Security-Policy that allows scripts, styles and fetches from the
console's own origin only (no inline script or style anywhere), forbids framing, and sends no
referrer; pages are not cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.application.sealing import UnknownKeyEncryptionKey
from services.console import pages
from services.console.render import page
from services.console.session import ConsoleSessions, Unauthenticated

STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: the headers above on every answer; `no-store` on all but static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(f"{scope.get('root_path', '')}/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in SECURITY_HEADERS}
                ]
                headers += SECURITY_HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _unauthenticated(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unauthenticated)
    if exc.bad_header:
        response = page(
            request,
            "error.html",
            status_code=401,
            title="Not signed in",
            message="The Authorization header holds no valid api token.",
        )
        response.headers["www-authenticate"] = "Bearer"
        return response
    return pages.to_sign_in(request)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    titles = {403: "Refused", 404: "Not found", 405: "Not allowed", 503: "Unavailable"}
    response = page(
        request,
        "error.html",
        status_code=exc.status_code,
        title=titles.get(exc.status_code, "Error"),
        message=str(exc.detail),
    )
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: list[Any] = list(exc.errors())
    # A malformed name in the path names nothing that exists: the same page as a missing one.
    if any((e.get("loc") or ("",))[0] == "path" for e in errors):
        return page(
            request,
            "error.html",
            status_code=404,
            title="Not found",
            message="There is no such page.",
        )
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}" for e in errors
    )
    return page(request, "error.html", status_code=400, title="Invalid request", message=problems)


async def _unknown_key(request: Request, exc: Exception) -> Response:
    """A data key no configured KEK opens: the deployment lacks a key, said plainly (503)."""
    return page(
        request,
        "error.html",
        status_code=503,
        title="Key unavailable",
        message="This instance's data key cannot be unwrapped with the configured keys: "
        "FLOWLEDGER_KEY_ENCRYPTION_KEYS must list the key it was written with.",
    )


def create_console(parent: FastAPI) -> FastAPI:
    """The console, sharing `parent`'s state; mount it with `parent.mount("/console", ...)`."""
    console = FastAPI(title="Flowledger console", openapi_url=None, docs_url=None, redoc_url=None)
    console.state = parent.state
    # No store until the api role opens the session table (services/api/role.py).
    console.state.console_sessions = ConsoleSessions()
    console.add_middleware(SecurityHeaders)
    console.add_exception_handler(Unauthenticated, _unauthenticated)
    console.add_exception_handler(StarletteHTTPException, _http_error)
    console.add_exception_handler(RequestValidationError, _invalid)
    console.add_exception_handler(UnknownKeyEncryptionKey, _unknown_key)
    console.include_router(pages.router)
    console.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return console
