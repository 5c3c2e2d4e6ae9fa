"""One schema creator at a time, whatever starts at once.

Every role creates the tables it needs ("CREATE ... IF NOT EXISTS") when it starts. Two
processes doing that in the same instant on PostgreSQL fail in ways no retry loop catches
reliably (`tuple concurrently updated`, duplicate catalog rows, lock deadlocks between two
DDL transactions): `docker compose up` starts every role at once, so without a lock the first
deployment is a crash loop. Holding one lock that every backend honours around all of a
process's schema work makes the creators take turns; the later ones find the tables there.

PostgreSQL: a session-level advisory lock on its own connection (released when the connection
closes, so a creator that dies cannot leave it held). SQLite: an exclusive `flock` on a file
beside the database (released by the kernel when the process dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

import psycopg

from services.infra.store_env import eventsourcing_env

log = logging.getLogger(__name__)

# Any fixed 64-bit number shared by every Flowledger process; this one spells "FLOWSCHM".
ADVISORY_LOCK_KEY = 0x464C4F575343484D & 0x7FFFFFFFFFFFFFFF


@contextlib.contextmanager
def schema_lock(store_url: str) -> Iterator[None]:
    """Held while the caller creates or migrates tables; waits for any other holder."""
    env = eventsourcing_env(store_url)
    if env["PERSISTENCE_MODULE"].endswith("postgres"):
        with _postgres_lock(env):
            yield
    else:
        with _file_lock(env["SQLITE_DBNAME"]):
            yield


@contextlib.contextmanager
def _postgres_lock(env: dict[str, str]) -> Iterator[None]:
    conninfo = psycopg.conninfo.make_conninfo(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


@contextlib.contextmanager
def _file_lock(db_name: str) -> Iterator[None]:
    if db_name.startswith(":memory:") or db_name.startswith("file:"):
        yield  # one connection's private database: nobody to race with
        return
    path = Path(db_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".schema-lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
