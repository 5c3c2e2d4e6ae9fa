"""The relay over a real store (SQLite and PostgreSQL), with a producer that records what it is
given: an event it cannot encode, or one the broker refuses as too large, is parked in the
store and the rest of the batch is published, the position recorded past both."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts import commands as c
from contracts.erasure import withheld
from flowledger._producer import Outgoing
from services.application.notification_log import NotificationLog
from services.bootstrap import Store
from services.roles.parking import Parking
from services.roles.relay import Relay

T0 = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


class RefusingProducer:
    """Publishes everything except events of instance "big", refused as too large."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_all(self, messages: Iterable[Outgoing]) -> list[Outgoing]:
        refused = []
        for message in messages:
            event = msgspec.json.decode(message.value)
            if event.get("instance_id") == "big":
                refused.append(message)
            else:
                self.sent.append(event)
        return refused


def _cannot_prepare(event: Any) -> Any:
    if getattr(event, "instance_id", None) == "broken":
        raise TypeError("cannot encode this event")
    return withheld(event)


async def test_events_it_cannot_encode_or_send_are_parked_and_the_rest_published(
    store: Store,
) -> None:
    account = f"acc{uuid.uuid4().hex[:8]}"
    commands: list[Any] = [
        c.RegisterWorkflow(command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf")
    ]
    commands += [
        c.CreateInstance(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf", instance_id=name
        )
        for name in ("broken", "big", "fine")
    ]
    store.app.handle(commands, T0)
    producer = RefusingProducer()
    relay = Relay(
        producer,  # type: ignore[arg-type]
        "p.events",
        store.relay_tracking,
        parking=Parking(store.parked, "relay"),
    )
    relay._prepare = _cannot_prepare
    batch = NotificationLog(store.app).read(0, 100)
    assert batch is not None

    await relay.handle(batch)

    assert sorted(e.get("instance_id", "-") for e in producer.sent) == ["-", "fine"]
    parked = {p.error_type for p in store.parked.items("relay")}
    assert parked == {"TypeError", "MessageTooLarge"}
    assert relay.position() == batch.last_id
