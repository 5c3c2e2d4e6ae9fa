"""A step's code runs off the replay's event loop: on a thread of its own, with an event loop
of its own. A step that blocks (`time.sleep` in a sync step, a blocking call in an async
one) then holds its own thread only: the replay's loop goes on, so the step's timeout fires
on time, and the worker's other instances and its Kafka heartbeats are not held up.

A step cancelled (its timeout, the worker stopping) is cancelled on its own loop; code
blocking its thread notices at its next `await`, or ends unheard: its result is dropped.

Threads and their loops are reused once their code has ended (a new thread and loop cost
~0.5 ms of CPU, as much as a step's own bookkeeping); a thread whose code blocks is simply
not free until it ends, and another is started meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

IDLE_THREADS_KEPT = 32


class LoopThread:
    """A daemon thread running an event loop forever, one piece of code at a time."""

    def __init__(self, pool: LoopThreads) -> None:
        self._pool = pool
        self.loop = asyncio.new_event_loop()
        self.retired = False  # never handed out again (its code was interrupted)
        self.thread = threading.Thread(target=self._serve, name="flowledger loop", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(BaseException):  # an interruption meant for the code
            self.loop.run_forever()
        with contextlib.suppress(BaseException):
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        with contextlib.suppress(BaseException):
            self.loop.close()

    def start(
        self,
        make: Callable[[], Coroutine[Any, Any, T]],
        name: str,
        ended: Callable[[asyncio.Task[T]], None],
        context: contextvars.Context | None = None,
    ) -> Callable[[], None]:
        """Runs `make()` as a task named `name` on this thread's loop; `ended(task)` is called
        there once it has ended. Returns what cancels the task (from any thread)."""
        tasks: list[asyncio.Task[T]] = []

        def begin() -> None:
            task = self.loop.create_task(make(), name=name, context=context)
            task.add_done_callback(lambda done: self._finish(done, ended))
            tasks.append(task)

        def cancel() -> None:
            for task in tasks:  # begun first: the loop runs callbacks in order
                task.cancel()

        self.loop.call_soon_threadsafe(begin)
        return lambda: self._call(cancel)

    def stop(self) -> None:
        self._call(self.loop.stop)

    def _finish(self, task: asyncio.Task[T], ended: Callable[[asyncio.Task[T]], None]) -> None:
        ended(task)
        if self.retired:
            self.loop.stop()
        else:
            self._pool.give_back(self)

    def _call(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to do
            self.loop.call_soon_threadsafe(callback)


class LoopThreads:
    """Idle loop threads, reused; a new one when none is idle."""

    def __init__(self, keep_idle: int = IDLE_THREADS_KEPT) -> None:
        self._keep_idle = keep_idle
        self._idle: list[LoopThread] = []
        self._lock = threading.Lock()

    def take(self) -> LoopThread:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if not worker.retired and worker.thread.is_alive():
                    return worker  # (one interrupted as it went idle is passed over)
        return LoopThread(self)

    def give_back(self, worker: LoopThread) -> None:
        with self._lock:
            if len(self._idle) < self._keep_idle:
                self._idle.append(worker)
                return
        worker.stop()


LOOP_THREADS = LoopThreads()


async def run_off_loop(start: Callable[[], Awaitable[T]], name: str) -> T:
    """`start()` run to its end on a loop thread, awaited from the caller's loop. The task
    there is named `name` and sees the caller's context variables (a copy)."""
    caller = asyncio.get_running_loop()
    settled: asyncio.Future[T] = caller.create_future()
    cancel = LOOP_THREADS.take().start(
        lambda: _awaited(start),
        name,
        lambda task: settle_from(caller, settled, task),
        contextvars.copy_context(),
    )
    try:
        return await settled
    except asyncio.CancelledError:
        cancel()
        raise


async def _awaited(start: Callable[[], Awaitable[T]]) -> T:
    return await start()  # called on the step's loop: its code starts there


def settle_from(
    caller: asyncio.AbstractEventLoop, settled: asyncio.Future[T], task: asyncio.Task[T]
) -> None:
    """Called on the task's loop once it ended: its outcome, passed to `settled` on the
    caller's loop."""
    with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody asks
        caller.call_soon_threadsafe(_settle, settled, task)


def _settle(settled: asyncio.Future[T], task: asyncio.Task[T]) -> None:
    if settled.done():
        return
    if task.cancelled():
        settled.cancel()
    elif task.exception() is not None:
        settled.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        settled.set_result(task.result())
