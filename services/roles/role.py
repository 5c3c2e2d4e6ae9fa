"""What every role is, and what it is given.

A role is an object that starts and stops; `services/bootstrap.py` starts the roles a process
runs, in order, and stops them in the reverse order with one `AsyncExitStack`. Adding a role
is one class here in `services/roles/` (or `services/api/`) and one line in
`bootstrap.ROLE_TYPES`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import TrackingRecorder

from flowledger._producer import ResilientProducer
from services.application.app import FlowledgerApplication
from services.observability.metrics import Metrics
from services.settings import Settings
from services.store.document_view import DocumentView
from services.store.parked_table import ParkedTable
from services.store.timer_table import TimerTable

log = logging.getLogger(__name__)


class Wakeup:
    """Set by the commands role after a save; followers in the same process react at once."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.append(event)
        return event

    def notify(self) -> None:
        for event in self._waiters:
            event.set()


@dataclass
class RoleContext:
    """The parts a process shares between its roles, built once by the composition root."""

    settings: Settings
    bootstrap_servers: str
    app: FlowledgerApplication
    views: dict[str, DocumentView]
    relay_tracking: TrackingRecorder
    timers: TimerTable[Any]
    # What the followers passed over (an event or timer they cannot handle), for every process.
    parked: ParkedTable
    producer: ResilientProducer
    metrics: Metrics
    # Set by the commands role after each save: followers in the same process read at once.
    wakeup: Wakeup
    # Set when the process begins to stop: loops finish the batch in hand and return.
    stopping: asyncio.Event
    broker_reachable: Callable[[], bool]
    readiness: Callable[[], dict[str, Any]]
    # Asks the store now (off the event loop) before a probe reads `readiness`.
    refresh_health: Callable[[], Awaitable[None]]


class Role(Protocol):
    name: str

    async def start(self) -> None:
        """Returns once the role is working (subscribed, following, serving)."""

    async def stop(self) -> None:
        """Finishes what is in hand, within a bounded time, and releases what it holds."""


# How long a stopping role may take to finish what is in hand (as FastStream's
# graceful_timeout for the commands batch in flight).
DRAIN_TIMEOUT_S = 15.0


async def within_drain_time(stopping: Awaitable[Any], what: str) -> None:
    """Awaits `stopping` for at most DRAIN_TIMEOUT_S: with the broker away, a consumer's last
    commit or a producer's flush would retry for ever and SIGTERM would never finish."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            await stopping
    except TimeoutError:
        log.warning("%s did not stop within %.0f s; closing without it", what, DRAIN_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - stopping goes on with the other parts
        log.exception("%s failed to stop cleanly", what)
