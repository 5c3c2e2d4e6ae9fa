"""Workflows the end-to-end worker tests run (`tests.e2e.worker_flows:Scenarios`): one class
whose `run` picks its scenario from the params, so one worker serves a whole test. Step code
counts its runs in `RUNS` (the worker runs in the test's process)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from flowledger.workflows import NonRetryableError, StepError, WorkflowEntrypoint, WorkflowStep

RUNS: Counter[tuple[str, str]] = Counter()  # (instance id, step name) -> times its code ran
# (instance id, step name, worker name, began, ended) of each run of a "long" step's code
TRACE: list[tuple[str, str, str, float, float]] = []
QUICK = {"retries": {"limit": 3, "delay": "1 second", "backoff": "constant"}}


class Scenarios(WorkflowEntrypoint):
    async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
        params = event["payload"]
        instance = event["instanceId"]
        scenario = params["scenario"]

        def counted(name: str) -> None:
            RUNS[(instance, name)] += 1

        if scenario == "flaky":

            @step.do("flaky", config=QUICK)
            async def flaky(ctx: dict[str, Any]) -> dict[str, int]:
                counted("flaky")
                if ctx["attempt"] < 3:
                    raise ConnectionError(f"attempt {ctx['attempt']} lost the connection")
                return {"attempt": ctx["attempt"]}

            return await flaky()

        if scenario == "fatal":

            @step.do("fatal", config=QUICK)
            async def fatal() -> None:
                counted("fatal")
                raise NonRetryableError("the card was declined for good")

            return await fatal()

        if scenario == "sleep":
            await step.sleep("nap", "1 second")
            return "rested"

        if scenario == "wait":
            try:
                got = await step.wait_for_event("approval", "approved", timeout=params["timeout"])
            except StepError as error:
                return {"timed_out": error.name}
            return {"by": got["payload"]["by"], "type": got["type"]}

        if scenario == "long":  # `count` steps of `seconds` each
            outputs = []
            for index in range(params["count"]):
                name = f"part {index}"

                @step.do(name)
                async def part(name: str = name, index: int = index) -> int:
                    counted(name)
                    task = asyncio.current_task()
                    began = time.monotonic()
                    if params.get("marks"):  # a worker in another process says where it is
                        with open(Path(params["marks"]) / instance, "a") as marks:
                            marks.write(f"{name}\n")
                    await asyncio.sleep(params["seconds"])
                    worker = task.get_name().split(" ")[0] if task else "?"
                    TRACE.append((instance, name, worker, began, time.monotonic()))
                    return index

                outputs.append(await part())
            return outputs

        if scenario == "quick":

            @step.do("quick")
            async def quick() -> str:
                counted("quick")
                return "done"

            return await quick()

        if scenario == "block":  # a step that blocks its thread for `seconds`
            return await _blocking_step(step, instance, params["how"], params["seconds"])

        if scenario == "spin":  # run() itself spins, never awaiting, on its first replay
            counted("spin")
            if RUNS[(instance, "spin")] == 1:
                until = time.monotonic() + params["seconds"]
                while time.monotonic() < until:
                    pass

            @step.do("after the spin")
            async def after() -> int:
                return RUNS[(instance, "spin")]

            return await after()

        raise ValueError(f"no scenario {scenario!r}")


async def _blocking_step(step: WorkflowStep, instance: str, how: str, seconds: float) -> str:
    if how == "sync":  # a plain function: run on a thread

        @step.do("block")
        def sync_block() -> str:
            RUNS[(instance, "block")] += 1
            time.sleep(seconds)
            return how

        return await sync_block()  # type: ignore[no-any-return]

    @step.do("block")
    async def async_block() -> str:
        RUNS[(instance, "block")] += 1
        time.sleep(seconds)  # a blocking call inside an async step
        return how

    return await async_block()  # type: ignore[no-any-return]
