"""Each wake-up runs on a thread of its own, with an event loop of its own: one instance's
run() that spins, or calls something blocking, holds its own thread only, while the worker's
loop goes on consuming, committing, heartbeating to the group and waking the others.

The engine's two ports (the history and the commands) stay on the worker's loop, where the
store's reads and the Kafka clients live: the wake-up's loop awaits them there.

A watchdog (Temporal's deadlock detection): the wake-up's loop beats every `BEAT_S`; when it
has not beaten for `blocked_after_s`, run() has held it (no `await` that yields) and the
wake-up fails with `BlockedWakeError`: nothing more it sends is sent, `WakeBlocked` is raised
inside its thread (at once for Python code; a blocking call notices when it returns), and the
worker tries the instance again after a back-off. The instance is not failed for it.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from contracts.commands import AnyCommand
from contracts.replies import Reply
from flowledger.off_loop import LOOP_THREADS, settle_from
from flowledger.replay import Progress

T = TypeVar("T")

BLOCKED_AFTER_S = 2.0
BEAT_S = 0.1


class BlockedWakeError(Exception):
    """A wake-up whose run() did not give its event loop back in time."""


class WakeBlocked(BaseException):
    """Raised inside a blocked wake-up's thread (a BaseException: run()'s `except Exception`
    does not swallow it)."""


class Abandoned(BaseException):
    """What a wake-up given up on (blocked, cancelled) asks of the worker's loop is refused:
    a later command from it would race the next wake-up of the same instance."""


class IsolatedWake:
    def __init__(self, name: str, blocked_after_s: float = BLOCKED_AFTER_S) -> None:
        self.name = name  # the task's name: the worker's first (step code may read it)
        self.blocked_after_s = blocked_after_s
        self.abandoned = False
        self._last_beat = time.monotonic()
        self._beating = True
        self._worker_loop: asyncio.AbstractEventLoop | None = None

    async def run(self, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """`start()` run to its end on a loop thread of its own; raises BlockedWakeError when
        the watchdog gives up on it."""
        worker_loop = self._worker_loop = asyncio.get_running_loop()
        settled: asyncio.Future[T] = worker_loop.create_future()
        worker = LOOP_THREADS.take()
        worker.loop.call_soon_threadsafe(self._beat, worker.loop)

        def ended(task: asyncio.Task[T]) -> None:
            self._beating = False  # the thread's next code is not this wake-up's
            settle_from(worker_loop, settled, task)

        cancel = worker.start(start, self.name, ended)
        try:
            while not settled.done():
                await asyncio.wait({settled}, timeout=BEAT_S * 2)
                if not settled.done() and self._silent_for() > self.blocked_after_s:
                    self.abandoned = worker.retired = True
                    _raise_in(worker.thread, WakeBlocked)
                    raise BlockedWakeError(
                        f"run() did not give its event loop back within {self.blocked_after_s:g}"
                        " s (a CPU-bound loop or a blocking call outside a step)"
                    )
            return settled.result()
        except asyncio.CancelledError:
            self.abandoned = True
            cancel()
            raise

    async def on_worker_loop(self, work: Coroutine[Any, Any, T]) -> T:
        """Awaited from the wake-up's loop: `work` run on the worker's loop."""
        assert self._worker_loop is not None
        future = asyncio.run_coroutine_threadsafe(self._unless_abandoned(work), self._worker_loop)
        return await asyncio.wrap_future(future)

    def progress(self, progress: Progress) -> Progress:
        """`progress` as the wake-up's loop reaches it."""
        return _BridgedProgress(self, progress)

    async def _unless_abandoned(self, work: Coroutine[Any, Any, T]) -> T:
        if self.abandoned:
            work.close()
            raise Abandoned(self.name)
        return await work

    def _silent_for(self) -> float:
        return time.monotonic() - self._last_beat

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._beating:
            self._last_beat = time.monotonic()
            loop.call_later(BEAT_S, self._beat, loop)


class _BridgedProgress:
    def __init__(self, wake: IsolatedWake, progress: Progress) -> None:
        self._wake = wake
        self._progress = progress

    async def send(self, command: AnyCommand) -> Reply:
        return await self._wake.on_worker_loop(self._progress.send(command))


def _raise_in(thread: threading.Thread, error: type[BaseException]) -> None:
    """Raises `error` inside `thread` at its next Python instruction (CPython's async
    exception: the only way to stop Python code that never yields)."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(error)
        )
