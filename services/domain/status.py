"""The instance statuses as the aggregate uses them.

The vocabulary and the transition table live in contracts/status.py (its docstring says why
there): the aggregate and every projection take status from that one table. This module
re-exports them under the names the domain has always used and adds the domain's own guard
set, which says which commands are allowed, not what an event means.
"""

from __future__ import annotations

from typing import Final

from contracts.status import (
    ALL_STATUSES,
    COMPLETE,
    ERRORED,
    NOT_TERMINAL,
    PAUSED,
    QUEUED,
    ROLLING_BACK,
    RUNNING,
    TERMINAL,
    TERMINATED,
    TRANSITIONS,
    WAITING,
    WAITING_FOR_PAUSE,
    Status,
    status_after,
)

# The statuses a pause can be asked in (the aggregate's `pause` guard).
PAUSABLE: Final = frozenset({QUEUED, RUNNING, WAITING})

__all__ = [
    "ALL_STATUSES",
    "COMPLETE",
    "ERRORED",
    "NOT_TERMINAL",
    "PAUSABLE",
    "PAUSED",
    "QUEUED",
    "ROLLING_BACK",
    "RUNNING",
    "TERMINAL",
    "TERMINATED",
    "TRANSITIONS",
    "WAITING",
    "WAITING_FOR_PAUSE",
    "Status",
    "status_after",
]
