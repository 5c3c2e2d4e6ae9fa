"""The relay role (transactional outbox): every stored domain event -> `{prefix}.events`.

At-least-once: events are published and confirmed by the broker before the relay records its
position, so a crash re-publishes at most one batch (same `event_id`s) and never skips one.
Per-instance order holds because notifications are read in order and keyed by instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
from aiokafka import AIOKafkaProducer
from eventsourcing.persistence import Notification, Tracking, TrackingRecorder

from contracts.events import InstanceEvent, LifecycleEvent
from contracts.keys import instance_key, workflow_key
from services.application.app import FlowledgerApplication
from services.application.lifecycle import LifecycleTranslator, is_lifecycle
from services.roles.sending import JSON_HEADERS, Outgoing, send_all

RELAY_NAME = "relay"


def event_kafka_key(event: LifecycleEvent) -> str:
    if isinstance(event, InstanceEvent):
        return instance_key(event.account_id, event.workflow_name, event.instance_id)
    return workflow_key(event.account_id, event.workflow_name)


class Relay:
    def __init__(
        self,
        app: FlowledgerApplication,
        producer: AIOKafkaProducer,
        events_topic: str,
        tracking: TrackingRecorder,
    ) -> None:
        self._app = app
        self._producer = producer
        self._topic = events_topic
        self._tracking = tracking
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
        await send_all(
            self._producer,
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
        self.published += len(events)
        tracking = Tracking(RELAY_NAME, notifications[-1].id)
        await asyncio.to_thread(self._tracking.insert_tracking, tracking)
