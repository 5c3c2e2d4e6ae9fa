"""Does the store answer? Asked in the background, so that asking never blocks.

A store query against a PostgreSQL server that is away waits for a connection (seconds per
try, several tries): made by `/readyz` or a metrics scrape on the event loop, it froze every
role of the process for as long. Here the lag queries run off the loop once a second; readiness
and metrics read the last answer, and a query that takes longer than `timeout_s` counts as the
store being down until one succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

NO_LAGS: dict[str, Any] = {"notification_head": None, "relay_lag": None, "projection_lag": {}}


class StoreHealth:
    def __init__(
        self,
        read_lags: Callable[[], dict[str, Any]],
        *,
        interval_s: float = 1.0,
        timeout_s: float = 3.0,
    ) -> None:
        self._read_lags = read_lags
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self.reachable = True
        self.lags: dict[str, Any] = NO_LAGS

    async def check(self) -> bool:
        """One query; waits for a hung one to end before returning, so they never pile up."""
        query = asyncio.ensure_future(asyncio.to_thread(self._read_lags))
        try:
            lags = await asyncio.wait_for(asyncio.shield(query), self._timeout_s)
        except Exception as error:  # noqa: BLE001 - whatever the store says, it is not ready
            self._set(False, error)
            with contextlib.suppress(Exception):
                await query
            return False
        self.lags = lags
        self._set(True, None)
        return True

    async def refresh(self) -> None:
        await self.check()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)

    def _set(self, reachable: bool, error: BaseException | None) -> None:
        if reachable and not self.reachable:
            log.info("the store answers again")
        elif not reachable and self.reachable:
            cause = "no answer in time" if isinstance(error, TimeoutError) else repr(error)
            log.warning("the store does not answer: %s", cause[:300])
        self.reachable = reachable
        if not reachable:
            self.lags = NO_LAGS
