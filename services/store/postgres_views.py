"""Document views on PostgreSQL: `%s` placeholders, filters on a jsonb of the text fields."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresTrackingRecorder
from msgspec.json import encode
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed

from services.store.document_view import DocumentView, Row, safe_field

__all__ = ["PostgresDocumentView", "PostgresFactory", "open_postgres_view"]


class PostgresDocumentView(DocumentView[Cursor[DictRow]], PostgresTrackingRecorder):
    """Filters read `attrs`, a jsonb of the document's top-level text fields, not the document:
    jsonb cannot hold NUL (U+0000), which any JSON a client sends may contain, so casting the
    whole document would let one such document break every filtered list of its account."""

    ph = "%s"

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.tracking_table = self.tracking_table_name
        self.sql_create_statements.extend(Composed([SQL(s)]) for s in self.view_statements())

    def transaction(self, *, commit: bool) -> AbstractContextManager[Cursor[DictRow]]:
        return self.datastore.transaction(commit=commit)

    def record_position(self, cursor: Cursor[DictRow], tracking: Tracking) -> None:
        self._insert_tracking(cursor, tracking)

    def json_text(self, field: str) -> str:
        return f"(attrs ->> '{safe_field(field)}')"

    def json_list_contains(self, field: str) -> str:
        return f"(attrs -> '{safe_field(field)}') @> jsonb_build_array(%s::text)"

    def view_statements(self) -> list[str]:
        # `attrs` is declared with the table: an ALTER TABLE at every start would take an
        # exclusive lock on a view that a running projections process is writing.
        create, *indexes = super().view_statements()
        attrs = ", attrs jsonb NOT NULL DEFAULT '{}')"
        return [create.removesuffix(")") + attrs, *indexes]

    def upsert_statement(self) -> str:
        return (
            f"INSERT INTO {self.table} "
            "(key, account_id, workflow_name, status, created_at, doc, attrs) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (key) DO UPDATE SET "
            "status = excluded.status, doc = excluded.doc, attrs = excluded.attrs"
        )

    def row_values(self, r: Row) -> list[Any]:
        return [*super().row_values(r), encode(_filterable(r.doc)).decode()]


def _filterable(doc: dict[str, Any]) -> dict[str, Any]:
    """The top-level text and list-of-text fields, NUL removed (jsonb cannot store it)."""
    attrs: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, str):
            attrs[name] = value.replace("\x00", "")
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            attrs[name] = [v.replace("\x00", "") for v in value]
    return attrs


def open_postgres_view(factory: PostgresFactory, name: str) -> PostgresDocumentView:
    """The view `name` in the database of `factory`, its table created if missing."""

    class View(PostgresDocumentView):
        view_name = name

    View.__name__ = View.__qualname__ = f"PostgresDocumentView_{name}"
    return factory.tracking_recorder(View)
