"""The instances' wrapped data keys, in a table beside the event store (the `KeyStore` port of
`services.application.sealing`), and the scrubbing that makes a destroyed key, or a deleted
read-model row, unreadable in the database's files too.

Deleting a row does not erase its bytes: SQLite leaves them in free space and in the WAL,
PostgreSQL in dead tuples until vacuumed. So on SQLite every write that may free personal
content runs with `secure_delete` (freed space is zeroed; the views do it too), and after
keys are destroyed the WAL is checkpointed and truncated, so no old frame keeps a copy. On
PostgreSQL the tables that held the content are vacuumed after a deletion, which removes the
dead tuples (docs/erasure.md says what VACUUM does not promise).

Scrubbing runs on a thread of its own, coalesced (`Scrubber`): retention may delete instances
in every batch, and neither a WAL truncation (which waits for readers and holds writers) nor
a VACUUM of every view belongs in the projections' batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory
from psycopg.sql import SQL, Identifier

log = logging.getLogger(__name__)

TABLE = "instance_keys"
# One row per KEK that wraps keys here: its id and check value (services.application.kek_checks).
CHECKS_TABLE = "kek_checks"
SQLITE_CHUNK = 500  # under SQLite's limit on bound parameters
COALESCE_S = 0.5  # erasures asked for within this share one scrub
RETRY_S = 1.0  # after a scrub that could not finish (a reader held the WAL, the store away)
MAX_RETRIES = 30
# VACUUM keeps a dead tuple that an open transaction's snapshot may still see; such snapshots
# end within moments, so PostgreSQL's tables are vacuumed again a little later.
POSTGRES_FOLLOW_UPS_S = (2.0, 15.0)
# How long a WAL truncation may wait for readers, holding new writers meanwhile: short, and
# retried, rather than stalling the commands role for the whole lock timeout.
CHECKPOINT_BUSY_MS = 100


class Scrubber:
    """Runs `scrub` (True: done; False: try again later) on a daemon thread, once for any
    number of requests made while one waits, then the `follow_ups` (seconds after it)."""

    def __init__(self, scrub: Callable[[], bool], follow_ups: Sequence[float] = ()) -> None:
        self._scrub = scrub
        self._follow_ups = follow_ups
        self._wanted = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    def request(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="erasure-scrub", daemon=True).start()
        self._wanted.set()

    def _run(self) -> None:
        due_follow_ups: list[float] = []
        failures = 0
        while True:
            timeout = min(due_follow_ups) - time.monotonic() if due_follow_ups else None
            if not self._wanted.wait(None if timeout is None else max(0.0, timeout)):
                due_follow_ups = [t for t in due_follow_ups if t > time.monotonic()]
                self._attempt(failures)
                continue
            time.sleep(COALESCE_S)
            self._wanted.clear()
            if self._attempt(failures):
                failures = 0
                now = time.monotonic()
                due_follow_ups = [now + delay for delay in self._follow_ups]
            elif (failures := failures + 1) < MAX_RETRIES:
                time.sleep(RETRY_S)
                self._wanted.set()
            else:  # the store is gone for good (closed): the next erasure asks again
                log.warning(
                    "gave up scrubbing after %d attempts; the next erasure retries", failures
                )
                failures = 0

    def _attempt(self, failures: int) -> bool:
        try:
            return self._scrub()
        except Exception:  # the store may be away: retried (logged once per streak)
            if not failures:
                log.warning("scrubbing after an erasure failed; retrying", exc_info=True)
            return False


class SQLiteKeyTable:
    def __init__(self, factory: SQLiteFactory) -> None:
        self.datastore = factory.datastore
        self.scrubber = Scrubber(self.scrub)

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} "
                "(aggregate_id TEXT PRIMARY KEY, wrapped BLOB NOT NULL)"
            )
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {CHECKS_TABLE} "
                "(kek_id TEXT PRIMARY KEY, check_value BLOB NOT NULL)"
            )

    def fetch(self, ids: Collection[UUID]) -> dict[UUID, bytes]:
        found: dict[UUID, bytes] = {}
        hex_ids = [i.hex for i in ids]
        with self.datastore.transaction(commit=False) as cursor:
            for start in range(0, len(hex_ids), SQLITE_CHUNK):
                chunk = hex_ids[start : start + SQLITE_CHUNK]
                cursor.execute(
                    f"SELECT aggregate_id, wrapped FROM {TABLE} "
                    f"WHERE aggregate_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
                rows = cursor.fetchall()
                found.update({UUID(r["aggregate_id"]): bytes(r["wrapped"]) for r in rows})
        return found

    def add(self, wrapped: Mapping[UUID, bytes]) -> dict[UUID, bytes]:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                f"INSERT OR IGNORE INTO {TABLE} (aggregate_id, wrapped) VALUES (?, ?)",
                [(i.hex, w) for i, w in wrapped.items()],
            )
        return self.fetch(list(wrapped))

    def destroy(self, ids: Collection[UUID]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute("PRAGMA secure_delete = ON")
            cursor.executemany(
                f"DELETE FROM {TABLE} WHERE aggregate_id = ?", [(i.hex,) for i in ids]
            )
        self.scrubber.request()

    def scan(self, after: UUID | None, limit: int) -> list[tuple[UUID, bytes]]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT aggregate_id, wrapped FROM {TABLE} WHERE aggregate_id > ? "
                "ORDER BY aggregate_id LIMIT ?",
                [after.hex if after else "", limit],
            )
            return [(UUID(r["aggregate_id"]), bytes(r["wrapped"])) for r in cursor.fetchall()]

    def replace(self, wrapped: Mapping[UUID, bytes]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute("PRAGMA secure_delete = ON")  # the old wrapping leaves no copy
            cursor.executemany(
                f"UPDATE {TABLE} SET wrapped = ? WHERE aggregate_id = ?",
                [(w, i.hex) for i, w in wrapped.items()],
            )

    def checks(self) -> dict[str, bytes]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT kek_id, check_value FROM {CHECKS_TABLE}")
            return {r["kek_id"]: bytes(r["check_value"]) for r in cursor.fetchall()}

    def add_check(self, kek_id: str, check: bytes) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"INSERT OR IGNORE INTO {CHECKS_TABLE} (kek_id, check_value) VALUES (?, ?)",
                [kek_id, check],
            )

    def keep_checks(self, kek_ids: Collection[str]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"DELETE FROM {CHECKS_TABLE} "
                f"WHERE kek_id NOT IN ({', '.join('?' * len(kek_ids))})",
                list(kek_ids),
            )

    def scrub(self) -> bool:
        """Copies the WAL into the database file and truncates it to nothing: the frames that
        held deleted rows (and the zeroed pages that replaced them) leave no copy behind.
        False when a reader held the WAL past CHECKPOINT_BUSY_MS."""
        # Outside a transaction (the connection is in autocommit mode), as a writer of this
        # process's pool, so that none of its own writers is held mid-checkpoint.
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("PRAGMA busy_timeout")
            (timeout_ms,) = cursor.fetchone()
            cursor.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_MS}")
            try:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                (busy, _, _) = cursor.fetchone()
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
        return not busy


class PostgresKeyTable:
    def __init__(self, factory: PostgresFactory, scrubbed_tables: Sequence[str] = ()) -> None:
        self.datastore = factory.datastore
        self._table = Identifier(self.datastore.schema, TABLE)
        self._checks = Identifier(self.datastore.schema, CHECKS_TABLE)
        self._scrubbed = [Identifier(self.datastore.schema, t) for t in (TABLE, *scrubbed_tables)]
        self.scrubber = Scrubber(self.scrub, POSTGRES_FOLLOW_UPS_S)

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} "
                    "(aggregate_id uuid PRIMARY KEY, wrapped bytea NOT NULL)"
                ).format(self._table)
            )
            cursor.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (kek_id text PRIMARY KEY, check_value bytea "
                    "NOT NULL)"
                ).format(self._checks)
            )

    def fetch(self, ids: Collection[UUID]) -> dict[UUID, bytes]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                SQL("SELECT aggregate_id, wrapped FROM {} WHERE aggregate_id = ANY(%s)").format(
                    self._table
                ),
                [list(ids)],
            )
            return {UUID(str(r["aggregate_id"])): bytes(r["wrapped"]) for r in cursor.fetchall()}

    def add(self, wrapped: Mapping[UUID, bytes]) -> dict[UUID, bytes]:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                SQL(
                    "INSERT INTO {} (aggregate_id, wrapped) VALUES (%s, %s) "
                    "ON CONFLICT (aggregate_id) DO NOTHING"
                ).format(self._table),
                list(wrapped.items()),
            )
        return self.fetch(list(wrapped))

    def destroy(self, ids: Collection[UUID]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                SQL("DELETE FROM {} WHERE aggregate_id = ANY(%s)").format(self._table), [list(ids)]
            )
        self.scrubber.request()

    def scan(self, after: UUID | None, limit: int) -> list[tuple[UUID, bytes]]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                SQL(
                    "SELECT aggregate_id, wrapped FROM {} WHERE %s::uuid IS NULL "
                    "OR aggregate_id > %s::uuid ORDER BY aggregate_id LIMIT %s"
                ).format(self._table),
                [after, after, limit],
            )
            return [(UUID(str(r["aggregate_id"])), bytes(r["wrapped"])) for r in cursor.fetchall()]

    def replace(self, wrapped: Mapping[UUID, bytes]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                SQL("UPDATE {} SET wrapped = %s WHERE aggregate_id = %s").format(self._table),
                [(w, i) for i, w in wrapped.items()],
            )

    def checks(self) -> dict[str, bytes]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(SQL("SELECT kek_id, check_value FROM {}").format(self._checks))
            return {r["kek_id"]: bytes(r["check_value"]) for r in cursor.fetchall()}

    def add_check(self, kek_id: str, check: bytes) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                SQL(
                    "INSERT INTO {} (kek_id, check_value) VALUES (%s, %s) "
                    "ON CONFLICT (kek_id) DO NOTHING"
                ).format(self._checks),
                [kek_id, check],
            )

    def keep_checks(self, kek_ids: Collection[str]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                SQL("DELETE FROM {} WHERE NOT kek_id = ANY(%s)").format(self._checks),
                [list(kek_ids)],
            )

    def scrub(self) -> bool:
        """Vacuums the tables that held the deleted content: their dead tuples are removed,
        so no query, not even one reading raw heap items, returns them."""
        with self.datastore.get_connection() as conn:  # autocommit: VACUUM runs outside one
            for table in self._scrubbed:
                name = table.as_string(conn)
                exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS e", [name]).fetchone()
                if exists and exists["e"]:  # a read model this process never opened may be absent
                    conn.execute(SQL("VACUUM {}").format(table))
        return True


KeyTable = SQLiteKeyTable | PostgresKeyTable


def open_key_table(
    factory: InfrastructureFactory[Any], scrubbed_tables: Sequence[str] = ()
) -> KeyTable:
    """The key table on the same datastore as the event store behind `factory`, created if
    missing; `scrubbed_tables` (the read models) are vacuumed after keys are destroyed."""
    table: KeyTable
    if isinstance(factory, PostgresFactory):
        table = PostgresKeyTable(factory, scrubbed_tables)
    elif isinstance(factory, SQLiteFactory):
        table = SQLiteKeyTable(factory)
    else:
        raise TypeError(f"no key table for the event store of {type(factory).__name__}")
    table.create_table()
    return table
