"""The workflow phase: runs of a one-step workflow (bench/one_step.py), created over Kafka and
run by the `flowledger worker` processes the bench started, timed from the create's publish to
the run being `complete` (its RunCompleted on the events topic, and readable over HTTP).

Two measurements, as for the commands: a burst of runs created at once (`workflow_runs_per_s`:
the clock stops when every run completed, the projection lag is 0 and the last 20 and 20 random
runs read `complete` over HTTP), then a paced load of WORKFLOW_RATE runs/s: create -> complete
and readable for every `sample_every`-th run (polled over HTTP from the moment its RunCompleted
reached the bench), create -> RunCompleted on the events topic for every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.load import Command, Probe, _publish_all, _started, create_command, instance_path
from bench.load import producer as make_producer
from bench.stats import latency_summary, per_second
from contracts.topics import Topics

WORKFLOW = "bench-flow"
WORKFLOW_RATE = 200.0  # runs/s of the paced measurement (issue 17)
GOALS = {"workflow_runs_per_s": 1000, "workflow_p99_ms": 250}
ENDED = {"RunCompleted": "complete", "RunFailed": "errored"}


class _EventHead(msgspec.Struct, forbid_unknown_fields=False):
    type: str
    workflow_name: str = ""
    instance_id: str | None = None


_event = msgspec.json.Decoder(_EventHead)


@dataclass
class Completions:
    """When each run of WORKFLOW ended, as its RunCompleted / RunFailed reached the bench."""

    consumer: AIOKafkaConsumer
    ended: dict[str, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    _waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)

    async def collect(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    head = _event.decode(record.value or b"{}")
                    if head.type not in ENDED or head.workflow_name != WORKFLOW:
                        continue
                    instance = head.instance_id or ""
                    self.ended.setdefault(instance, now)
                    if head.type == "RunFailed":
                        self.failed.add(instance)
                    waiter = self._waiters.pop(instance, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(now)

    def future(self, instance: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if instance in self.ended:
            future.set_result(self.ended[instance])
        else:
            self._waiters[instance] = future
        return future


@contextlib.asynccontextmanager
async def completions(bootstrap: str, prefix: str, partitions: int) -> AsyncIterator[Completions]:
    """Reads every partition of the events topic (declared by the bench with `partitions`)
    from its current end, without a group."""
    topic = Topics(prefix).events
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)  # resolved now: nothing published after is missed
        watcher = Completions(consumer)
        task = asyncio.create_task(watcher.collect())
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await consumer.stop()


async def _is_complete(probe: Probe, instance: str) -> bool:
    response = await probe.http.get(instance_path(instance, WORKFLOW))
    if response.status_code != 200:
        return False
    return bool(response.json().get("result", {}).get("status") == "complete")


def _replies(probe: Probe) -> int:
    return sum(probe.outcomes.values())


async def warm_up(probe: Probe, watcher: Completions, count: int, timeout_s: float) -> None:
    """`count` runs, all ended: the worker's group has joined and its caches are warm."""
    commands = [create_command(f"run-warm-{n}", WORKFLOW) for n in range(count)]
    async with _started(make_producer(probe.bootstrap, 0)) as send:
        await _publish_all(send, probe.topics.commands, commands)
    deadline = time.perf_counter() + timeout_s
    while any(c.instance_id not in watcher.ended for c in commands):
        probe.deployment.check_alive()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the worker did not run {count} warm-up runs in {timeout_s:g}s")
        await asyncio.sleep(0.05)


async def throughput(
    probe: Probe, watcher: Completions, count: int, timeout_s: float
) -> dict[str, Any]:
    """`count` runs created at once; done when all are complete and readable."""
    commands = [create_command(f"run-tp-{n}", WORKFLOW) for n in range(count)]
    ids = [c.instance_id for c in commands]
    replies_before = _replies(probe)
    async with _started(make_producer(probe.bootstrap, 5)) as send:
        start = time.perf_counter()
        deadline = start + timeout_s
        await _publish_all(send, probe.topics.commands, commands)
    while time.perf_counter() < deadline and any(i not in watcher.ended for i in ids):
        probe.deployment.check_alive()
        await asyncio.sleep(0.01)
    ended = sum(1 for i in ids if i in watcher.ended)
    readable_at = await _all_complete(probe, commands, deadline) if ended == count else None
    end = readable_at or time.perf_counter()
    await asyncio.sleep(0.5)  # the last replies to arrive before counting them
    return {
        "runs": count,
        "complete": readable_at is not None,
        "ended": ended,
        "failed": sum(1 for i in ids if i in watcher.failed),
        "runs_per_s": per_second(count if readable_at else 0, end - start),
        "seconds": round(end - start, 3),
        # Every command the runs took (creates and the worker's), from their replies.
        "commands_per_run": round((_replies(probe) - replies_before) / count, 2),
    }


async def _all_complete(probe: Probe, commands: list[Command], deadline: float) -> float | None:
    picked = commands[-20:] + random.sample(commands, min(20, len(commands)))
    sample = [c.instance_id for c in picked]
    while time.perf_counter() < deadline:
        probe.deployment.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if await probe.projection_lag() == 0:
                seen = time.perf_counter()
                checks = await asyncio.gather(*(_is_complete(probe, i) for i in sample))
                if all(checks):
                    return seen
        await asyncio.sleep(0.005)
    return None


async def latency(
    probe: Probe,
    watcher: Completions,
    rate: float,
    seconds: float,
    sample_every: int,
    poll_s: float,
    drain_s: float,
) -> dict[str, Any]:
    """A paced load of `rate` runs/s for `seconds`: create -> complete (event, and readable)."""
    total = max(1, int(rate * seconds))
    sent_at: dict[str, float] = {}
    readable: list[float] = []
    pollers: list[asyncio.Task[None]] = []
    async with _started(make_producer(probe.bootstrap, 0)) as send:
        start = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                command = create_command(f"run-lat-{sent}", WORKFLOW)
                now = time.perf_counter()
                if sent % sample_every == 0:
                    seen = watcher.future(command.instance_id)
                    poll = _poll(probe, command.instance_id, now, seen, readable, poll_s)
                    pollers.append(asyncio.create_task(poll))
                sent_at[command.instance_id] = now
                await send.send(probe.topics.commands, command.value, key=command.key)
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        offered_s = time.perf_counter() - start
        await send.flush()
    drain_deadline = time.perf_counter() + drain_s
    while time.perf_counter() < drain_deadline and any(i not in watcher.ended for i in sent_at):
        await asyncio.sleep(0.01)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*pollers, return_exceptions=True),
            max(0.1, drain_deadline - time.perf_counter()),
        )
    for task in pollers:
        task.cancel()
    ended = [watcher.ended[i] - t for i, t in sent_at.items() if i in watcher.ended]
    missing_ends = len(sent_at) - len(ended)
    missing_reads = len(pollers) - len(readable)
    inf = float("inf")  # a run never seen complete counts as slower than any other
    return {
        "rate": rate,
        "offered_per_s": per_second(total, offered_s),
        "runs": total,
        "unfinished": missing_ends,
        "unreadable": missing_reads,
        **latency_summary(ended + [inf] * missing_ends, "completed"),
        **latency_summary(readable + [inf] * missing_reads, "readable"),
    }


async def _poll(
    probe: Probe,
    instance: str,
    published: float,
    ended: asyncio.Future[float],
    out: list[float],
    poll_s: float,
) -> None:
    await ended
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if await _is_complete(probe, instance):
                out.append(time.perf_counter() - published)
                return
        await asyncio.sleep(poll_s)
