"""Every process that opens the store checks at its start that its key-encryption keys open
the store's data keys (services/application/kek_checks.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import uuid

import pytest

from services.application.app import FlowledgerApplication
from services.application.kek_checks import KeyEncryptionKeyMismatch, kek_check, kek_id
from services.bootstrap import build_application
from services.cli import main
from services.settings import Settings
from services.store.key_table import open_key_table

KEK_A, KEK_B = b"a" * 32, b"b" * 32


def _keys(*keks: bytes) -> str:
    return ",".join(base64.b64encode(k).decode() for k in keks)


def _open(store_url: str, *keks: bytes) -> FlowledgerApplication:
    return build_application(Settings(store=store_url, key_encryption_keys=_keys(*keks)))


def test_a_store_written_under_one_kek_refuses_a_process_that_has_only_another(
    store_url: str,
) -> None:
    written = _open(store_url, KEK_A)
    written.keyring.prepare([uuid.uuid4()])  # a store holding a data key wrapped with A
    written.close()
    with pytest.raises(KeyEncryptionKeyMismatch) as refused:
        _open(store_url, KEK_B)

    message = str(refused.value)
    assert f"the store knows KEK ids {kek_id(KEK_A)}" in message
    assert f"FLOWLEDGER_KEY_ENCRYPTION_KEYS has {kek_id(KEK_B)}" in message
    assert _keys(KEK_A) not in message and _keys(KEK_B) not in message  # never key material
    still = _open(store_url, KEK_A)  # the refused start recorded nothing
    assert set(open_key_table(still.factory).checks()) == {kek_id(KEK_A)}
    still.close()


def test_a_fresh_store_records_the_check_value_of_the_newest_kek_only(store_url: str) -> None:
    app = _open(store_url, KEK_B, KEK_A)
    assert open_key_table(app.factory).checks() == {kek_id(KEK_B): kek_check(KEK_B)}
    app.close()


def test_a_store_written_before_check_values_records_the_kek_that_opens_its_keys(
    store_url: str,
) -> None:
    legacy = _open(store_url, KEK_A)
    legacy.keyring.prepare([uuid.uuid4()])  # a data key, wrapped with A
    open_key_table(legacy.factory).keep_checks([])  # as a store from before check values
    legacy.close()

    with pytest.raises(KeyEncryptionKeyMismatch, match="none recorded"):
        _open(store_url, KEK_B)
    _open(store_url, KEK_B, KEK_A).close()  # A opens its keys: A recorded, and B, the newest
    with pytest.raises(KeyEncryptionKeyMismatch):
        _open(store_url, KEK_A.replace(b"a", b"c"))


def test_flowledger_keys_check_names_both_sides_and_exits_non_zero_on_a_mismatch(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWLEDGER_STORE", store_url)
    monkeypatch.setenv("FLOWLEDGER_KEY_ENCRYPTION_KEYS", _keys(KEK_A))
    assert main(["keys", "check"]) == 0
    assert kek_id(KEK_A) in capsys.readouterr().out

    monkeypatch.setenv("FLOWLEDGER_KEY_ENCRYPTION_KEYS", _keys(KEK_B))
    assert main(["keys", "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowledger keys: none of the configured key-encryption keys")
    assert kek_id(KEK_A) in err and kek_id(KEK_B) in err
