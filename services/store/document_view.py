"""A read model stored as JSON documents beside the event store, with its tracking position.

Each view subclasses the store's own tracking recorder (SQLite in `sqlite_views`, PostgreSQL in
`postgres_views`), so its rows and the position of the last event it applied are written in one
transaction: after a crash the view is exactly as far as its position says (exactly-once
application of every event). This module holds what the backends share: the interface, the SQL
written alike on both, and `open_view`, which picks the backend of the event store.

A document's list that grows with the steps is kept as one row per item in the view's rows
table, beside the document (projections/row_window.py): a fold reads and writes a step's row,
never the whole list, and readers get the document with its list assembled from the rows.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import msgspec
from eventsourcing.persistence import InfrastructureFactory, Tracking, TrackingRecorder

from projections.row_window import Item, last_index, loaded, split, whole, without_rows


@dataclass
class Row:
    """One document and the columns a view is queried by."""

    key: str
    account_id: str
    workflow_name: str
    status: str
    created_at: str
    doc: dict[str, Any]
    # A document whose list `row_field` is kept as rows (projections/row_window.py), and the
    # document as it was loaded for folding: only the items that changed since are written.
    row_field: str | None = None
    before: dict[str, Any] | None = None


class ViewMoved(Exception):
    """The view's position changed under a writer (it was rebuilt): re-read and go on."""


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """Which documents of one account, in creation order; field names are the doc's own."""

    account_id: str
    workflow_name: str | None = None
    statuses: tuple[str, ...] = ()
    created_from: str | None = None  # inclusive, projections.timestamps text
    created_before: str | None = None  # exclusive
    equals: dict[str, str] = {}  # top-level doc field == text
    contains: dict[str, tuple[str, ...]] = {}  # top-level doc list holds every value
    descending: bool = False
    after: tuple[str, str] | None = None  # (created_at, key) of the last document seen
    limit: int = 100
    offset: int = 0


class ViewCursor(Protocol):
    """What the shared SQL needs of a driver's cursor (rows read by column name)."""

    def execute(self, query: str, params: Sequence[Any] = ..., /) -> object: ...

    def executemany(self, query: str, params: Iterable[Sequence[Any]], /) -> object: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...


CursorT = TypeVar("CursorT", bound=ViewCursor)


def safe_field(field: str) -> str:
    # Field names are spliced into SQL: only plain identifiers, never user text.
    if not field.replace("_", "").isalnum():
        raise ValueError(f"not a document field name: {field!r}")
    return field


ITEMS_PER_READ = 200
_encode = msgspec.json.encode
_decode = msgspec.json.decode


Stored = tuple[str, dict[str, Any], list[Any]]  # key, summary, items


def _stored(rows: Sequence[Any]) -> list[Stored]:
    """Each document's key, summary and items, from rows of (key, idx, body) grouped by
    document, its summary first (idx -1) and its items in order."""
    groups: list[tuple[str, str, list[str]]] = []
    for row in rows:
        if row["idx"] < 0:
            groups.append((row["key"], row["body"], []))
        elif groups and groups[-1][0] == row["key"]:
            groups[-1][2].append(row["body"])
    # One decode per document, not one per item.
    return [(key, _decode(body), _decode(f"[{','.join(items)}]")) for key, body, items in groups]


