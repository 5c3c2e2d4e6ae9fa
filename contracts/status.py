"""The instance status: its nine values (Cloudflare's vocabulary) and the one table that says
how each lifecycle event moves it.

This is the single source of truth for status. The aggregate (services/domain/instance.py)
takes its status from `status_after` after every event it records or replays; every
per-instance read model (projections/) folds lifecycle events through the same function and
then maps the result into its own vocabulary. Nothing else assigns a status.

Why here, in contracts/, and not in the domain: the table is keyed by lifecycle event type and
reads only fields the events carry, so it belongs to the wire contract. A subscriber rebuilds
an instance from the events alone (contracts/events.py); this table is how it rebuilds the
status. The projections fold contract events, not domain events, and should not need the
domain to read them; the domain already depends inward on contracts/, and its events have the
same names and fields as the lifecycle events, so the aggregate applies this table unchanged.
The commands' guards (which command is allowed in which status, and the named errors) stay in
the aggregate: they decide what happens, this table only says what an event that did happen
means for the status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

Status = Literal[
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waitingForPause",
    "waiting",
    "rollingBack",
]

QUEUED: Final = "queued"
RUNNING: Final = "running"
PAUSED: Final = "paused"
ERRORED: Final = "errored"
TERMINATED: Final = "terminated"
COMPLETE: Final = "complete"
WAITING_FOR_PAUSE: Final = "waitingForPause"
WAITING: Final = "waiting"
ROLLING_BACK: Final = "rollingBack"

ALL_STATUSES: Final = frozenset(
    {
        QUEUED,
        RUNNING,
        PAUSED,
        ERRORED,
        TERMINATED,
        COMPLETE,
        WAITING_FOR_PAUSE,
        WAITING,
        ROLLING_BACK,
    }
)
TERMINAL: Final = frozenset({COMPLETE, ERRORED, TERMINATED})
NOT_TERMINAL: Final = ALL_STATUSES - TERMINAL

# The step types that hold the run while they last; a plain "step" does not.
WAIT_STEP_TYPES: Final = frozenset({"sleep", "waitForEvent"})

Rule = Callable[[str, Any], str]
"""(the status before, the event) -> the status after."""

TRANSITIONS: Final[Mapping[str, Rule]] = {
    # A new instance, or a new run of it: waiting for the engine to start it.
    "InstanceCreated": lambda was, e: QUEUED,
    "InstanceRestarted": lambda was, e: QUEUED,
    "RunStarted": lambda was, e: RUNNING,
    # A sleep or a wait holds the run until it ends.
    "StepBegan": lambda was, e: WAITING if e.step_type in WAIT_STEP_TYPES else was,
    # A failed attempt that will be retried backs off; a pending pause stays pending (the
    # back-off is waited out after the pause).
    "AttemptEnded": lambda was, e: (
        WAITING if was == RUNNING and e.retry_delay_ms is not None else was
    ),
    # The sleep or wait is over; a step ending while a pause is pending changes nothing.
    "StepEnded": lambda was, e: RUNNING if was == WAITING else was,
    "BackoffEnded": lambda was, e: RUNNING,
    "EventDelivered": lambda was, e: RUNNING,
    "PauseRequested": lambda was, e: WAITING_FOR_PAUSE,
    "PauseAcknowledged": lambda was, e: PAUSED,
    "InstancePaused": lambda was, e: PAUSED,
    # Back to where the pause found the run: the event names it.
    "InstanceResumed": lambda was, e: e.status,
    "InstanceTerminated": lambda was, e: ROLLING_BACK if e.rollback else TERMINATED,
    "RollbackEnded": lambda was, e: TERMINATED,
    "RunCompleted": lambda was, e: COMPLETE,
    "RunFailed": lambda was, e: ERRORED,
}
"""Lifecycle event type -> how it moves the status. Every other event (AttemptBegan,
EventReceived, InstanceDeleted, the workflow events) leaves the status as it was: a deleted
instance keeps its last status, but no read model keeps its document."""


def status_after(status: str, event: Any) -> str:
    """The status after `event`, given the status before it.

    `event` is a lifecycle event (contracts/events.py) or the aggregate's domain event of the
    same name: both are named by their class and carry the same fields.
    """
    rule = TRANSITIONS.get(type(event).__name__)
    return status if rule is None else rule(status, event)
