"""The relay role (transactional outbox): every stored domain event -> `{prefix}.events`.

At-least-once: events are published and confirmed by the broker before the relay records its
position, so a crash re-publishes at most one batch (same `event_id`s) and never skips one.
Per-instance order holds because notifications are read in order and keyed by instance.

An event the broker refuses as too large (Flowledger bounds its events below the topic's
limit, so this is a bug or a misconfigured topic) is parked: logged with its id, counted
(`flowledger_parked_messages_total`), and passed over, so one event never stops the relay.
So is an event that cannot be prepared or encoded at all (services/roles/parking.py); both
are recorded in the store's parked items. Only the broker or the store being away is retried.
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
from flowledger._producer import JSON_HEADERS, Outgoing, ResilientProducer
from services.application.notification_log import RELAY_POSITION, Batch
from services.roles.follower import FollowingRole, follower_for
from services.roles.parking import Parking, parking_for
from services.roles.role import RoleContext

log = logging.getLogger(__name__)


class Relay:
    def __init__(
        self,
        producer: ResilientProducer,
        events_topic: str,
        tracking: TrackingRecorder,
        on_parked: Callable[[Outgoing], None] = lambda _: None,
        carry_content: bool = False,
        parking: Parking | None = None,
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
        self._parking = parking
        self.published = 0

    def position(self) -> int | None:
        return self._tracking.max_tracking_id(RELAY_POSITION)

    async def handle(self, batch: Batch) -> None:
        ready: list[tuple[int, Outgoing]] = []
        passed: list[tuple[str, BaseException]] = []
        for notification_id, event in batch.events:
            try:
                ready.append((notification_id, self._message(event)))
            except Exception as error:  # noqa: BLE001 - pure: the same on every retry
                passed.append((f"notification {notification_id}", error))
        too_large = await self._producer.send_all(message for _, message in ready)
        for notification_id, message in ready:
            if any(message is big for big in too_large):
                log.error(
                    "parked an event the broker refused as too large (%d bytes), key %s",
                    len(message.value),
                    (message.key or b"").decode("utf-8", "replace"),
                )
                self._on_parked(message)
                passed.append(
                    (f"notification {notification_id}", MessageTooLarge(len(message.value)))
                )
        self.published += len(ready) - len(too_large)
        tracking = Tracking(RELAY_POSITION, batch.last_id)
        await asyncio.to_thread(self._record, passed, tracking)

    def _message(self, event: LifecycleEvent) -> Outgoing:
        prepared = self._prepare(event)
        return Outgoing(
            self._topic,
            msgspec.json.encode(prepared),
            kafka_key(prepared).encode(),
            headers=(("type", type(prepared).__name__.encode()), *JSON_HEADERS),
        )

    def _record(self, passed: list[tuple[str, BaseException]], tracking: Tracking) -> None:
        """Blocking: what was passed over (before the position: a crash between the two
        parks the batch's items again, recorded once), then the position."""
        if self._parking is not None:
            self._parking.record([self._parking.note(item, error) for item, error in passed])
        elif passed:
            log.error("relay: passed over %s", ", ".join(item for item, _ in passed))
        self._tracking.insert_tracking(tracking)


class MessageTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"the broker refused the event as too large ({size} bytes)")


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
            parking=parking_for(context, "relay"),
        )
        follower = follower_for(context, "relay", self.relay.position, self.relay.handle)
        super().__init__(follower, context.stopping)
