"""Waiting longer after each failure, and saying so once per change of state.

During an outage of the broker or the store every loop fails many times a second; logging
each failure buried the one line that mattered under hundreds of thousands. A `Backoff` logs
the first failure (WARNING, with its cause), stays quiet while the failures go on, and logs
the recovery (INFO, with how many attempts failed); meanwhile the delay doubles up to a cap.
"""

from __future__ import annotations

import logging
import time

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0


class Backoff:
    def __init__(
        self,
        what: str,
        log: logging.Logger,
        *,
        first_s: float = FIRST_DELAY_S,
        cap_s: float = MAX_DELAY_S,
    ) -> None:
        self._what = what
        self._log = log
        self._first_s = first_s
        self._cap_s = cap_s
        self._delay_s = first_s
        self.failures = 0
        self.failing_since: float | None = None  # time.monotonic() of the first failure

    def failed(self, error: BaseException) -> float:
        """Records a failure; the delay to wait before trying again."""
        if self.failures == 0:
            self.failing_since = time.monotonic()
            self._log.warning(
                "%s failed: %s: %s; retrying with back-off (one line until it recovers)",
                self._what,
                type(error).__name__,
                _first_line(error),
                exc_info=self._log.isEnabledFor(logging.DEBUG),
            )
        self.failures += 1
        delay, self._delay_s = self._delay_s, min(self._delay_s * 2, self._cap_s)
        return delay

    def succeeded(self) -> None:
        if self.failures:
            self._log.info("%s recovered after %d failed attempts", self._what, self.failures)
        self.failures = 0
        self.failing_since = None
        self._delay_s = self._first_s

    def failing_for(self) -> float:
        """Seconds since the first failure of the current streak; 0 when healthy."""
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines() or [""])[0][:300]
