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
from collections.abc import Callable

import msgspec
from eventsourcing.persistence import Tracking, TrackingRecorder

from contracts.erasure import withheld
from contracts.events import LifecycleEvent
from contracts.keys import kafka_key
from services.application.notification_log import RELAY_POSITION, Batch
from services.roles.follower import FollowingRole, follower_for
from services.roles.resilient_producer import ResilientProducer
from services.roles.role import RoleContext
from services.roles.sending import JSON_HEADERS, Outgoing

log = logging.getLogger(__name__)


class Relay:
    def __init__(
        self,
        producer: ResilientProducer,
        events_topic: str,
        tracking: TrackingRecorder,
        on_parked: Callable[[Outgoing], None] = lambda _: None,
        carry_content: bool = False,
    ) -> None:
        # Nothing erasable goes on the topic, which Flowledger can never rewrite
        # (contracts.erasure); content is read through the api while the instance exists.
        self._prepare: Callable[[LifecycleEvent], LifecycleEvent] = (
            (lambda e: e) if carry_content else withheld
        )
        self._producer = producer
        self._topic = events_topic
        self._tracking = tracking
        self._on_parked = on_parked
        self.published = 0

    def position(self) -> int | None:
        return self._tracking.max_tracking_id(RELAY_POSITION)

    async def handle(self, batch: Batch) -> None:
        events = [self._prepare(event) for _, event in batch.events]
        parked = await self._producer.send_all(
            (
                Outgoing(
                    self._topic,
                    msgspec.json.encode(event),
                    kafka_key(event).encode(),
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
        tracking = Tracking(RELAY_POSITION, batch.last_id)
        await asyncio.to_thread(self._tracking.insert_tracking, tracking)


class RelayRole(FollowingRole):
    def __init__(self, context: RoleContext) -> None:
        topic = context.settings.topics.events
        parked = context.metrics.parked_messages.labels(topic).inc
        self.relay = Relay(
            context.producer,
            topic,
            context.relay_tracking,
            on_parked=lambda _: parked(),
            carry_content=context.settings.events_carry_content,
        )
        follower = follower_for(context, "relay", self.relay.position, self.relay.handle)
        super().__init__(follower, context.stopping)
