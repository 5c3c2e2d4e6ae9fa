"""`flowledger serve`: runs the chosen roles until SIGINT/SIGTERM, then drains and exits.

Logs are text by default; FLOWLEDGER_LOG_FORMAT=json makes each line one JSON object that
carries the `instance_key` and `command_id` of the record when there is one, for log shippers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
from collections.abc import Generator
from typing import Any

import uvicorn

from services.api.ops_routes import create_ops_app
from services.banner import print_banner
from services.bootstrap import ROLES, start_service
from services.infra.shutdown import stop_on_signals
from services.observability.logs import configure_logging
from services.settings import Settings, UnsafeSettings

log = logging.getLogger("flowledger")

class _QuietServer(uvicorn.Server):
    """Leaves signals to `serve`, which stops every role, not only HTTP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(
    settings: Settings, roles: tuple[str, ...] = ROLES, *, supervised: bool = False
) -> None:
    """`supervised`: a child of `flowledger serve`'s supervisor (services/supervisor.py), which
    runs one per role: only the api's child prints the whole banner, the others one line."""
    configure_logging(settings.log_format, role=",".join(roles) if supervised else None)
    settings, dev_token = _api_settings(settings) if "api" in roles else (settings, None)
    bootstrap, release_kafka = settings.kafka_bootstrap or "", _nothing_to_release
    if not bootstrap:
        # Development only: production names its brokers, and never loads this module.
        from services.dev_provisioning.kafka import resolve_bootstrap

        bootstrap, release_kafka = await asyncio.to_thread(
            resolve_bootstrap, settings.state_dir / "kafka"
        )
    stop = stop_on_signals()
    service = await start_service(settings, bootstrap, roles)
    servers: list[tuple[_QuietServer, asyncio.Task[None]]] = []
    if service.api is not None:
        servers.append(_http(service.api, settings.http_host, settings.http_port))
    elif settings.ops_port is not None:
        ops = create_ops_app(service.metrics, service.readiness, service.store_health.refresh)
        servers.append(_http(ops, settings.http_host, settings.ops_port))
    await _listening(servers)
    if settings.ready_fd is not None:  # a supervised child: the supervisor prints one banner
        _say_ready(settings.ready_fd)
    else:
        brief = supervised and service.api is None  # the api's banner says the rest
        print_banner(settings, bootstrap, roles, dev_token, brief=brief)
    try:
        await stop.wait()
    finally:
        log.info("stopping: draining in-flight work")
        for server, _ in servers:
            server.should_exit = True  # stop taking requests first: nothing new gets in
        for _, task in servers:
            await task
        await service.stop()
        await asyncio.to_thread(release_kafka)


def _api_settings(settings: Settings) -> tuple[Settings, str | None]:
    """The settings the api role runs with, checked before anything starts (no half-configured
    deployment); in development, with a dev token for every account, returned to print."""
    try:
        settings.check_api_role()
    except UnsafeSettings as unsafe:
        raise SystemExit(f"flowledger serve: {unsafe}") from None
    if settings.is_deployment:
        return settings, None
    dev_token = settings.dev_token or "dev-" + secrets.token_urlsafe(12)
    # The key-encryption keys (the dev key, warned about, when unset) are pinned first: with
    # the dev token in place the settings would pass for a deployment's.
    keks = ",".join(base64.b64encode(k).decode() for k in settings.keks())
    pinned = {"api_tokens": f"{dev_token}=*", "key_encryption_keys": keks}
    return settings.model_copy(update=pinned), dev_token


def _http(app: Any, host: str, port: int) -> tuple[_QuietServer, asyncio.Task[None]]:
    # log_config=None: uvicorn's records go to the root handlers, in the chosen format.
    server = _QuietServer(
        uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None)
    )
    return server, asyncio.create_task(server.serve())


async def _listening(servers: list[tuple[_QuietServer, asyncio.Task[None]]]) -> None:
    """Until every HTTP server accepts connections (or failed: its task says why later)."""
    while not all(server.started or task.done() for server, task in servers):
        await asyncio.sleep(0.02)


def _say_ready(fd: int) -> None:
    """One line on the pipe the supervisor gave this child (services/supervisor.py)."""
    with contextlib.suppress(OSError):  # the supervisor is gone: nobody to tell
        os.write(fd, b"ready\n")
    with contextlib.suppress(OSError):
        os.close(fd)


def _nothing_to_release() -> None:
    """A broker Flowledger did not start is not Flowledger's to stop."""
