"""Cloudflare's v4 response envelope, for results and for errors."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# Cloudflare error codes are >= 1000; ours keep HTTP's meaning readable in the last digits.
ERROR_CODES = {400: 10400, 401: 10401, 403: 10403, 404: 10404, 405: 10405, 409: 10409, 422: 10422}


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


async def http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = failure(exc.status_code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return failure(400, f"invalid request: {problems}")