class DocumentView(TrackingRecorder, Generic[CursorT]):
    """The SQL both backends share; `ph` is the driver's placeholder (`?` or `%s`)."""

    view_name: ClassVar[str] = "view"
    ph: ClassVar[str] = "?"
    tracking_table: str = "tracking"
    # What this process wrote: the work a write costs, counted rather than timed.
    written_bytes: int = 0
    written_items: int = 0

    # --- what each backend provides ----------------------------------------------------------

    @abstractmethod
    def transaction(self, *, commit: bool) -> AbstractContextManager[CursorT]:
        """A cursor in a transaction of the view's datastore, committed if `commit`."""

    @abstractmethod
    def record_position(self, cursor: CursorT, tracking: Tracking) -> None:
        """Records `tracking` in the caller's transaction (the library's tracking insert)."""

    @abstractmethod
    def json_text(self, field: str) -> str:
        """SQL for the text of the top-level document field `field`."""

    @abstractmethod
    def json_list_contains(self, field: str) -> str:
        """SQL that holds when the top-level list `field` contains the bound value."""

    def begin_writing(self, cursor: CursorT) -> None:
        """Takes the write lock before the first read of a read-then-write transaction."""

    # --- shared ------------------------------------------------------------------------------

    @property
    def table(self) -> str:
        return f"view_{self.view_name}"

    @property
    def rows_table(self) -> str:
        """One row per item of a document's long list (projections/row_window.py)."""
        return f"{self.table}_rows"

    def view_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "key TEXT PRIMARY KEY, account_id TEXT NOT NULL, workflow_name TEXT NOT NULL, "
            "status TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {self.table}_by_account "
            f"ON {self.table} (account_id, workflow_name, created_at)",
            f"CREATE TABLE IF NOT EXISTS {self.rows_table} (key TEXT NOT NULL, "
            "idx INTEGER NOT NULL, item TEXT NOT NULL, PRIMARY KEY (key, idx))",
        ]

    def position(self) -> int | None:
        return self.max_tracking_id(self.view_name)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Whole documents, their lists read from their rows."""
        if not keys:
            return {}
        marks = ", ".join([self.ph] * len(keys))
        # One statement, so a document and its rows come from one snapshot on both stores.
        sql = (
            f"SELECT key, -1 AS idx, doc AS body FROM {self.table} WHERE key IN ({marks}) "
            f"UNION ALL SELECT key, idx, item FROM {self.rows_table} WHERE key IN ({marks}) "
            "ORDER BY key, idx"
        )
        with self.transaction(commit=False) as cursor:
            cursor.execute(sql, [*keys, *keys])
            stored = _stored(cursor.fetchall())
        return {key: whole(summary, items) for key, summary, items in stored}

    def get_for_folding(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Documents as a fold needs them: a list kept as rows holds only its last item (a
        window, projections/row_window.py), so the read costs the same at any length. Only
        the projection writes a view, so its two reads need no common snapshot."""
        if not keys:
            return {}
        marks = ", ".join([self.ph] * len(keys))
        with self.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT key, doc FROM {self.table} WHERE key IN ({marks})", list(keys))
            summaries = {row["key"]: _decode(row["doc"]) for row in cursor.fetchall()}
            wanted = [(k, i) for k, doc in summaries.items() if (i := last_index(doc)) is not None]
            last = self._items_at(cursor, wanted)
        return {key: loaded(summary, last.get(key)) for key, summary in summaries.items()}

    def _items_at(self, cursor: CursorT, wanted: list[tuple[str, int]]) -> dict[str, Any]:
        """The item at one index per document, by primary key."""
        found: dict[str, Any] = {}
        # SQLite refuses an expression deeper than 1,000: a batch's ORs go a chunk at a time.
        for at in range(0, len(wanted), ITEMS_PER_READ):
            chunk = wanted[at : at + ITEMS_PER_READ]
            where = " OR ".join([f"(key = {self.ph} AND idx = {self.ph})"] * len(chunk))
            cursor.execute(
                f"SELECT key, item FROM {self.rows_table} WHERE {where}",
                [value for pair in chunk for value in pair],
            )
            found.update((row["key"], _decode(row["item"])) for row in cursor.fetchall())
        return found

    def find(self, query: Query) -> list[dict[str, Any]]:
        """A page of whole documents, their lists read from their rows in the same statement."""
        page, params = self._page(query)
        order = "DESC" if query.descending else "ASC"
        sql = (
            f"WITH page AS ({page}) "
            "SELECT key, created_at, -1 AS idx, doc AS body FROM page UNION ALL "
            f"SELECT r.key, p.created_at, r.idx, r.item FROM {self.rows_table} r "
            "JOIN page p ON p.key = r.key "
            f"ORDER BY created_at {order}, key {order}, idx"
        )
        with self.transaction(commit=False) as cursor:
            cursor.execute(sql, params)
            stored = _stored(cursor.fetchall())
        return [whole(summary, items) for _, summary, items in stored]

    def find_summaries(self, query: Query) -> list[dict[str, Any]]:
        """A page of documents without the lists kept as rows: for lists of instances, which
        show none of their steps and should not read thousands of them per instance."""
        page, params = self._page(query)
        with self.transaction(commit=False) as cursor:
            cursor.execute(page, params)
            return [without_rows(_decode(row["doc"])) for row in cursor.fetchall()]

    def _page(self, query: Query) -> tuple[str, list[Any]]:
        where, params = self._where(query)
        order = "DESC" if query.descending else "ASC"
        sql = (
            f"SELECT key, created_at, doc FROM {self.table} WHERE {where} "
            f"ORDER BY created_at {order}, key {order} LIMIT {self.ph} OFFSET {self.ph}"
        )
        return sql, [*params, query.limit, query.offset]

    def count(self, query: Query) -> int:
        """How many documents match, ignoring the page (`after`, `limit`, `offset`)."""
        where, params = self._where(msgspec.structs.replace(query, after=None))
        with self.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT COUNT(*) AS n FROM {self.table} WHERE {where}", params)
            return int(cursor.fetchone()["n"])

    def status_counts(self, query: Query) -> dict[tuple[str, str], int]:
        """How many documents match, per (workflow_name, status), ignoring the page: one
        query for the counts of every workflow of an account (the console's overview)."""
        where, params = self._where(msgspec.structs.replace(query, after=None))
        sql = (
            f"SELECT workflow_name, status, COUNT(*) AS n FROM {self.table} WHERE {where} "
            "GROUP BY workflow_name, status"
        )
        with self.transaction(commit=False) as cursor:
            cursor.execute(sql, params)
            return {(r["workflow_name"], r["status"]): int(r["n"]) for r in cursor.fetchall()}

    def _where(self, query: Query) -> tuple[str, list[Any]]:
        ph = self.ph
        clauses, params = [f"account_id = {ph}"], [query.account_id]
        if query.workflow_name is not None:
            clauses.append(f"workflow_name = {ph}")
            params.append(query.workflow_name)
        if query.statuses:
            clauses.append(f"status IN ({', '.join([ph] * len(query.statuses))})")
            params += query.statuses
        if query.created_from is not None:
            clauses.append(f"created_at >= {ph}")
            params.append(query.created_from)
        if query.created_before is not None:
            clauses.append(f"created_at < {ph}")
            params.append(query.created_before)
        for field, value in query.equals.items():
            clauses.append(f"{self.json_text(field)} = {ph}")
            params.append(value)
        for field, values in query.contains.items():
            clauses += [self.json_list_contains(field)] * len(values)
            params += values
        if query.after is not None:
            # Keyset paging: stable under concurrent inserts, unlike offsets.
            op = "<" if query.descending else ">"
            clauses.append(f"(created_at {op} {ph} OR (created_at = {ph} AND key {op} {ph}))")
            params += [query.after[0], query.after[0], query.after[1]]
        return " AND ".join(clauses), params

    def write(
        self,
        rows: Iterable[Row],
        tracking: Tracking,
        expected: int | None,
        gone: Iterable[str] = (),
    ) -> None:
        with self.transaction(commit=True) as cursor:
            self.write_in(cursor, rows, tracking, expected, gone)

    def write_in(
        self,
        cursor: CursorT,
        rows: Iterable[Row],
        tracking: Tracking,
        expected: int | None,
        gone: Iterable[str] = (),
    ) -> None:
        """Upserts `rows`, deletes the documents keyed `gone` (a deleted instance's) and
        records `tracking` in the caller's transaction, if the view is still at `expected`.

        The check makes a concurrent rebuild safe: a writer that read its documents before the
        rebuilt view was swapped in gets `ViewMoved` instead of overwriting newer documents.
        """
        self.begin_writing(cursor)
        current = self._position_in(cursor)
        if current != expected:
            raise ViewMoved(f"view {self.view_name} is at {current}, not {expected}")
        values, items, cuts = [], [], []
        for r in rows:
            summary, changed, cut_at = self._as_stored(r)
            values.append(self.row_values(replace(r, doc=summary)))
            items += [[r.key, index, _encode(item).decode()] for index, item in changed]
            if cut_at is not None:
                cuts.append([r.key, cut_at])
        if values:
            cursor.executemany(self.upsert_statement(), values)
        if cuts:
            # A restart cut the list: its later items go (before the new ones are written).
            where = f"key = {self.ph} AND idx >= {self.ph}"
            cursor.executemany(f"DELETE FROM {self.rows_table} WHERE {where}", cuts)
        if items:
            cursor.executemany(self.item_upsert_statement(), items)
        deleted = [[key] for key in gone]
        if deleted:
            for table in (self.table, self.rows_table):
                cursor.executemany(f"DELETE FROM {table} WHERE key = {self.ph}", deleted)
        self.record_position(cursor, tracking)
        self._count(values, items)

    def _as_stored(self, r: Row) -> tuple[dict[str, Any], list[Item], int | None]:
        """The summary to store, the items to write and where the stored list is cut."""
        if r.row_field is None:
            return r.doc, [], None
        return split(r.doc, r.row_field, r.before)

    def _count(self, values: list[list[Any]], items: list[list[Any]]) -> None:
        doc_column = 5  # row_values: key, account, workflow, status, created, doc, ...
        self.written_bytes += sum(len(v[doc_column]) for v in values)
        self.written_bytes += sum(len(item[2]) for item in items)
        self.written_items += len(items)

    def item_upsert_statement(self) -> str:
        return (
            f"INSERT INTO {self.rows_table} (key, idx, item) VALUES ({self.ph}, {self.ph}, "
            f"{self.ph}) ON CONFLICT (key, idx) DO UPDATE SET item = excluded.item"
        )

    def upsert_statement(self) -> str:
        return (
            f"INSERT INTO {self.table} (key, account_id, workflow_name, status, created_at, doc) "
            f"VALUES ({', '.join([self.ph] * 6)}) ON CONFLICT (key) DO UPDATE SET "
            "status = excluded.status, doc = excluded.doc"
        )

    def row_values(self, r: Row) -> list[Any]:
        return [
            r.key,
            r.account_id,
            r.workflow_name,
            r.status,
            r.created_at,
            _encode(r.doc).decode(),
        ]

    def _position_in(self, cursor: CursorT) -> int | None:
        cursor.execute(
            f"SELECT MAX(notification_id) AS n FROM {self.tracking_table} "
            f"WHERE application_name = {self.ph}",
            [self.view_name],
        )
        row = cursor.fetchone()
        return None if row is None or row["n"] is None else int(row["n"])

    def replace_with(self, rebuilt: DocumentView[CursorT]) -> None:
        """Swaps in a view rebuilt beside this one, documents and position in one transaction."""
        with self.transaction(commit=True) as cursor:
            self.begin_writing(cursor)
            position = rebuilt._position_in(cursor)
            for table, source in (
                (self.table, rebuilt.table),
                (self.rows_table, rebuilt.rows_table),
            ):
                cursor.execute(f"DELETE FROM {table}")
                cursor.execute(f"INSERT INTO {table} SELECT * FROM {source}")
            cursor.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name = {self.ph}",
                [self.view_name],
            )
            if position is not None:
                self.record_position(cursor, Tracking(self.view_name, position))

    def clear(self) -> None:
        """Empties the view and forgets its position, so it can be rebuilt from the start."""
        with self.transaction(commit=True) as cursor:
            cursor.execute(f"DELETE FROM {self.table}")
            cursor.execute(f"DELETE FROM {self.rows_table}")
            cursor.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name = {self.ph}",
                [self.view_name],
            )


def open_view(factory: InfrastructureFactory[Any], view_name: str) -> DocumentView[Any]:
    """The view named `view_name` on the same datastore as the event store behind `factory`."""
    # The backends build on this module, so they are imported here rather than at the top.
    from services.store import postgres_views, sqlite_views

    if isinstance(factory, postgres_views.PostgresFactory):
        return postgres_views.open_postgres_view(factory, view_name)
    if isinstance(factory, sqlite_views.SQLiteFactory):
        return sqlite_views.open_sqlite_view(factory, view_name)
    raise TypeError(f"no document views for the event store of {type(factory).__name__}")
