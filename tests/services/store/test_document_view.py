"""Document views on both stores, driven directly: the backend chosen from the event store,
filters, paging and counts, positions, and documents whose text holds NUL (which PostgreSQL's
jsonb cannot hold; the HTTP door refuses it now, documents stored earlier may still carry it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from services.bootstrap import build_application
from services.settings import Settings
from services.store.document_view import DocumentView, Query, Row, ViewMoved, open_view
from services.store.postgres_views import PostgresDocumentView
from services.store.sqlite_views import SQLiteDocumentView


@pytest.fixture
def view(store_url: str, new_id: str) -> Iterator[DocumentView]:
    app = build_application(Settings(store=store_url))
    try:
        yield open_view(app.factory, f"docs{new_id}")
    finally:
        app.close()


def _row(key: str, created_at: str, **doc: object) -> Row:
    return Row(key, "acc", "wf", str(doc.get("status", "queued")), created_at, {"id": key, **doc})


def test_the_view_is_on_the_event_stores_backend(store_url: str, view: DocumentView) -> None:
    backend = PostgresDocumentView if store_url.startswith("postgres") else SQLiteDocumentView
    assert isinstance(view, backend)
    assert view.view_name in type(view).__name__


def test_documents_are_found_by_filters_in_pages_with_positions(view: DocumentView) -> None:
    rows = [
        _row("a", "2026-01-01", status="queued", tags=["x", "y"], kind="k1"),
        _row("b", "2026-01-02", status="running", tags=["x"], kind="k2"),
        _row("c", "2026-01-03", status="running", tags=["z\x00"], kind="k3", note="n\x00"),
    ]
    assert view.position() is None
    view.write(rows, Tracking(view.view_name, 3), expected=None)

    def keys(**filters: Any) -> list[str]:
        return [d["id"] for d in view.find(Query(**{"account_id": "acc", **filters}))]

    assert view.position() == 3
    assert view.get("c") == rows[2].doc
    assert set(view.get_many(["a", "c", "zz"])) == {"a", "c"}
    assert keys() == ["a", "b", "c"]
    assert keys(descending=True, limit=2) == ["c", "b"]
    assert keys(after=("2026-01-01", "a")) == ["b", "c"]
    assert keys(statuses=("running",)) == ["b", "c"]
    assert keys(contains={"tags": ("x",)}) == ["a", "b"]
    assert keys(contains={"tags": ("x", "y")}) == ["a"]
    assert keys(equals={"kind": "k1"}) == ["a"]
    assert keys(equals={"kind": "k3"}) == ["c"]  # a document holding NUL is found as any other
    assert keys(created_from="2026-01-02", created_before="2026-01-03") == ["b"]
    assert view.count(Query(account_id="acc", statuses=("running",), limit=1)) == 2
    assert view.status_counts(Query(account_id="acc", limit=1)) == {
        ("wf", "queued"): 1,
        ("wf", "running"): 2,
    }
    assert view.status_counts(Query(account_id="other")) == {}
    assert keys(account_id="other") == []

    with pytest.raises(ViewMoved):
        view.write([_row("d", "2026-01-04")], Tracking(view.view_name, 4), expected=2)
    assert view.get("d") is None

    view.clear()
    assert view.position() is None and keys() == []


def test_field_names_are_never_spliced_from_user_text(view: DocumentView) -> None:
    with pytest.raises(ValueError, match="not a document field name"):
        view.find(Query(account_id="acc", equals={"kind' OR 1=1 --": "x"}))
