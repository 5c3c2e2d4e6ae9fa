"""Which parts of an instance's events are personal content, and what stands in their place.

Every instance has an encryption key of its own; these fields are stored encrypted with it,
and deleting the instance destroys the key (crypto-shredding, docs/erasure.md). The history
stays: event types, versions, times, step names and statuses fold as before.

Three markers, all plain strings so that every fold and subscriber can carry them:
- `ERASED`: the instance was deleted and its key destroyed; the content is gone for good.
- `WITHHELD`: on the events topic the content is not carried at all (Flowledger cannot rewrite
  a Kafka topic, so nothing that must be erasable is ever written there); read it through the
  API while the instance exists. `FLOWLEDGER_EVENTS_CARRY_CONTENT=true` turns this off.
- `UNREADABLE`: what the relay, the projections and the scheduler read for the content of an
  instance whose data key no configured key-encryption key opens (the content is not gone: once
  that key is configured again, `flowledger projections rebuild` restores the views).
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.events import LifecycleEvent

ERASED = "[erased]"
WITHHELD = "[withheld]"
UNREADABLE = "[unreadable]"

# Event type -> paths of its personal content. A path is a field, or (field, key) for one key
# of a dict field (an error's message: its name, a class name, stays readable).
SEALED_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "InstanceCreated": (
        ("params",),
        ("metadata", "user_id"),
        ("metadata", "applicant_id"),
        ("metadata", "customer_user_id"),
        ("metadata", "subject_id"),
    ),
    "AttemptEnded": (("output",), ("error", "message")),
    "StepEnded": (("output",), ("error", "message")),
    "EventReceived": (("payload",),),
    "EventDelivered": (("payload",),),
    "RunCompleted": (("output",),),
    "RunFailed": (("error", "message"),),
    "RollbackEnded": (("error", "message"),),
}


def withheld(event: LifecycleEvent) -> LifecycleEvent:
    """The event as published on the events topic: personal content replaced by `WITHHELD`
    (absent content, None, stays None, so subscribers still see that there was none)."""
    paths = SEALED_FIELDS.get(type(event).__name__)
    if not paths:
        return event
    changes: dict[str, Any] = {}
    for path in paths:
        value = changes.get(path[0], getattr(event, path[0], None))
        if len(path) == 1:
            if value is not None:
                changes[path[0]] = WITHHELD
        elif isinstance(value, dict) and value.get(path[1]) is not None:
            changes[path[0]] = {**value, path[1]: WITHHELD}
        elif isinstance(value, msgspec.Struct) and getattr(value, path[1], None) is not None:
            changes[path[0]] = msgspec.structs.replace(value, **{path[1]: WITHHELD})
    return msgspec.structs.replace(event, **changes) if changes else event
