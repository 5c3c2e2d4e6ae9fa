"""The scheduler's timers, stored beside the event store with its tracking position.

One row per instance with something pending: its timer document (projections/timers.py) and
`due_ms`, when its earliest timer is due (NULL while paused or when every timer has fired),
indexed so that the due rows are found without reading the others. Documents and position are
written in one transaction, as the views' are: after a crash the table is exactly as far as
its position says. The same class works on both backends, mixed into each backend's view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    def due(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """(key, stored text) of the documents with a timer due at `now_ms`, earliest first:
        undecoded, so that one unreadable document is the scheduler's to park, not a failed
        read of every due timer; and `mark_fired` compares against exactly what was read."""
        sql = (
            f"SELECT key, doc FROM {self.table} WHERE due_ms <= {self.ph} "
            f"ORDER BY due_ms LIMIT {self.ph}"
        )
        with self.transaction(commit=False) as cursor:
            cursor.execute(sql, [now_ms, limit])
            return [(row["key"], row["doc"]) for row in cursor.fetchall()]

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The documents of `keys`, as stored: timer documents keep no item rows beside them
        (the views' `get_many` reads a rows table, which the timer table does not have)."""
        return self.get_readable(keys)[0]

    def get_readable(self, keys: Sequence[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The documents of `keys` that decode, and the keys of those that do not (the fold
        starts them afresh, rather than fail on them for ever)."""
        if not keys:
            return {}, []
        marks = ", ".join([self.ph] * len(keys))
        with self.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT key, doc FROM {self.table} WHERE key IN ({marks})", list(keys))
            rows = cursor.fetchall()
        docs: dict[str, dict[str, Any]] = {}
        unreadable = []
        for row in rows:
            try:
                doc = _decode(row["doc"])
            except msgspec.DecodeError:
                doc = None
            if isinstance(doc, dict):
                docs[row["key"]] = doc
            else:
                unreadable.append(row["key"])
        return docs, unreadable

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
        self, marks: Mapping[str, tuple[str, int | None, dict[str, Any] | None]]
    ) -> None:
        """key -> (stored text as read by `due`, new due_ms, new document, or None to keep
        it): each row is updated only if it still holds what was read, so a scheduler never
        overwrites timers another one armed or cancelled since (a lost mark only fires a
        timer again, as `duplicate`). A kept document with no due_ms is a parked row."""
        rows = [
            [due, old if new is None else _encode(new).decode(), key, old]
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
