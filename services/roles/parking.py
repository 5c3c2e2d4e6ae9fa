"""Passing over one event or timer that cannot be handled, so that its follower goes on.

Retrying is right when the broker or the store is away: the next attempt may succeed. It is
wrong for an exception of a pure step (a fold, building a command, encoding an event): that
fails the same way for ever, and a follower stuck on it stops every tenant behind it. The
followers catch such an exception around the one event or timer it concerns and hand it here:
recorded in the store (services/store/parked_table.py), logged once, counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from services.roles.role import RoleContext
from services.store.parked_table import Parked, ParkedTable, parked

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Parking:
    """One follower's record of what it passed over."""

    def __init__(
        self,
        table: ParkedTable,
        follower: str,
        *,
        on_parked: Callable[[Parked], None] = lambda _: None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._table = table
        self.follower = follower
        self._on_parked = on_parked
        self._clock = clock

    def note(self, item: str, error: BaseException) -> Parked:
        """The record of `item`, passed over because of `error` (not yet stored)."""
        return parked(self.follower, item, type(error).__name__, str(error), self._clock())

    def note_reason(self, item: str, reason: str) -> Parked:
        """The record of `item` from a reason kept as text, "ErrorType: message"."""
        error_type, _, message = reason.partition(": ")
        return parked(self.follower, item, error_type, message, self._clock())

    def record(self, items: Sequence[Parked]) -> None:
        """Blocking: stores `items`; logs and counts those not stored before. Raises when the
        store is away, so that the caller retries its batch (nothing is lost)."""
        if not items:
            return
        for one in self._table.park(items):
            log.error(
                "%s: parked %s after %s: %s; passed over, the others go on",
                one.follower,
                one.item,
                one.error_type,
                one.reason,
            )
            self._on_parked(one)


def parking_for(
    context: RoleContext, follower: str, *, clock: Callable[[], datetime] = _utc_now
) -> Parking:
    """`follower`'s parking on `context`'s store, counted in its metrics."""
    counter = context.metrics.parked_items.labels(follower)
    return Parking(context.parked, follower, on_parked=lambda _: counter.inc(), clock=clock)
