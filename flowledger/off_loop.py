"""A step's code runs off the replay's event loop: on a thread of its own, with an event loop
of its own. A step that blocks (`time.sleep` in a sync step, a blocking call in an async
one) then holds its own thread only: the replay's loop goes on, so the step's timeout fires
on time, and the worker's other instances and its Kafka heartbeats are not held up.

A step cancelled (its timeout, the worker stopping) is cancelled on its own loop; code
blocking its thread notices at its next `await`, or ends unheard: its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def run_off_loop(start: Callable[[], Awaitable[T]], name: str) -> T:
    """`start()` run to its end on a new thread and loop, awaited from the caller's loop.
    The task there is named `name` and sees the caller's context variables (a copy)."""
    caller = asyncio.get_running_loop()
    settled: asyncio.Future[T] = caller.create_future()
    loop = asyncio.new_event_loop()
    task = loop.create_task(_awaited(start), name=name, context=contextvars.copy_context())

    def settle(outcome: asyncio.Task[T]) -> None:
        if settled.done():
            return
        if outcome.cancelled():
            settled.cancel()
        elif outcome.exception() is not None:
            settled.set_exception(outcome.exception())  # type: ignore[arg-type]
        else:
            settled.set_result(outcome.result())

    def run() -> None:
        try:
            with contextlib.suppress(BaseException):  # the outcome is in the task
                loop.run_until_complete(task)
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody asks
                caller.call_soon_threadsafe(settle, task)
        finally:
            _close(loop)

    threading.Thread(target=run, name=f"{name} (step)", daemon=True).start()
    try:
        return await settled
    except asyncio.CancelledError:
        with contextlib.suppress(RuntimeError):  # already ended and closed
            loop.call_soon_threadsafe(task.cancel)
        raise


async def _awaited(start: Callable[[], Awaitable[T]]) -> T:
    return await start()  # called on the step's loop: its code starts there


def _close(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(BaseException):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
