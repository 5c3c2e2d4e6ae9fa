"""Cloudflare's v4 response envelope, for results and for errors."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

# Cloudflare error codes are >= 1000; ours keep HTTP's meaning readable in the last digits.
ERROR_CODES = {
    400: 10400, 401: 10401, 403: 10403, 404: 10404, 405: 10405, 409: 10409, 413: 10413,
    415: 10415, 422: 10422,
}  # fmt: skip


def ok(result: Any, result_info: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


def failure(status: int, message: str, code: int | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "success": False,
            "errors": [{"code": code or ERROR_CODES.get(status, 10000), "message": message}],
            "messages": [],
            "result": None,
        },
    )


UNKNOWN_KEY_CODE = 10503  # the instance's data key cannot be unwrapped (`unknown_key`)

# A rejected command's stable code, as a number in the envelope (Cloudflare's codes are ints).
CODES_BY_REASON = {
    "instance.already_exists": 10101,
    "instance.not_found": 10102,
    "workflow.not_found": 10103,
    "instance.invalid_transition": 10104,
    "instance.cannot_terminate": 10105,
    "instance.restart_step_not_found": 10106,
    "instance.finished": 10107,
    "step.mismatch": 10108,
    "limit.exceeded": 10109,
    "payload.too_large": 10110,
    "command.invalid": 10111,
    "command.failed": 10112,
    "instance.id_reserved": 10113,
    "command.too_large": 10114,
    "command.too_deep": 10115,
    "command.not_json": 10116,
    "instance.running": 10117,
    "instance.key_unavailable": 10503,
}

ONFIDO_PREFIX = "/v3.6"
ONFIDO_TYPES = {400: "validation_error", 401: "authorization_error", 404: "resource_not_found"}


def onfido_failure(status: int, message: str, fields: dict[str, Any] | None = None) -> JSONResponse:
    """Onfido's error body: {error: {type, message, fields}}."""
    kind = ONFIDO_TYPES.get(status, "validation_error" if status < 500 else "internal_error")
    return JSONResponse(
        status_code=status,
        content={"error": {"type": kind, "message": message, "fields": fields or {}}},
    )


def dialect_failure(path: str, status: int, message: str, code: int | None = None) -> JSONResponse:
    """An error in the shape of the API that `path` belongs to (Onfido's, else the v4 one)."""
    if path.startswith(ONFIDO_PREFIX):
        response = onfido_failure(status, message)
    else:
        response = failure(status, message, code)
    if status < 500:
        # Stainless SDKs (cloudflare) retry 409s by default; a rejection will not change.
        response.headers["x-should-retry"] = "false"
    return response


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise TypeError(f"not an HTTP exception: {exc!r}")
    reason = getattr(exc, "code", None)
    message = f"{reason}: {exc.detail}" if reason else str(exc.detail)
    code = CODES_BY_REASON.get(reason or "")
    response = dialect_failure(request.url.path, exc.status_code, message, code)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise TypeError(f"not a validation error: {exc!r}")
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    if request.url.path.startswith(ONFIDO_PREFIX):
        fields = {".".join(str(p) for p in err["loc"][1:]): [err["msg"]] for err in exc.errors()}
        return onfido_failure(422, f"invalid request: {problems}", fields)
    return failure(400, f"invalid request: {problems}")


UNKNOWN_KEY_MESSAGE = (
    "the instance's data key cannot be unwrapped with the configured keys: its content cannot "
    "be read until FLOWLEDGER_KEY_ENCRYPTION_KEYS lists the key-encryption key it was wrapped "
    "with (docs/erasure.md, Keys)"
)


async def unknown_key(request: Request, exc: Exception) -> JSONResponse:
    """A read met an instance whose data key no configured KEK opens: 503 in the dialect's
    envelope, not a bare 500. Not retried by SDKs: only an operator can fix it."""
    log.error("%s: %s", request.url.path, exc)  # the aggregate's id, never content
    response = dialect_failure(request.url.path, 503, UNKNOWN_KEY_MESSAGE, UNKNOWN_KEY_CODE)
    response.headers["x-should-retry"] = "false"
    return response


async def still_pending(request: Request, exc: Exception) -> JSONResponse:
    """The write was published but not yet answered: 202 with the command id to look for."""
    command_id = getattr(exc, "command_id", "")
    body: dict[str, Any] = {"command_id": command_id, "status": "pending"}
    if not request.url.path.startswith(ONFIDO_PREFIX):
        body = ok(body)
    return JSONResponse(status_code=202, content=body)
