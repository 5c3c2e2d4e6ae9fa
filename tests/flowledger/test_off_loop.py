"""Step code runs off the replay's loop: a step that blocks its thread is still ended by its
own timeout, and the replay's loop goes on meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from flowledger.off_loop import run_off_loop
from flowledger.workflows import StepError, WorkflowEntrypoint, WorkflowStep
from tests.fixtures.loop_ticks import loop_ticks
from tests.flowledger.harness import InMemoryFlowledger

BLOCK_S = 3.0


class BlocksPastItsTimeout(WorkflowEntrypoint):
    async def run(self, event: Any, step: WorkflowStep) -> Any:
        @step.do("blocks", config={"retries": {"limit": 0, "delay": 0}, "timeout": "1 second"})
        async def blocks() -> str:
            time.sleep(BLOCK_S)  # a blocking call inside an async step
            return "too late"

        try:
            return await blocks()
        except StepError as error:
            return error.name


async def test_a_step_blocking_its_thread_is_ended_by_its_own_timeout(new_id: str) -> None:
    fl = InMemoryFlowledger()
    fl.create(new_id)
    async with loop_ticks() as ticks:
        assert (await fl.wake(BlocksPastItsTimeout(), new_id)).kind == "completed"
    assert fl.instance(new_id).run.output == "WorkflowTimeoutError"
    assert ticks.count >= 10  # about a second of ticks while the step blocked its own thread


async def test_step_code_runs_on_another_thread_named_and_with_the_callers_context() -> None:
    caller = threading.get_ident()

    async def where() -> tuple[int, str]:
        task = asyncio.current_task()
        return threading.get_ident(), task.get_name() if task else ""

    thread, name = await run_off_loop(where, "w1 wake a/w/i")
    assert thread != caller and name == "w1 wake a/w/i"


async def test_a_sync_function_as_step_runs_off_the_loop_too(new_id: str) -> None:
    fl = InMemoryFlowledger()
    fl.create(new_id)
    threads: list[int] = []

    class Sync(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("plain")
            def plain() -> int:
                threads.append(threading.get_ident())
                return 7

            return await plain()

    assert (await fl.wake(Sync(), new_id)).kind == "completed"
    assert fl.instance(new_id).run.output == 7
    assert threads and threads[0] != threading.get_ident()
