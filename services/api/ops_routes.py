"""Operations endpoints: GET /metrics (Prometheus text format).

The router reads the process's `Metrics` from `app.state.metrics` (set by the composition
root). Roles without the api serve the same endpoints, with /healthz and /readyz, from
`create_ops_app` on FLOWLEDGER_OPS_PORT, so every process can be probed and scraped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from services.observability.metrics import Metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry: Metrics | None = getattr(request.app.state, "metrics", None)
    if registry is None:
        return Response("metrics are not set up in this process\n", status_code=404)
    await registry.refresh()  # the lags as of now, asked off the event loop
    body, content_type = await asyncio.to_thread(registry.render)
    return Response(body, media_type=content_type)


def create_ops_app(
    metrics: Metrics,
    readiness: Callable[[], dict[str, Any]],
    refresh: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """Probes and metrics alone, for a process running the commands, relay or projections."""
    app = FastAPI(title="Flowledger operations", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    app.include_router(router)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if refresh is not None:
            await refresh()  # the store's answer now, not a second ago
        report = readiness()
        return JSONResponse(status_code=200 if report["ready"] else 503, content=report)

    return app
