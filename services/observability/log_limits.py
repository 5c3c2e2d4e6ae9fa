"""A floor under the broker client's log volume during an outage.

aiokafka logs every failed connection, metadata refresh and produce attempt; with the broker
away that was about 200,000 ERROR lines in 40 seconds, burying the few lines that say what
is wrong. This filter lets each distinct aiokafka message through once per interval and
notes how many were held back; Flowledger's own loggers are never filtered.
"""

from __future__ import annotations

import logging
import time

INTERVAL_S = 10.0


class RepeatLimiter(logging.Filter):
    def __init__(self, prefix: str = "aiokafka", interval_s: float = INTERVAL_S) -> None:
        super().__init__()
        self._prefix = prefix
        self._interval_s = interval_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, held = self._last.get(key, (float("-inf"), 0))
        if now - last < self._interval_s:
            self._last[key] = (last, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} (and {held} like it held back)"
        self._last[key] = (now, 0)
        return True


def limit_repeats(handlers: list[logging.Handler]) -> None:
    """Installs one limiter on each handler (a logger's filter would miss child loggers)."""
    for handler in handlers:
        if not any(isinstance(f, RepeatLimiter) for f in handler.filters):
            handler.addFilter(RepeatLimiter())
