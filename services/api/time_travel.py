"""An instance's past, for the api's history routes and the console: its lifecycle events as
history items, and its document at a moment (`?as_of=`) from fold checkpoints, so a late
moment costs what an early one does.

Folding an instance's history from version 1 read and decoded every event of it: 0.9 s at
the end of a 3,000-step instance (12,000 events), 5 ms near its start. The fold here keeps the
document it passes at every `every`-th version (JSON, as the live view stores it) and starts a
later request from the nearest one at or before the moment asked for, reading only the events
after it: at most `every` events whatever the instance's length.

Checkpoints live in this api process only (an LRU bounded in bytes): the first request for an
instance still folds from its start, and builds them on the way. Nothing leaves the process,
so erasure holds: a deleted instance answers 404 before any checkpoint is looked at, and its
checkpoints are dropped then.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from contracts.events import InstanceEvent
from projections import cloudflare_instance as cf
from projections.timestamps import iso
from services.application.history import InstanceHistory

_ENVELOPE = frozenset(
    ("type", "event_id", "account_id", "workflow_name", "instance_id", "version", "occurred_at",
     "command_id")
)  # fmt: skip
InstanceKey = tuple[str, str, str]  # account, workflow, instance
CHECKPOINT_EVERY = 256  # versions between two checkpoints: what a request reads at most
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024  # all instances' checkpoints, in this process
READ_PAGE = 1_000  # events read from the store at a time


@dataclass(frozen=True)
class Checkpoint:
    """The document after the event at `version`; `latest_at`: the latest `occurred_at` of the
    events folded into it (it serves a time T only if none of them occurred after T)."""

    version: int
    latest_at: datetime
    document: bytes


class FoldCheckpoints:
    """Every instance's checkpoints, least recently used dropped first. Thread-safe: the
    folds run in worker threads."""

    def __init__(self, every: int = CHECKPOINT_EVERY, max_bytes: int = MAX_CHECKPOINT_BYTES):
        self.every = every
        self._max_bytes = max_bytes
        self._bytes = 0
        self._by_instance: OrderedDict[InstanceKey, list[Checkpoint]] = OrderedDict()
        self._lock = threading.Lock()

    def nearest(
        self, key: InstanceKey, upto: int | None, until: datetime | None
    ) -> Checkpoint | None:
        """The latest checkpoint at or before version `upto` and time `until` (None: any)."""
        with self._lock:
            found = self._by_instance.get(key, [])
            if found:
                self._by_instance.move_to_end(key)
            usable = (
                c
                for c in reversed(found)
                if (upto is None or c.version <= upto) and (until is None or c.latest_at <= until)
            )
            return next(usable, None)

    def keep(self, key: InstanceKey, checkpoint: Checkpoint) -> None:
        with self._lock:
            kept = self._by_instance.setdefault(key, [])
            if any(c.version == checkpoint.version for c in kept):
                return
            kept.append(checkpoint)
            kept.sort(key=lambda c: c.version)
            self._bytes += len(checkpoint.document)
            self._by_instance.move_to_end(key)
            while self._bytes > self._max_bytes and len(self._by_instance) > 1:
                self._drop(next(iter(self._by_instance)))
            if self._bytes > self._max_bytes:
                self._thin(key)

    def _thin(self, key: InstanceKey) -> None:
        """One instance alone is over the bound: every other checkpoint of it goes (twice the
        events to read from the nearest, half the memory)."""
        kept = self._by_instance[key]
        self._bytes -= sum(len(c.document) for c in kept[0::2])
        self._by_instance[key] = kept[1::2]

    def forget(self, key: InstanceKey) -> None:
        with self._lock:
            if key in self._by_instance:
                self._drop(key)

    def _drop(self, key: InstanceKey) -> None:
        self._bytes -= sum(len(c.document) for c in self._by_instance.pop(key))


def document_at(
    history: InstanceHistory,
    checkpoints: FoldCheckpoints,
    key: InstanceKey,
    upto: int | None,
    until: datetime | None,
) -> dict[str, Any] | None:
    """Blocking: the live view's document after the events with version <= `upto` and
    occurred at or before `until` (the fold stops at the first event after it), as the view
    stores it; None before creation. The caller checked the instance exists."""
    start = checkpoints.nearest(key, upto, until)
    doc: dict[str, Any] | None = None
    latest_at: datetime | None = None
    if start is not None:
        doc, latest_at = msgspec.json.decode(start.document), start.latest_at
    for event in _events_after(history, key, start.version if start else 0, upto):
        if until is not None and event.occurred_at > until:
            break
        doc = cf.apply(doc, event)
        latest_at = event.occurred_at if latest_at is None else max(latest_at, event.occurred_at)
        if doc is not None and event.version % checkpoints.every == 0:
            checkpoints.keep(key, Checkpoint(event.version, latest_at, msgspec.json.encode(doc)))
    # As stored: the view keeps JSON, so the answer is built from exactly the same values.
    return None if doc is None else msgspec.json.decode(msgspec.json.encode(doc))


def _events_after(
    history: InstanceHistory, key: InstanceKey, after: int, upto: int | None
) -> Iterator[InstanceEvent]:
    while True:
        page = history.events(*key, after=after, upto=upto, limit=READ_PAGE)
        yield from page
        if len(page) < READ_PAGE:
            return
        after = page[-1].version


def checkpoints_of(state: Any) -> FoldCheckpoints:
    """The process's fold checkpoints (the api's state, which the console shares), made on
    the first time-travel request."""
    if getattr(state, "fold_checkpoints", None) is None:
        state.fold_checkpoints = FoldCheckpoints()
    checkpoints: FoldCheckpoints = state.fold_checkpoints
    return checkpoints


def history_item(event: InstanceEvent) -> dict[str, Any]:
    data = {
        name: msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value
        for name in event.__struct_fields__
        if name not in _ENVELOPE
        for value in [getattr(event, name)]
    }
    return {
        "version": event.version,
        "type": type(event).__name__,
        "occurred_at": iso(event.occurred_at),
        "command_id": event.command_id,
        "event_id": event.event_id,
        "data": data,
    }
