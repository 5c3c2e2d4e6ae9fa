"""The scheduler's timers, stored beside the event store with its tracking position.

One row per instance with something pending: its timer document (projections/timers.py) and
`due_ms`, when its earliest timer is due (NULL while paused or when every timer has fired),
indexed so that the due rows are found without reading the others. Documents and position are
written in one transaction, as the views' are: after a crash the table is exactly as far as
its position says. The same class works on both backends, mixed into each backend's view.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from eventsourcing.persistence import InfrastructureFactory, Tracking

from services.store.document_view import CursorT, DocumentView, ViewMoved

_encode = msgspec.json.encode
_decode = msgspec.json.decode

Changes = Mapping[str, tuple[int | None, dict[str, Any]] | None]  # key -> (due_ms, doc) or gone


class TimerTable(DocumentView[CursorT]):
    @property
    def table(self) -> str:
        return f"timers_{self.view_name}"

    def view_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            "(key TEXT PRIMARY KEY, due_ms BIGINT, doc TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {self.table}_by_due ON {self.table} (due_ms)",
        ]

    def due(self, now_ms: int, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The documents with a timer due at `now_ms`, earliest first."""
        sql = (
            f"SELECT key, doc FROM {self.table} WHERE due_ms <= {self.ph} "
            f"ORDER BY due_ms LIMIT {self.ph}"
        )
        with self.transaction(commit=False) as cursor:
            cursor.execute(sql, [now_ms, limit])
            return [(row["key"], _decode(row["doc"])) for row in cursor.fetchall()]

    def summary(self) -> tuple[int, int | None]:
        """How many instances have a timer pending, and when the earliest is due."""
        sql = f"SELECT COUNT(due_ms) AS n, MIN(due_ms) AS first FROM {self.table}"
        with self.transaction(commit=False) as cursor:
            cursor.execute(sql)
            row = cursor.fetchone()
            return int(row["n"] or 0), None if row["first"] is None else int(row["first"])

    def apply_changes(
        self, changes: Changes, tracking: Tracking | None = None, expected: int | None = None
    ) -> None:
        """Writes `changes`; with `tracking`, records it too, if the table is still at
        `expected` (else ViewMoved: another writer got there first)."""
        with self.transaction(commit=True) as cursor:
            self.begin_writing(cursor)
            if tracking is not None:
                current = self._position_in(cursor)
                if current != expected:
                    raise ViewMoved(f"timers {self.view_name} are at {current}, not {expected}")
            gone = [[key] for key, change in changes.items() if change is None]
            kept = [
                [key, change[0], _encode(change[1]).decode()]
                for key, change in changes.items()
                if change is not None
            ]
            if gone:
                cursor.executemany(f"DELETE FROM {self.table} WHERE key = {self.ph}", gone)
            if kept:
                cursor.executemany(
                    f"INSERT INTO {self.table} (key, due_ms, doc) VALUES "
                    f"({self.ph}, {self.ph}, {self.ph}) ON CONFLICT (key) DO UPDATE SET "
                    "due_ms = excluded.due_ms, doc = excluded.doc",
                    kept,
                )
            if tracking is not None:
                self.record_position(cursor, tracking)

    def mark_fired(
        self, marks: Mapping[str, tuple[dict[str, Any], int | None, dict[str, Any]]]
    ) -> None:
        """key -> (document as read, new due_ms, new document): each row is updated only if
        it still holds the document as read, so a scheduler never overwrites timers another
        one armed or cancelled since (a lost mark only fires a timer again, as `duplicate`)."""
        rows = [
            [due, _encode(new).decode(), key, _encode(old).decode()]
            for key, (old, due, new) in marks.items()
        ]
        with self.transaction(commit=True) as cursor:
            cursor.executemany(
                f"UPDATE {self.table} SET due_ms = {self.ph}, doc = {self.ph} "
                f"WHERE key = {self.ph} AND doc = {self.ph}",
                rows,
            )


def open_timer_table(factory: InfrastructureFactory[Any], name: str) -> TimerTable[Any]:
    """The timer table `name` on the datastore of the event store behind `factory`."""
    from services.store import postgres_views, sqlite_views

    base: type[DocumentView[Any]]
    if isinstance(factory, postgres_views.PostgresFactory):
        base = postgres_views.PostgresDocumentView
    elif isinstance(factory, sqlite_views.SQLiteFactory):
        base = sqlite_views.SQLiteDocumentView
    else:
        raise TypeError(f"no timer table for the event store of {type(factory).__name__}")
    table_class = type(f"TimerTable_{name}", (TimerTable, base), {"view_name": name})
    table = factory.tracking_recorder(table_class)
    assert isinstance(table, TimerTable)  # the library's return type is its base class
    return table
