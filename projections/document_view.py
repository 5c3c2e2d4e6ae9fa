"""A read model stored as JSON documents beside the event store, with its tracking position.

Each view subclasses the store's own tracking recorder (SQLite or PostgreSQL), so its rows and
the position of the last event it applied are written in one transaction: after a crash the
view is exactly as far as its position says (exactly-once application of every event).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from eventsourcing.persistence import InfrastructureFactory, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL


@dataclass
class Row:
    """One document and the columns a view is queried by."""

    key: str
    account_id: str
    workflow_name: str
    status: str
    created_at: str
    doc: dict[str, Any]


_encode = msgspec.json.encode
_decode = msgspec.json.decode


class DocumentView(TrackingRecorder):
    """The SQL both backends share; `ph` is the driver's placeholder (`?` or `%s`)."""

    view_name: ClassVar[str] = "view"
    ph: ClassVar[str] = "?"
    tracking_table: str = "tracking"

    @property
    def table(self) -> str:
        return f"view_{self.view_name}"

    def view_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "key TEXT PRIMARY KEY, account_id TEXT NOT NULL, workflow_name TEXT NOT NULL, "
            "status TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {self.table}_by_account "
            f"ON {self.table} (account_id, workflow_name, created_at)",
        ]

    def position(self) -> int | None:
        return self.max_tracking_id(self.view_name)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        marks = ", ".join([self.ph] * len(keys))
        sql = f"SELECT key, doc FROM {self.table} WHERE key IN ({marks})"
        with self.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            cursor.execute(sql, list(keys))
            return {row["key"]: _decode(row["doc"]) for row in cursor.fetchall()}

    def query(
        self,
        account_id: str,
        workflow_name: str | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        sql = f"SELECT doc FROM {self.table} WHERE account_id = {self.ph}"
        params: list[Any] = [account_id]
        if workflow_name is not None:
            sql += f" AND workflow_name = {self.ph}"
            params.append(workflow_name)
        sql += f" ORDER BY created_at, key LIMIT {self.ph} OFFSET {self.ph}"
        params += [limit, offset]
        with self.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            cursor.execute(sql, params)
            return [_decode(row["doc"]) for row in cursor.fetchall()]

    def write(self, rows: Iterable[Row], tracking: Tracking) -> None:
        upsert = (
            f"INSERT INTO {self.table} (key, account_id, workflow_name, status, created_at, doc) "
            f"VALUES ({', '.join([self.ph] * 6)}) ON CONFLICT (key) DO UPDATE SET "
            "status = excluded.status, doc = excluded.doc"
        )
        with self.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
            for row in rows:
                cursor.execute(
                    upsert,
                    [
                        row.key,
                        row.account_id,
                        row.workflow_name,
                        row.status,
                        row.created_at,
                        _encode(row.doc).decode(),
                    ],
                )
            self._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]

    def clear(self) -> None:
        """Empties the view and forgets its position, so it can be rebuilt from the start."""
        with self.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
            cursor.execute(f"DELETE FROM {self.table}")
            cursor.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name = {self.ph}",
                [self.view_name],
            )


class SQLiteDocumentView(DocumentView, SQLiteTrackingRecorder):
    ph = "?"

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + self.view_statements()


class PostgresDocumentView(DocumentView, PostgresTrackingRecorder):
    ph = "%s"

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.tracking_table = self.tracking_table_name
        self.sql_create_statements.extend(SQL(s) for s in self.view_statements())  # type: ignore[arg-type]


def open_view(factory: InfrastructureFactory[Any], view_name: str) -> DocumentView:
    """The view named `view_name` on the same datastore as the event store behind `factory`."""
    base: type[DocumentView] = (
        PostgresDocumentView
        if isinstance(factory.tracking_recorder_class, type)
        and issubclass(factory.tracking_recorder_class, PostgresTrackingRecorder)
        else SQLiteDocumentView
    )
    view_class = type(f"{base.__name__}_{view_name}", (base,), {"view_name": view_name})
    return factory.tracking_recorder(view_class)  # type: ignore[no-any-return]
