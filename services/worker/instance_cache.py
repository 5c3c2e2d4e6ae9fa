"""The instances a worker holds, kept between wake-ups (Temporal's sticky execution, for the
history): each one's aggregate and the engine's view of it, so that a wake-up reads only the
events stored since the last one instead of the whole history.

Correct whoever wrote meanwhile: the store's events are append-only, and every load reads all
of them after the version kept. An entry is dropped when its instance ends (complete, errored,
terminated) or is deleted, when the worker loses the instance's partition (`forget`), and
beyond `maxsize` (least recently used first); nothing survives a restart of the worker.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from contracts.status import TERMINAL
from flowledger.replay import InstanceHistory
from services.domain.instance import WorkflowInstance

# Events of one aggregate after a version (all of them for None), oldest first.
ReadEvents = Callable[[UUID, int | None], Iterator[Any]]
# The engine's view of an aggregate, reusing what an earlier view of the same run settled.
ViewOf = Callable[[WorkflowInstance, InstanceHistory | None], InstanceHistory]


@dataclass
class _Held:
    instance: WorkflowInstance
    history: InstanceHistory


class InstanceCache:
    """LRU of held instances. One load of an instance at a time (the worker wakes an instance
    once at a time); different instances load on different threads at once."""

    def __init__(self, read_events: ReadEvents, view_of: ViewOf, maxsize: int = 1_000) -> None:
        self._read_events = read_events
        self._view_of = view_of
        self._maxsize = maxsize
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._lock = threading.Lock()
        self.events_read = 0  # every event read from the store, for tests and metrics

    def __len__(self) -> int:
        return len(self._held)

    def load(self, account_id: str, workflow_name: str, instance_id: str) -> InstanceHistory | None:
        key = f"{account_id}/{workflow_name}/{instance_id}"
        with self._lock:
            held = self._held.pop(key, None)  # out while it is read: a failed read drops it
        before = held.instance if held is not None else None
        aggregate_id = WorkflowInstance.create_id(account_id, workflow_name, instance_id)
        events = list(self._read_events(aggregate_id, None if before is None else before.version))
        with self._lock:
            self.events_read += len(events)
        instance = before
        for event in events:
            instance = event.mutate(instance)
        if instance is None or instance.deleted:
            return None
        history = self._view_of(instance, held.history if held is not None else None)
        if instance.status not in TERMINAL:
            self._keep(key, _Held(instance, history))
        return history

    def forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._held.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()

    def _keep(self, key: str, held: _Held) -> None:
        if self._maxsize <= 0:
            return
        with self._lock:
            self._held[key] = held
            while len(self._held) > self._maxsize:
                self._held.popitem(last=False)
