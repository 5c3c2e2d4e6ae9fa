"""How many wrong sign-ins one client address may make: `max_failures` in any `window_s`
seconds (a sliding window of failure times), then 429 until the oldest of them leaves it.

In-process: each api replica counts on its own, so behind N replicas an address gets up to N
times the limit; enough to make guessing a token hopeless, without a shared store on the
sign-in path. The number of addresses tracked is bounded (the stalest are dropped first), so
a flood from many addresses cannot grow it without end. Pure: callers pass the time.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

MAX_FAILURES = 10
WINDOW_S = 60.0
MAX_ADDRESSES = 10_000


class SignInLimiter:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self._max = max_failures
        self._window_s = window_s
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str, now: float) -> int | None:
        """Whole seconds until `address` may try again; None while it may."""
        times = self._recent(address, now)
        if len(times) < self._max:
            return None
        return max(1, math.ceil(times[0] + self._window_s - now))

    def failed(self, address: str, now: float) -> None:
        times = self._recent(address, now)
        times.append(now)
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address, deque())
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if not times:
            self._failures.pop(address, None)
        return times
