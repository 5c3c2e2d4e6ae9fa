"""Check values: how a process knows, at start, that its key-encryption keys open the store's.

A store keeps, for each KEK that wrapped data keys in it, an id and a check value: HMACs of two
constants under the KEK, never the key. Comparing them costs one small read, and nothing is
unwrapped. A process whose KEKs match none of the store's refuses to start: started, it would
answer reads with errors and wrap the keys of new instances with a KEK the store does not know
(docs/erasure.md, "Keys").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

_ID_LABEL = b"flowledger kek id v1"
_CHECK_LABEL = b"flowledger kek check v1"
_ID_HEX_DIGITS = 16  # enough to tell a deployment's few KEKs apart in a log line


class KeyEncryptionKeyMismatch(Exception):
    """None of the configured KEKs is one the store's data keys were wrapped with."""


def kek_id(kek: bytes) -> str:
    """The KEK's name in the store and in messages: it tells keys apart and reveals nothing."""
    return hmac.new(kek, _ID_LABEL, hashlib.sha256).hexdigest()[:_ID_HEX_DIGITS]


def kek_check(kek: bytes) -> bytes:
    """The value only this KEK yields: proof that a configured key is the recorded one."""
    return hmac.new(kek, _CHECK_LABEL, hashlib.sha256).digest()


def matching(known: Mapping[str, bytes], keks: Sequence[bytes]) -> list[str]:
    """The ids of those of `keks` whose check value the store holds."""
    return [i for k in keks if hmac.compare_digest(known.get(i := kek_id(k), b""), kek_check(k))]


def mismatch(known: Sequence[str], keks: Sequence[bytes]) -> KeyEncryptionKeyMismatch:
    """The refusal, naming the ids on both sides (ids only: a key is never printed)."""
    store_side = ", ".join(sorted(known)) or "none recorded (its data keys predate check values)"
    return KeyEncryptionKeyMismatch(
        "none of the configured key-encryption keys opens this store's data keys: the store "
        f"knows KEK ids {store_side}; FLOWLEDGER_KEY_ENCRYPTION_KEYS has "
        f"{', '.join(kek_id(k) for k in keks)}. Configure the key the store was written with "
        "(newest first; docs/erasure.md, Keys). Not starting: reads would fail and new "
        "instances would be sealed under a key the store does not know"
    )
