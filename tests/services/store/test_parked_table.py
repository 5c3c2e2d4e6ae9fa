"""The parked items' table on a real store (SQLite and PostgreSQL): each item once, counted per
follower, readable by any process that opens the store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.bootstrap import Store, open_store
from services.settings import Settings
from services.store.parked_table import LATEST, REASON_CHARS, parked

T0 = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_an_item_parked_twice_is_recorded_and_reported_new_once(store: Store) -> None:
    item = f"notification {uuid.uuid4().int % 10**9}"
    first = parked("relay", item, "ValueError", "bad", T0)

    assert store.parked.park([first]) == [first]
    again = parked("relay", item, "ValueError", "bad again", T0 + timedelta(seconds=1))
    assert store.parked.park([again]) == []

    assert store.parked.items("relay") == [first]


def test_the_summary_counts_per_follower_and_lists_the_latest_without_reasons(
    store: Store,
) -> None:
    items = [
        parked("scheduler", f"timer acc/wf/i{n} sleep", "ValidationError", "secret?", T0)
        for n in range(LATEST + 2)
    ]
    store.parked.park([*items, parked("relay", "notification 7", "TypeError", "x", T0)])

    summary = store.parked.summary()

    assert summary["by_follower"] == {"scheduler": LATEST + 2, "relay": 1}
    assert summary["total"] == LATEST + 3
    assert len(summary["latest"]) == LATEST
    assert all("reason" not in one and "secret?" not in str(one) for one in summary["latest"])


def test_another_process_opening_the_store_sees_what_was_parked(store_url: str) -> None:
    settings = Settings(store=store_url)
    writer, reader = open_store(settings), open_store(settings)
    try:
        writer.parked.park([parked("projections", "notification 1 in v", "KeyError", "k", T0)])
        assert reader.parked.summary()["by_follower"] == {"projections": 1}
    finally:
        writer.app.close()
        reader.app.close()


def test_a_long_reason_is_cut_and_kept_on_one_line(store: Store) -> None:
    one = parked("relay", "notification 9", "ValueError", "line\n" * 1000, T0)
    store.parked.park([one])
    [stored] = store.parked.items()
    assert "\n" not in stored.reason and len(stored.reason) < REASON_CHARS + 40
