"""The relay role (transactional outbox): every stored domain event -> `{prefix}.events`.

At-least-once: events are published and confirmed by the broker before the relay records its
position, so a crash re-publishes at most one batch (same `event_id`s) and never skips one.
Per-instance order holds because notifications are read in order and keyed by instance.

An event the broker refuses as too large (Flowledger bounds its events below the topic's
limit, so this is a bug or a misconfigured topic) is parked: logged with its id, counted
(`flowledger_parked_messages_total`), and passed over, so one event never stops the relay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import msgspec
from eventsourcing.persistence import Notification, Tracking, TrackingRecorder

from contracts.events import InstanceEvent, LifecycleEvent
from contracts.keys import instance_key, workflow_key
from services.application.app import FlowledgerApplication
from services.application.lifecycle import LifecycleTranslator, is_lifecycle
from services.roles.resilient_producer import ResilientProducer
from services.roles.sending import JSON_HEADERS, Outgoing

log = logging.getLogger(__name__)

RELAY_NAME = "relay"


def event_kafka_key(event: LifecycleEvent) -> str:
    if isinstance(event, InstanceEvent):
        return instance_key(event.account_id, event.workflow_name, event.instance_id)
    return workflow_key(event.account_id, event.workflow_name)


class Relay:
    def __init__(
        self,
        app: FlowledgerApplication,
        producer: ResilientProducer,
        events_topic: str,
        tracking: TrackingRecorder,
        on_parked: Callable[[Outgoing], None] = lambda _: None,
    ) -> None:
        self._app = app
        self._producer = producer
        self._topic = events_topic
        self._tracking = tracking
        self._on_parked = on_parked
        self._translator = LifecycleTranslator(app.first_event)
        self.published = 0

    def position(self) -> int | None:
        return self._tracking.max_tracking_id(RELAY_NAME)

    def _translate(self, notifications: Sequence[Notification]) -> list[LifecycleEvent]:
        out = []
        for notification in filter(is_lifecycle, notifications):
            event = self._translator.translate(self._app.mapper.to_domain_event(notification))
            if event is not None:
                out.append(event)
        return out

    async def handle(self, notifications: Sequence[Notification]) -> None:
        events = await asyncio.to_thread(self._translate, notifications)
        parked = await self._producer.send_all(
            (
                Outgoing(
                    self._topic,
                    msgspec.json.encode(event),
                    event_kafka_key(event).encode(),
                    headers=(("type", type(event).__name__.encode()), *JSON_HEADERS),
                )
                for event in events
            ),
        )
        for message in parked:
            log.error(
                "parked an event the broker refused as too large (%d bytes), key %s",
                len(message.value),
                (message.key or b"").decode("utf-8", "replace"),
            )
            self._on_parked(message)
        self.published += len(events) - len(parked)
        tracking = Tracking(RELAY_NAME, notifications[-1].id)
        await asyncio.to_thread(self._tracking.insert_tracking, tracking)
