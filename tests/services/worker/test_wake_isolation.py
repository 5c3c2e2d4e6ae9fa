"""A wake-up on a thread and event loop of its own, watched: code that holds its loop fails
the wake-up without holding up the worker's loop, and nothing it sends after is sent."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from contracts import commands as c
from contracts.replies import Reply
from services.worker.isolation import Abandoned, BlockedWakeError, IsolatedWake
from tests.fixtures.loop_ticks import loop_ticks

QUICK_WATCH_S = 0.5  # the worker's is 2 s; the mechanism is the same


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, command: c.AnyCommand) -> Reply:
        self.sent.append(command.command_id)
        return Reply(command_id=command.command_id, outcome="accepted")


def _command(command_id: str) -> c.StartRun:
    return c.StartRun(command_id=command_id, account_id="a", workflow_name="w", instance_id="i")


async def test_a_wake_up_runs_off_the_workers_loop_and_reaches_its_ports_there() -> None:
    recorder = _Recorder()
    wake = IsolatedWake("w1 wake a/w/i", QUICK_WATCH_S)
    progress = wake.progress(recorder)
    worker_thread = threading.get_ident()

    async def body() -> tuple[int, str, str]:
        await progress.send(_command("c-1"))
        task = asyncio.current_task()
        return threading.get_ident(), task.get_name() if task else "", "done"

    thread, name, result = await wake.run(body)
    assert thread != worker_thread and (name, result) == ("w1 wake a/w/i", "done")
    assert recorder.sent == ["c-1"]


async def test_a_run_that_spins_fails_its_wake_up_and_is_interrupted() -> None:
    wake = IsolatedWake("spinner", QUICK_WATCH_S)
    ended = threading.Event()

    async def spin() -> None:
        try:
            while True:  # never awaits
                pass
        finally:
            ended.set()

    async with loop_ticks() as ticks:
        with pytest.raises(BlockedWakeError, match="did not give its event loop back"):
            await wake.run(spin)
    assert ticks.count >= 5  # the worker's loop went on meanwhile
    assert await asyncio.to_thread(ended.wait, 5)  # the spinning code was stopped


async def test_a_blocked_wake_up_sends_nothing_once_given_up() -> None:
    recorder = _Recorder()
    wake = IsolatedWake("sleeper", QUICK_WATCH_S)
    progress = wake.progress(recorder)
    reached: list[str] = []

    async def block_then_send() -> None:
        try:
            time.sleep(QUICK_WATCH_S * 3)  # a blocking call outside a step
        finally:  # the watchdog's exception lands once the call returns
            reached.append("after the block")
            await progress.send(_command("late"))

    with pytest.raises(BlockedWakeError):
        await wake.run(block_then_send)
    await asyncio.sleep(QUICK_WATCH_S * 4)
    assert reached == ["after the block"] and recorder.sent == []


async def test_cancelling_a_wake_up_cancels_it_on_its_own_loop() -> None:
    wake = IsolatedWake("cancelled", QUICK_WATCH_S)
    began, cancelled = threading.Event(), threading.Event()

    async def waits() -> Any:
        began.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(wake.run(waits))
    await asyncio.to_thread(began.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(cancelled.wait, 5) and wake.abandoned


async def test_a_command_of_an_abandoned_wake_up_is_refused() -> None:
    recorder = _Recorder()
    wake = IsolatedWake("gone", QUICK_WATCH_S)
    progress = wake.progress(recorder)

    async def send_after_abandon() -> None:
        wake.abandoned = True
        await progress.send(_command("refused"))

    with pytest.raises(Abandoned):
        await wake.run(send_after_abandon)
    assert recorder.sent == []
