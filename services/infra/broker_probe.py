"""Is the broker there? A cheap, honest answer for /readyz.

A Kafka client object reports `running` as long as nobody stopped it, broker or no broker:
readiness built on that said `ready` through a whole outage. This probe opens a TCP
connection to the bootstrap addresses every second; the roles' own producers add whether
their last send was acknowledged (see services/bootstrap.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class BrokerProbe:
    def __init__(self, bootstrap: str, *, interval_s: float = 1.0, timeout_s: float = 2.0) -> None:
        self._addresses = [_host_port(a) for a in bootstrap.split(",") if a.strip()]
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self.reachable = True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            reachable = await self.probe()
            if reachable != self.reachable:
                if reachable:
                    log.info("the Kafka broker is reachable again")
                else:
                    log.warning("the Kafka broker is unreachable (%s)", self._shown())
            self.reachable = reachable
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)

    async def probe(self) -> bool:
        for host, port in self._addresses:
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), self._timeout_s
                )
            except (OSError, TimeoutError):
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False

    def _shown(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self._addresses)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)
