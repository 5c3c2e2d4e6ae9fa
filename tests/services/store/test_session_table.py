"""The console's session table on a real SQLite file and a real PostgreSQL database, as two api
replicas share it: each sees what the other wrote and deleted."""

from __future__ import annotations

import secrets

from services.bootstrap import build_application
from services.settings import Settings
from services.store.session_table import StoredSession, open_session_table

T0 = 1_900_000_000_000


def test_a_session_added_by_one_replica_is_read_touched_and_deleted_by_another(
    store_url: str,
) -> None:
    one, other = (
        build_application(Settings(store=store_url)),
        build_application(Settings(store=store_url)),
    )
    mine, theirs = open_session_table(one.factory), open_session_table(other.factory)
    id_hash, digest = secrets.token_hex(32), secrets.token_hex(32)

    assert theirs.get(id_hash) is None
    mine.add(id_hash, digest, T0)
    assert theirs.get(id_hash) == StoredSession(digest, T0, T0)
    theirs.touch(id_hash, T0 + 5_000)
    assert mine.get(id_hash) == StoredSession(digest, T0, T0 + 5_000)
    theirs.delete(id_hash)
    assert mine.get(id_hash) is None
    one.close()
    other.close()


def test_purge_deletes_idle_and_too_old_sessions_only(store_url: str) -> None:
    app = build_application(Settings(store=store_url))
    table = open_session_table(app.factory)
    idle, old, live = (secrets.token_hex(32) for _ in range(3))
    table.add(idle, "d", T0)
    table.add(old, "d", T0 - 100_000)
    table.touch(old, T0 + 50_000)
    table.add(live, "d", T0 + 10_000)

    table.purge(seen_before_ms=T0 + 1, created_before_ms=T0 - 1)
    assert table.get(idle) is None and table.get(old) is None
    assert table.get(live) == StoredSession("d", T0 + 10_000, T0 + 10_000)
    app.close()
