"""Crypto-shredding: every instance's personal content is stored encrypted with a key of its own.

An event store keeps everything forever, so deleting an instance cannot remove its events;
instead each instance gets a random data key, and the fields `contracts.erasure` names are
stored sealed with it (AES-GCM, `cryptography`). Deleting the instance destroys the key: the
history stays and folds, its content reads back as `ERASED`. Data keys are stored wrapped by a
key-encryption key (KEK, a setting) in a table beside the events (`services.store.key_table`),
so a copy of the database alone reads nothing either.

The mapper does the sealing, so the aggregate, the folds and the handlers never see it.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from contracts.erasure import ERASED, SEALED_FIELDS, UNREADABLE
from services.application.kek_checks import kek_check, kek_id, matching, mismatch

log = logging.getLogger(__name__)

# A sealed value in a stored event: NUL, which no client text may hold (`contracts.text`),
# then base64 of nonce + ciphertext. No client value can pass for one.
SEALED_PREFIX = "\x00sealed:"
NONCE_BYTES = 12
REPORTED_UNREADABLE_MAX = 10_000


class KeyStore(Protocol):
    """Where wrapped data keys live (the port; SQL in `services.store.key_table`)."""

    def fetch(self, ids: Collection[UUID]) -> dict[UUID, bytes]:
        """The wrapped keys of those of `ids` that have one."""

    def add(self, wrapped: Mapping[UUID, bytes]) -> dict[UUID, bytes]:
        """Stores the keys of ids that have none; returns the stored key of every id given
        (another writer's, if it stored one first)."""

    def destroy(self, ids: Collection[UUID]) -> None:
        """Removes the keys for good, leaving no readable copy in the database's files."""

    def scan(self, after: UUID | None, limit: int) -> list[tuple[UUID, bytes]]:
        """Up to `limit` wrapped keys, in id order, after `after` (rotation walks them all)."""

    def replace(self, wrapped: Mapping[UUID, bytes]) -> None:
        """Overwrites the wrapped form of existing keys (rotation); absent ids stay absent."""

    def checks(self) -> dict[str, bytes]:
        """The check value of each KEK that wraps keys here, by KEK id (`kek_checks`)."""

    def add_check(self, kek_id: str, check: bytes) -> None:
        """Records a KEK's check value; one already recorded stays."""

    def keep_checks(self, kek_ids: Collection[str]) -> None:
        """Forgets the check values of every other KEK (a rewrap retired them)."""


class MemoryKeyStore:
    """For applications on the in-memory event store (unit tests)."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes] = {}
        self._checks: dict[str, bytes] = {}

    def fetch(self, ids: Collection[UUID]) -> dict[UUID, bytes]:
        return {i: self._keys[i] for i in ids if i in self._keys}

    def add(self, wrapped: Mapping[UUID, bytes]) -> dict[UUID, bytes]:
        for aggregate_id, key in wrapped.items():
            self._keys.setdefault(aggregate_id, key)
        return self.fetch(list(wrapped))

    def destroy(self, ids: Collection[UUID]) -> None:
        for aggregate_id in ids:
            self._keys.pop(aggregate_id, None)

    def scan(self, after: UUID | None, limit: int) -> list[tuple[UUID, bytes]]:
        ids = sorted(i for i in self._keys if after is None or i > after)[:limit]
        return [(i, self._keys[i]) for i in ids]

    def replace(self, wrapped: Mapping[UUID, bytes]) -> None:
        for aggregate_id, key in wrapped.items():
            if aggregate_id in self._keys:
                self._keys[aggregate_id] = key

    def checks(self) -> dict[str, bytes]:
        return dict(self._checks)

    def add_check(self, kek_id: str, check: bytes) -> None:
        self._checks.setdefault(kek_id, check)

    def keep_checks(self, kek_ids: Collection[str]) -> None:
        self._checks = {i: c for i, c in self._checks.items() if i in kek_ids}


class KeyRing:
    """Data keys by aggregate id: created on first need, unwrapped once, cached (LRU).

    `keks` are key-encryption keys, newest first: new keys are wrapped with the first, and any
    of them may unwrap (rotation: a new KEK first, the old ones after it; docs/erasure.md).
    Thread-safe: the roles of one process call the application from several threads.
    """

    def __init__(self, store: KeyStore, keks: Sequence[bytes], cache_size: int = 10_000) -> None:
        if not keks:
            raise ValueError("at least one key-encryption key is needed")
        self.store = store
        self._raw_keks = list(keks)
        self._keks = [AESGCM(k) for k in keks]
        self._cache: OrderedDict[UUID, AESGCM] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def cipher(self, aggregate_id: UUID, *, create: bool) -> AESGCM | None:
        """The aggregate's data key; None if it has none (never had, or destroyed) and not
        `create`."""
        with self._lock:
            cached = self._cache.get(aggregate_id)
            if cached is not None:
                self._cache.move_to_end(aggregate_id)
                return cached
        if create:
            self.prepare([aggregate_id])
            stored = True
        else:
            found = self.store.fetch([aggregate_id])
            self._load(found)
            stored = aggregate_id in found
        with self._lock:
            cipher = self._cache.get(aggregate_id)
        if cipher is None and stored:
            raise _unknown(aggregate_id)
        return cipher

    def prepare(self, ids: Iterable[UUID]) -> None:
        """Makes sure each of `ids` has a key, in one read and at most one write: a batch of
        commands asks for all its new instances at once, not one round trip each."""
        with self._lock:
            missing = [i for i in dict.fromkeys(ids) if i not in self._cache]
        if not missing:
            return
        found = self.store.fetch(missing)
        new = {i: self._wrap(i, AESGCM.generate_key(256)) for i in missing if i not in found}
        if new:
            found.update(self.store.add(new))
        self._load(found)

    def load(self, ids: Iterable[UUID]) -> None:
        """Reads the keys of those of `ids` not cached, in one read (a follower's batch at
        once: otherwise each new instance's first event costs a read of its own)."""
        with self._lock:
            missing = [i for i in dict.fromkeys(ids) if i not in self._cache]
        if missing:
            self._load(self.store.fetch(missing))

    def destroy(self, ids: Collection[UUID]) -> None:
        self.store.destroy(ids)
        self.forget(ids)

    def verify(self) -> None:
        """At start, before anything is sealed: raises KeyEncryptionKeyMismatch unless one of
        the KEKs is one the store's keys were wrapped with, then records the newest KEK's check
        value (it wraps the keys made from now on). One small read; nothing is unwrapped but,
        once, a key of a store written before check values existed."""
        known = self.store.checks()
        if known:
            found = matching(known, self._raw_keks)
            if not found:
                raise mismatch(list(known), self._raw_keks)
            if unlisted := sorted(set(known) - set(found)):
                log.warning(
                    "the store has data keys wrapped with KEK ids %s, which "
                    "FLOWLEDGER_KEY_ENCRYPTION_KEYS lacks: their instances cannot be read "
                    "(run `flowledger keys rewrap` before dropping a KEK)",
                    ", ".join(unlisted),
                )
        else:
            self._check_unrecorded()
        if kek_id(self._raw_keks[0]) not in known:  # a write only when there is news
            self._record_check(0)

    def rewrap_all(self, batch: int = 500) -> int:
        """Wraps every stored data key with the newest KEK, so older KEKs can be retired;
        returns how many. Safe beside a running service: a data key itself never changes.
        Afterwards the store knows the newest KEK alone, so only it passes `verify`."""
        self._record_check(0)
        done, after = 0, None
        while page := self.store.scan(after, batch):
            self.store.replace({i: self._wrap(i, self._unwrap(i, w)) for i, w in page})
            done, after = done + len(page), page[-1][0]
        self.store.keep_checks([kek_id(self._raw_keks[0])])
        return done

    def forget(self, ids: Iterable[UUID]) -> None:
        with self._lock:
            for aggregate_id in ids:
                self._cache.pop(aggregate_id, None)

    def _check_unrecorded(self) -> None:
        """A store whose keys predate check values: the KEK that opens one of them is
        recorded; if none does, the store is refused like any other mismatch."""
        sample = self.store.scan(None, 1)
        if not sample:
            return  # a new store: the newest KEK is recorded next
        opened = self._open_with(*sample[0])
        if opened is None:
            raise mismatch([], self._raw_keks)
        self._record_check(opened[0])

    def _record_check(self, index: int) -> None:
        kek = self._raw_keks[index]
        self.store.add_check(kek_id(kek), kek_check(kek))

    def _load(self, wrapped: Mapping[UUID, bytes]) -> None:
        """Caches the keys that a configured KEK opens; the others stay out, so that only the
        events of their own instances fail (`cipher`), not a whole batch of others'."""
        keys = {
            i: AESGCM(opened[1])
            for i, w in wrapped.items()
            if (opened := self._open_with(i, w)) is not None
        }
        with self._lock:
            for aggregate_id, cipher in keys.items():
                self._cache[aggregate_id] = cipher
                self._cache.move_to_end(aggregate_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _wrap(self, aggregate_id: UUID, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._keks[0].encrypt(nonce, key, aggregate_id.bytes)

    def _unwrap(self, aggregate_id: UUID, wrapped: bytes) -> bytes:
        opened = self._open_with(aggregate_id, wrapped)
        if opened is None:
            raise _unknown(aggregate_id)
        return opened[1]

    def _open_with(self, aggregate_id: UUID, wrapped: bytes) -> tuple[int, bytes] | None:
        """The index of the KEK that opens `wrapped`, and the data key; None if none does."""
        nonce, body = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        for index, kek in enumerate(self._keks):
            try:
                return index, kek.decrypt(nonce, body, aggregate_id.bytes)
            except InvalidTag:
                continue
        return None


class UnknownKeyEncryptionKey(Exception):
    """A data key wrapped by a KEK that is not configured: refusing beats reading `ERASED`."""


def _unknown(aggregate_id: UUID) -> UnknownKeyEncryptionKey:
    return UnknownKeyEncryptionKey(
        f"no configured key-encryption key opens the data key of {aggregate_id}: "
        "FLOWLEDGER_KEY_ENCRYPTION_KEYS must list the key it was wrapped with"
    )


class SealingMapper(Mapper[UUID]):
    """The library's mapper, sealing and opening the fields `SEALED_FIELDS` names."""

    keyring: KeyRing | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Instances `to_followed_event` reported unreadable (bounded: a log line each).
        self._reported: OrderedDict[UUID, None] = OrderedDict()

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        paths = SEALED_FIELDS.get(type(domain_event).__name__)
        if not paths:
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        originator_id: UUID = state.pop("originator_id")
        version: int = state.pop("originator_version")
        cipher = self._keys().cipher(originator_id, create=True)
        if cipher is None:
            raise RuntimeError(f"no data key could be made for {originator_id}")
        for path in paths:
            _replace(state, path, lambda v, p=path: _seal(cipher, originator_id, version, p, v))
        stored_state = self.transcoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(originator_id, version, get_topic(type(domain_event)), stored_state)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """Raises UnknownKeyEncryptionKey for an instance whose data key no KEK opens."""
        return self._decode(stored_event, followed=False)

    def to_followed_event(self, stored_event: StoredEvent) -> Any:
        """For the notification log's followers: an event whose data key no configured KEK
        opens has its sealed fields read as `UNREADABLE` (reported once per instance), so one
        such instance does not stop the relay, the projections and the scheduler for every
        other. Reads of the instance itself (history, `as_of`, commands) still refuse."""
        return self._decode(stored_event, followed=True)

    def _decode(self, stored_event: StoredEvent, *, followed: bool) -> Any:
        domain_event = super().to_domain_event(stored_event)
        paths = SEALED_FIELDS.get(type(domain_event).__name__)
        if paths:
            state = domain_event.__dict__  # frozen dataclass: filled in place, as the library does
            originator_id, version = domain_event.originator_id, domain_event.originator_version
            missing = ERASED
            try:
                cipher = self._keys().cipher(originator_id, create=False)
            except UnknownKeyEncryptionKey:
                if not followed:
                    raise
                cipher, missing = None, UNREADABLE
                self._report_unreadable(originator_id)
            for path in paths:
                _replace(
                    state,
                    path,
                    lambda v, p=path: _open(cipher, originator_id, version, p, v, missing),
                )
        return domain_event

    def _report_unreadable(self, originator_id: UUID) -> None:
        if originator_id in self._reported:
            return
        self._reported[originator_id] = None
        if len(self._reported) > REPORTED_UNREADABLE_MAX:
            self._reported.popitem(last=False)
        log.error(
            "no configured key-encryption key opens the data key of %s: its events are "
            "followed with their content %s. Configure the KEK it was wrapped with, then "
            "`flowledger projections rebuild` restores the views (docs/erasure.md, Keys)",
            originator_id,
            UNREADABLE,
        )

    def prefetch_keys(self, stored_events: Iterable[StoredEvent]) -> None:
        """Loads, in one read, the data keys `to_domain_event` will need for these events:
        followers decode batches of events of instances another process created, whose keys
        this process has not seen (issue 17: 40% of a follower's time was one key read per
        event)."""
        if self.keyring is None:
            return
        self.keyring.load(
            e.originator_id
            for e in stored_events
            if isinstance(e.originator_id, UUID) and _class_name(e.topic) in SEALED_FIELDS
        )

    def _keys(self) -> KeyRing:
        if self.keyring is None:
            raise RuntimeError("no key ring: the composition root must call use_key_store()")
        return self.keyring


def _class_name(topic: str) -> str:
    """The class name in a stored topic ("module:Outer.Name"), the key of `SEALED_FIELDS`."""
    return topic.rpartition(":")[2].rpartition(".")[2]


def _replace(state: dict[str, Any], path: tuple[str, ...], change: Any) -> None:
    """Applies `change` to the value at `path`, if there is one (None stays None)."""
    if len(path) == 1:
        if state.get(path[0]) is not None:
            state[path[0]] = change(state[path[0]])
        return
    outer = state.get(path[0])
    if isinstance(outer, dict) and outer.get(path[1]) is not None:
        state[path[0]] = {**outer, path[1]: change(outer[path[1]])}


def _aad(originator_id: UUID, version: int, path: tuple[str, ...]) -> bytes:
    # Binds a sealed value to its place: it cannot be moved to another event or field.
    return f"{originator_id}:{version}:{'.'.join(path)}".encode()


def _seal(cipher: AESGCM, originator_id: UUID, version: int, path: tuple[str, ...], v: Any) -> str:
    nonce = os.urandom(NONCE_BYTES)
    body = cipher.encrypt(nonce, msgspec.json.encode(v), _aad(originator_id, version, path))
    return SEALED_PREFIX + base64.b64encode(nonce + body).decode()


def _open(
    cipher: AESGCM | None,
    originator_id: UUID,
    version: int,
    path: tuple[str, ...],
    v: Any,
    missing: str = ERASED,
) -> Any:
    """The value in clear; `missing` (what stands in for it) when there is no key."""
    if not (isinstance(v, str) and v.startswith(SEALED_PREFIX)):
        return v  # stored before sealing, or not sealed
    if cipher is None:
        return missing
    raw = base64.b64decode(v[len(SEALED_PREFIX) :])
    nonce, body = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
    return msgspec.json.decode(cipher.decrypt(nonce, body, _aad(originator_id, version, path)))
