"""The long-instance phase: one instance driven through BENCH_LONG_STEPS (default 3,000)
RecordStep commands over Kafka, each sent once the one before it was answered, against the
running service (issue 28 part 3: a step's cost must not grow with the instance's history).

Figures, for a window of WINDOW steps around step 100 and for the last WINDOW steps: ms per
step (publish to reply, sequential) and CPU ms per step of each service process. Then the
instance read over HTTP once the projection caught up (its `step_count`, and how long that
read took: the baseline of a document that size), and `?as_of=` near its start and near its
end, each asked twice (the first builds the api's fold checkpoints; the second is the figure).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec

from bench.load import ACCOUNT, WORKFLOW, Probe, _started, create_command, instance_path, producer
from bench.service import cpu_by_member
from contracts.keys import instance_key

WINDOW = 100
EARLY_STEP = 100
GOAL_RATIO = 1.5  # the last steps' ms per step, at most this many times the early ones'


async def long_instance(probe: Probe, steps: int, timeout_s: float) -> dict[str, Any]:
    steps = max(steps, EARLY_STEP + WINDOW)
    instance = f"long-{uuid.uuid4().hex[:8]}"
    early = range(EARLY_STEP - WINDOW // 2, EARLY_STEP + WINDOW // 2)
    late = range(steps - WINDOW + 1, steps + 1)
    windows: dict[str, dict[str, Any]] = {}
    deadline = time.perf_counter() + timeout_s
    async with _started(producer(probe.bootstrap, 0)) as send:
        create = create_command(instance)
        await send.send_and_wait(probe.topics.commands, create.value, key=create.key)
        await _replied(probe, create.command_id, deadline)
        for n in range(1, steps + 1):
            if n in (early.start, late.start):
                started, cpu = time.perf_counter(), cpu_by_member(probe.deployment)
            command_id, value = _record_step(instance, n)
            await send.send_and_wait(probe.topics.commands, value, key=_key(instance))
            await _replied(probe, command_id, deadline)
            if n in (early.stop - 1, late.stop - 1):
                windows["early" if n < late.start else "late"] = _window(probe, started, cpu)
    return {
        "steps": steps,
        "early_step": EARLY_STEP,
        "early": windows["early"],
        "late": windows["late"],
        "ratio": round(windows["late"]["ms_per_step"] / windows["early"]["ms_per_step"], 2),
        **await _reads(probe, instance, deadline),
    }


def _key(instance: str) -> bytes:
    return instance_key(ACCOUNT, WORKFLOW, instance).encode()


def _record_step(instance: str, n: int) -> tuple[str, bytes]:
    command_id = str(uuid.uuid4())
    body = {
        "type": "RecordStep",
        "command_id": command_id,
        "account_id": ACCOUNT,
        "workflow_name": WORKFLOW,
        "instance_id": instance,
        "name": f"step {n % 10}",
        "output": {"n": n, "note": "x" * 100},
        "start_run": n == 1,
    }
    return command_id, msgspec.json.encode(body)


async def _replied(probe: Probe, command_id: str, deadline: float) -> None:
    if await probe.wait_replies([command_id], deadline) != 1:
        raise RuntimeError("the long instance's command was not answered in time")


def _window(probe: Probe, started: float, cpu_before: dict[str, float]) -> dict[str, Any]:
    cpu_after = cpu_by_member(probe.deployment)
    return {
        "ms_per_step": round(1000 * (time.perf_counter() - started) / WINDOW, 2),
        "cpu_ms_per_step": {
            name: round(1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / WINDOW, 2)
            for name in cpu_after
        },
    }


async def _reads(probe: Probe, instance: str, deadline: float) -> dict[str, Any]:
    """The instance over HTTP once the projection caught up, and two `as_of` reads."""
    path = instance_path(instance)
    while await probe.projection_lag() != 0 and time.perf_counter() < deadline:
        probe.deployment.check_alive()
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    result = (await probe.http.get(path)).json().get("result") or {}
    get_ms = round(1000 * (time.perf_counter() - started), 1)  # as_of's baseline: same size
    history = await probe.http.get(f"{path}/history", params={"per_page": 1})
    version = int(history.json()["result_info"]["total_count"])
    as_of_ms: dict[str, float] = {}
    for label, at in (("start", 50), ("end", version - 5)):
        for _ in range(2):  # the second: from the checkpoints the first one made
            started = time.perf_counter()
            answer = await probe.http.get(path, params={"as_of": str(at)}, timeout=60.0)
            as_of_ms[label] = round(1000 * (time.perf_counter() - started), 1)
            if answer.status_code != 200:
                raise RuntimeError(f"as_of={at} answered {answer.status_code}: {answer.text}")
    return {
        "step_count": result.get("step_count"),
        "version": version,
        "get_ms": get_ms,
        "as_of_ms": as_of_ms,
    }
