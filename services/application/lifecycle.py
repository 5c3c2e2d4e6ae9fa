"""Domain events -> lifecycle events (the wire contract), for the relay and the projections."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from contracts.events import EVENT_TYPES, LifecycleEvent
from services.application.command_log import CommandRecord

_INTERNAL = ("originator_id", "originator_version", "timestamp", "originator_topic", "at")
_IDENTITY = ("account_id", "workflow_name", "instance_id")


_EVENT_CLASSES = {cls.__name__: cls for cls in EVENT_TYPES}
_INTERNAL_TOPIC = f"{CommandRecord.__module__}:{CommandRecord.__qualname__}."


def is_lifecycle(notification: Notification) -> bool:
    """False for stored events that never reach the wire (command records): told by the topic
    alone, so they are not even decoded. Half the log of a busy create stream is such."""
    return not notification.topic.startswith(_INTERNAL_TOPIC)


def lifecycle_topics() -> list[str]:
    """The stored topics of every domain event that becomes a lifecycle event: each loaded
    subclass of the library's `DomainEvent` whose class name is a wire event's, command records
    left out. Followers read only these rows of the log (`NotificationLog.read`), so the half of
    it that command records are is neither fetched nor decoded three times over. A domain event
    the wire does not know could not be translated anyway (`LifecycleTranslator.translate`);
    tests/services/application/test_lifecycle_topics.py checks every wire event has a topic."""
    topics: set[str] = set()
    pending: list[type] = [DomainEvent]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        topic = get_topic(cls)
        if cls.__name__ in _EVENT_CLASSES and not topic.startswith(_INTERNAL_TOPIC):
            topics.add(topic)
    return sorted(topics)


def event_id(originator_id: uuid.UUID, version: int) -> str:
    """Stable across redeliveries, so subscribers can dedupe on it."""
    return str(uuid.uuid5(originator_id, f"event:{version}"))


class LifecycleTranslator:
    """Names every event after its aggregate's identity, which only the first event carries.

    `load_first` fetches an aggregate's first event when the identity is not cached (after a
    restart the translator may start past an aggregate's creation).
    """

    # Identities kept per translator (one per follower). At 100,000 the soak (bench/README.md,
    # "Soak") grew each follower by ~54 MiB before it levelled off; a miss costs one read of
    # the aggregate's first event, and followers read moments behind the writer.
    DEFAULT_CACHE_SIZE = 10_000

    def __init__(
        self, load_first: Callable[[uuid.UUID], Any], cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self._load_first = load_first
        self._identities: OrderedDict[uuid.UUID, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    def translate(self, domain_event: Any) -> LifecycleEvent | None:
        """None for events that are not part of the lifecycle (e.g. command records)."""
        if type(domain_event).__qualname__.startswith(CommandRecord.__qualname__ + "."):
            return None
        data = {
            k: str(v) if isinstance(v, uuid.UUID) else v
            for k, v in vars(domain_event).items()
            if k not in _INTERNAL
        }
        data.update(self._identity(domain_event))
        originator_id: uuid.UUID = domain_event.originator_id
        data["type"] = type(domain_event).__name__
        data["event_id"] = event_id(originator_id, domain_event.originator_version)
        data["version"] = domain_event.originator_version
        data["occurred_at"] = domain_event.at
        if "instance_id" in data:
            data["global_id"] = str(originator_id)
        else:
            data["workflow_id"] = str(originator_id)
        # Straight to the event's own class: converting into the whole union costs ~25x more.
        return msgspec.convert(data, _EVENT_CLASSES[data["type"]], from_attributes=True)

    def _identity(self, domain_event: Any) -> dict[str, Any]:
        originator_id = domain_event.originator_id
        identity = self._identities.get(originator_id)
        if identity is None:
            first = domain_event if domain_event.originator_version == 1 else None
            first = first or self._load_first(originator_id)
            identity = {k: getattr(first, k) for k in _IDENTITY if hasattr(first, k)}
            self._identities[originator_id] = identity
            if len(self._identities) > self._cache_size:
                self._identities.popitem(last=False)
        else:
            self._identities.move_to_end(originator_id)
        return identity
