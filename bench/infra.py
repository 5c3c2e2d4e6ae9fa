"""The real backends the benchmark runs on, started through the project's own code.

Kafka: `resolve_bootstrap` (FLOWLEDGER_KAFKA_BOOTSTRAP, else Docker, else a local KRaft broker).
PostgreSQL: FLOWLEDGER_TEST_POSTGRES_DSN when set, else a local cluster of the machine's binaries,
started *durable* (fsync on), as production would run it, and removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from services.dev_provisioning.kafka import resolve_bootstrap
from services.dev_provisioning.postgres import (
    ENV_ADMIN_DSN,
    create_database_on,
    drop_database_on,
    remove_postgres,
    start_postgres,
)


@contextlib.contextmanager
def kafka_broker(state_dir: Path) -> Iterator[str]:
    """A bootstrap address; a broker started here is stopped on exit."""
    bootstrap, release = resolve_bootstrap(state_dir)
    try:
        yield bootstrap
    finally:
        release()


@contextlib.contextmanager
def postgres_server(state_dir: Path) -> Iterator[str]:
    """An admin DSN (may CREATE DATABASE); a cluster started here is removed on exit."""
    if env_dsn := os.environ.get(ENV_ADMIN_DSN, "").strip():
        yield env_dsn
        return
    data_dir = state_dir / "postgres"
    server = start_postgres(data_dir, durable=True)
    try:
        yield server.dsn()
    finally:
        remove_postgres(data_dir)


@contextlib.contextmanager
def store_url(kind: str, state_dir: Path, pg_admin_dsn: str | None, label: str) -> Iterator[str]:
    """A fresh, empty event store of `kind` ('sqlite' or 'postgresql'), dropped on exit."""
    if kind == "sqlite":
        path = state_dir / f"{label}.db"
        yield f"sqlite:///{path}"
        return
    if pg_admin_dsn is None:
        raise ValueError("a postgresql store needs a server")
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    dsn = create_database_on(pg_admin_dsn, name)
    try:
        yield dsn
    finally:
        drop_database_on(pg_admin_dsn, name)
