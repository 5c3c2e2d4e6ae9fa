"""The table of wrapped data keys, on a real SQLite file and a real PostgreSQL database, and the
rotation of the key-encryption key through it (`flowledger keys rewrap`)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from contracts import commands as c
from services.application.kek_checks import KeyEncryptionKeyMismatch, kek_id
from services.bootstrap import build_application
from services.cli import main
from services.settings import Settings
from services.store.key_table import open_key_table

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
OLD, NEW = b"o" * 32, b"n" * 32


def _keys(*keks: bytes) -> str:
    return ",".join(base64.b64encode(k).decode() for k in keks)


def test_keys_are_added_once_scanned_in_order_replaced_and_destroyed(store_url: str) -> None:
    app = build_application(Settings(store=store_url))
    table = open_key_table(app.factory)
    first, second = sorted([uuid.uuid4(), uuid.uuid4()])

    assert table.add({first: b"a", second: b"b"}) == {first: b"a", second: b"b"}
    assert table.add({first: b"late"}) == {first: b"a"}  # the first writer's key stays
    page = [row for row in table.scan(None, 100_000) if row[0] in (first, second)]
    assert page == [(first, b"a"), (second, b"b")]
    assert table.scan(first, 100_000)[0][0] > first

    table.replace({first: b"a2"})
    table.destroy([second])
    assert table.fetch([first, second]) == {first: b"a2"}
    app.close()


def test_after_a_rewrap_the_old_key_encryption_key_can_be_dropped(
    store_url: str, new_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = f"acc{new_id}"
    before = build_application(Settings(store=store_url, key_encryption_keys=_keys(OLD)))
    before.handle(
        [
            c.RegisterWorkflow(command_id=str(uuid.uuid4()), account_id=account, workflow_name="w"),
            c.CreateInstance(
                command_id=str(uuid.uuid4()),
                account_id=account,
                workflow_name="w",
                instance_id="i",
                params={"secret": new_id},
            ),
        ],
        NOW,
    )
    before.close()
    with pytest.raises(KeyEncryptionKeyMismatch):  # the store knows OLD alone: refused at start
        build_application(Settings(store=store_url, key_encryption_keys=_keys(NEW)))

    monkeypatch.setenv("FLOWLEDGER_STORE", store_url)
    monkeypatch.setenv("FLOWLEDGER_KEY_ENCRYPTION_KEYS", _keys(NEW, OLD))
    assert main(["keys", "rewrap"]) == 0

    after = build_application(Settings(store=store_url, key_encryption_keys=_keys(NEW)))
    assert after.get_instance(account, "w", "i").params == {"secret": new_id}
    assert set(open_key_table(after.factory).checks()) == {kek_id(NEW)}  # OLD is retired
    after.close()
    with pytest.raises(KeyEncryptionKeyMismatch):
        build_application(Settings(store=store_url, key_encryption_keys=_keys(OLD)))


def test_check_values_are_kept_per_kek_id_first_writer_wins_and_others_can_be_forgotten(
    store_url: str,
) -> None:
    app = build_application(Settings(store=store_url))
    table = open_key_table(app.factory)
    table.keep_checks([])  # what building the application recorded (the dev KEK's)

    table.add_check("kek-a", b"check a")
    table.add_check("kek-a", b"another")  # a recorded check value is never replaced
    table.add_check("kek-b", b"check b")
    assert table.checks() == {"kek-a": b"check a", "kek-b": b"check b"}

    table.keep_checks(["kek-b"])
    assert table.checks() == {"kek-b": b"check b"}
    app.close()
