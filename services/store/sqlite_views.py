"""Document views on SQLite: the event store's own file, `?` placeholders, JSON1 filters."""

from __future__ import annotations

from contextlib import AbstractContextManager

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteFactory, SQLiteTrackingRecorder

from services.store.document_view import DocumentView, safe_field

__all__ = ["FLOWLEDGER_SQLITE_ID", "SQLiteDocumentView", "SQLiteFactory", "open_sqlite_view"]

FLOWLEDGER_SQLITE_ID = 0x464C4F57  # "FLOW"


class SQLiteDocumentView(DocumentView[SQLiteCursor], SQLiteTrackingRecorder):
    ph = "?"

    def transaction(self, *, commit: bool) -> AbstractContextManager[SQLiteCursor]:
        return self.datastore.transaction(commit=commit)

    def record_position(self, cursor: SQLiteCursor, tracking: Tracking) -> None:
        self._insert_tracking(cursor, tracking)

    def begin_writing(self, cursor: SQLiteCursor) -> None:
        # A deferred SQLite transaction that reads first and then writes fails at once with
        # "database is locked" if another connection committed in between (WAL snapshot).
        # A write statement first takes the lock, waiting for it as long as the lock timeout.
        cursor.execute(f"DELETE FROM {self.table} WHERE 0")
        # Documents hold personal content: an updated or deleted row's old bytes are zeroed,
        # not left in the page's free space (erasure, services/store/key_table.py).
        cursor.execute("PRAGMA secure_delete = ON")

    def json_text(self, field: str) -> str:
        return f"json_extract(doc, '$.{safe_field(field)}')"

    def json_list_contains(self, field: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each(doc, '$.{safe_field(field)}') WHERE value = ?)"

    def construct_create_table_statements(self) -> list[str]:
        # The same trap as in begin_writing: "IF NOT EXISTS" on an existing table only reads.
        # Marking the file as Flowledger's (a header write) takes the write lock first.
        mark = f"PRAGMA application_id = {FLOWLEDGER_SQLITE_ID}"
        return [mark, *super().construct_create_table_statements(), *self.view_statements()]


def open_sqlite_view(factory: SQLiteFactory, name: str) -> SQLiteDocumentView:
    """The view `name` in the SQLite file of `factory`, its table created if missing."""

    class View(SQLiteDocumentView):
        view_name = name

    View.__name__ = View.__qualname__ = f"SQLiteDocumentView_{name}"
    view = factory.tracking_recorder(View)
    assert isinstance(view, SQLiteDocumentView)  # the library's return type is its base class
    return view
