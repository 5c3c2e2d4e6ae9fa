"""The nine instance statuses (Cloudflare's vocabulary, the domain's own)."""

from __future__ import annotations

from typing import Final, Literal

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
PAUSABLE: Final = frozenset({QUEUED, RUNNING, WAITING})
