"""Roles started in the same instant on an empty store all come up: schema creation cannot race.

`docker compose up` starts every role at once against a fresh database. Each round here does
the same on a database nobody has touched, and every process must report ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import httpx
import pytest

from services.dev_provisioning.postgres import create_database_on
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import Cluster, RoleProcess, free_port
from tests.fixtures.service import make_settings

pytestmark = pytest.mark.kafka

ROUNDS = 3
# Two commands members as in production, and every other role; each its own process.
ROLES = ("commands", "commands", "relay", "projections", "api", "scheduler")


def fresh_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
    admin = request.getfixturevalue("postgres_admin_dsn")
    return create_database_on(admin, f"t_start_{uuid.uuid4().hex[:12]}")


async def wait_ready(port: int, process: RoleProcess, limit_s: float = DEADLINE_S) -> None:
    """Until the process's /readyz answers 200; fails at once if the process exits."""
    deadline = asyncio.get_running_loop().time() + limit_s
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            process.alive()
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{process.role} never ready:\n{process.output()[-3000:]}")
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_every_role_started_at_once_on_an_empty_store_comes_up_ready(
    kind: str, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for round_number in range(ROUNDS):
        settings = make_settings(fresh_store(kind, tmp_path, request))
        cluster = Cluster(settings, kafka_bootstrap)
        logs = tmp_path / f"round{round_number}"
        logs.mkdir()
        ports: dict[str, int] = {}
        for index, role in enumerate(ROLES):
            name = f"{role}-{index}"
            ports[name] = free_port()
            port_variable = "FLOWLEDGER_HTTP_PORT" if role == "api" else "FLOWLEDGER_OPS_PORT"
            cluster.add(name, role, logs, **{port_variable: str(ports[name])})
        try:
            for process in cluster.roles.values():
                process.start()
            for name, process in cluster.roles.items():
                await wait_ready(ports[name], process)
            cluster.check_alive(*cluster.roles)
        except BaseException:
            print(f"round {round_number} on {kind}:\n{cluster.logs()}")
            raise
        finally:
            for process in cluster.roles.values():
                process.stop()
