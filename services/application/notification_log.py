"""The notification log, as the roles that follow it see it: the one module that knows how the
event store library records, numbers and decodes stored events.

Every follower (the relay, the projections, and the scheduler to come) reads batches of
lifecycle events after a position and records, by itself, how far it got; the gateway and
the metrics ask for the head. Nothing else touches the library's recorder or mapper, so a
change of store library or stored format is a change here.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import LifecycleEvent
from services.application.app import FlowledgerApplication
from services.application.lifecycle import LifecycleTranslator, is_lifecycle, lifecycle_topics
from services.application.sealing import SealingMapper

# The name under which the relay records its position in the store's tracking table, beside
# the projections' (each view's name): every role's process reads the relay's lag from it.
RELAY_POSITION = "relay"


@dataclass(frozen=True)
class Batch:
    """Lifecycle events of one read, each with its notification id, in log order.

    `last_id` is the id of the last notification read, lifecycle or not (command records are
    stored too): the position a follower records once it has handled the batch.
    """

    last_id: int
    events: list[tuple[int, LifecycleEvent]]


class NotificationLog:
    """One follower's reader. Not shared between followers: each keeps its own cache of
    aggregate identities and is used from one thread at a time."""

    def __init__(self, app: FlowledgerApplication) -> None:
        self._app = app
        self._translator = LifecycleTranslator(app.first_event)
        # The domain is loaded with the application: every lifecycle event class exists now.
        self._topics = lifecycle_topics()

    def head(self) -> int:
        """Blocking: the id of the last stored notification (0 for an empty store)."""
        return self._app.recorder.max_notification_id() or 0

    def read(self, after: int, limit: int) -> Batch | None:
        """Blocking: up to `limit` notifications after position `after` (0: from the start),
        as lifecycle events; None when there is nothing new."""
        # Only lifecycle rows are fetched (command records, half the log of a create stream,
        # are not); up to the head read first, so that a read which returns fewer than `limit`
        # rows has seen everything up to the head and the position can move there. Followers
        # rely on the store's order already: a visible id means every lower one is committed
        # (one writer at a time on SQLite, a table lock per insert on PostgreSQL).
        head = self.head()
        if head <= after:
            return None
        notifications = self._app.recorder.select_notifications(
            after, limit, stop=head, topics=self._topics, inclusive_of_start=False
        )
        last_id = notifications[-1].id if len(notifications) >= limit else head
        to_domain_event = self._app.mapper.to_domain_event
        if isinstance(self._app.mapper, SealingMapper):
            self._app.mapper.prefetch_keys(notifications)  # one read, not one per instance
            # An instance whose data key no KEK opens must not stop every follower.
            to_domain_event = self._app.mapper.to_followed_event
        translate = self._translator.translate
        events = [
            (n.id, event)
            for n in notifications
            if is_lifecycle(n) and (event := translate(to_domain_event(n))) is not None
        ]
        return Batch(last_id, events)
