"""The console's sign-in sessions, in a table beside the event store, so that every api replica
sees a session any one of them started and forgets one any of them ended.

A row holds a session's identity and times, never a secret a reader of the table could use:
the key is the SHA-256 of the session id (the cookie's value), and the signed-in token is
kept as its SHA-256 digest (which token signed in, to check it against the configured ones).
Expiry is decided by the caller (`services/console/session.py`), which passes the moments;
nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import InfrastructureFactory

from services.store.table_site import TableSite, table_site

TABLE = "console_sessions"


@dataclass(frozen=True)
class StoredSession:
    token_digest: str  # hex SHA-256 of the api token that signed in
    created_ms: int
    seen_ms: int  # the last request that used it (refreshed coarsely, see the console)


class SessionTable:
    """The same SQL on both backends (`TableSite`)."""

    def __init__(self, site: TableSite) -> None:
        self._datastore = site.datastore
        self._table = site.table
        self._ph = site.ph

    def create_table(self) -> None:
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} (id_hash TEXT PRIMARY KEY, "
                "token_digest TEXT NOT NULL, created_ms BIGINT NOT NULL, seen_ms BIGINT NOT NULL)"
            )
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_by_seen ON {self._table} (seen_ms)")

    def add(self, id_hash: str, token_digest: str, now_ms: int) -> None:
        p = self._ph
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"INSERT INTO {self._table} (id_hash, token_digest, created_ms, seen_ms) "
                f"VALUES ({p}, {p}, {p}, {p})",
                [id_hash, token_digest, now_ms, now_ms],
            )

    def get(self, id_hash: str) -> StoredSession | None:
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT token_digest, created_ms, seen_ms FROM {self._table} "
                f"WHERE id_hash = {self._ph}",
                [id_hash],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        return StoredSession(str(row["token_digest"]), int(row["created_ms"]), int(row["seen_ms"]))

    def touch(self, id_hash: str, now_ms: int) -> None:
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"UPDATE {self._table} SET seen_ms = {self._ph} WHERE id_hash = {self._ph}",
                [now_ms, id_hash],
            )

    def delete(self, id_hash: str) -> None:
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(f"DELETE FROM {self._table} WHERE id_hash = {self._ph}", [id_hash])

    def purge(self, seen_before_ms: int, created_before_ms: int) -> None:
        """Deletes the sessions idle since `seen_before_ms` or begun before
        `created_before_ms`."""
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"DELETE FROM {self._table} WHERE seen_ms < {self._ph} OR created_ms < {self._ph}",
                [seen_before_ms, created_before_ms],
            )


def open_session_table(factory: InfrastructureFactory[Any]) -> SessionTable:
    """The session table on the datastore of the event store behind `factory`, created if
    missing (call it under `schema_lock`, as every creator of tables does)."""
    table = SessionTable(table_site(factory, TABLE))
    table.create_table()
    return table
