"""How a Flowledger process is asked to stop: SIGINT or SIGTERM sets an event the process
drains on; a second signal exits at once, like a crash (redelivery covers what was cut)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

log = logging.getLogger(__name__)


def stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM; call it from the running loop."""
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second signal: exiting without draining")
            os._exit(1)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop
