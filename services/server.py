"""`flowledger serve`: runs the chosen roles until SIGINT/SIGTERM, then drains and exits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Generator

import uvicorn

from services.bootstrap import ROLES, start_service
from services.infra.kafka_local import resolve_bootstrap
from services.settings import Settings

log = logging.getLogger("flowledger")


class _QuietServer(uvicorn.Server):
    """Leaves signals to `serve`, which stops every role, not only HTTP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(settings: Settings, roles: tuple[str, ...] = ROLES) -> None:
    if "api" in roles and not settings.api_tokens:
        dev_token = "dev-" + secrets.token_urlsafe(12)
        settings = settings.model_copy(update={"api_tokens": f"{dev_token}=*"})
    bootstrap, release_kafka = (
        await asyncio.to_thread(resolve_bootstrap, settings.state_dir / "kafka")
        if not settings.kafka_bootstrap
        else (settings.kafka_bootstrap, lambda: None)
    )
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            # An impatient second signal: exit like a crash; redelivery covers what was cut.
            log.warning("second signal: exiting without draining")
            os._exit(1)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    service = await start_service(settings, bootstrap, roles)
    http: _QuietServer | None = None
    http_task = None
    if service.api is not None:
        http = _QuietServer(
            uvicorn.Config(
                service.api, host=settings.http_host, port=settings.http_port, log_level="warning"
            )
        )
        http_task = asyncio.create_task(http.serve())
    _banner(settings, bootstrap, roles)
    try:
        await stop.wait()
    finally:
        log.info("stopping: draining in-flight work")
        if http is not None and http_task is not None:
            http.should_exit = True
            await http_task
        await service.stop()
        await asyncio.to_thread(release_kafka)


def _banner(settings: Settings, bootstrap: str, roles: tuple[str, ...]) -> None:
    topics = settings.topics
    lines = [
        f"Flowledger is running (roles: {', '.join(roles)})",
        f"  store:      {settings.store}",
        f"  kafka:      {bootstrap}",
        f"  commands:   {topics.commands}   replies: {topics.replies}",
        f"  events:     {topics.events}   dead letters: {topics.dead_letters}",
    ]
    if "api" in roles:
        url = f"http://{settings.http_host}:{settings.http_port}"
        lines += [f"  http:       {url}  (health: {url}/healthz)"]
        for token, accounts in settings.tokens().items():
            lines += [f"  token:      {token}  (accounts: {', '.join(sorted(accounts))})"]
    lines += [
        "  try:        .venv/bin/flowledger publish --example | .venv/bin/flowledger publish",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
