"""The worker's bookkeeping without Kafka: which events wake an instance, how wake-ups
coalesce, and which offsets may be committed."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition

from flowledger.replay import InstanceHistory, Outcome
from flowledger.workflows import WorkflowEntrypoint
from services.worker.runtime import WorkerRuntime, _EventHead

TP = TopicPartition("p.events", 0)


class _History:
    """Every instance is complete: a wake-up reads it and finds nothing to do."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.version = 5

    async def load(self, account: str, workflow: str, instance: str) -> InstanceHistory:
        self.loads.append(instance)
        await self.gate.wait()
        return InstanceHistory(account, workflow, instance, "complete", 1, self.version)


def _runtime(history: _History, accounts: tuple[str, ...] = ()) -> WorkerRuntime:
    return WorkerRuntime(
        bootstrap="unused:9092",
        events_topic=TP.topic,
        group_id="g",
        entry=WorkflowEntrypoint(),
        workflow="wf",
        accounts=accounts,
        concurrency=2,
        history=history,  # type: ignore[arg-type]
        channel=None,  # type: ignore[arg-type]
    )


def _event(version: int, **fields: Any) -> bytes:
    body = {"type": "StepEnded", "account_id": "a", "workflow_name": "wf", "instance_id": "i"}
    return json.dumps({**body, "version": version, **fields}).encode()


def _read(runtime: WorkerRuntime, offset: int, value: bytes) -> None:
    runtime._read(TP, offset, value, msgspec.json.Decoder(_EventHead).decode)


async def _settled(runtime: WorkerRuntime) -> None:
    for _ in range(100):
        if all(s.task is None for s in runtime._slots.values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("wake-ups never ended")


async def test_events_of_other_workflows_accounts_or_unreadable_are_done_at_once() -> None:
    history = _History()
    runtime = _runtime(history, accounts=("a",))
    _read(runtime, 0, _event(1, workflow_name="other"))
    _read(runtime, 1, _event(1, account_id="b"))
    _read(runtime, 2, b"not json")
    _read(runtime, 3, _event(1, type="WorkflowRegistered", instance_id=None))
    assert history.loads == [] and runtime._committable(TP) == 4


async def test_an_event_is_committable_once_its_wake_up_ended_and_others_coalesce() -> None:
    history = _History()
    history.gate.clear()
    runtime = _runtime(history)
    _read(runtime, 0, _event(1))
    await asyncio.sleep(0.01)  # the wake-up is under way, held in its load
    _read(runtime, 1, _event(2))
    _read(runtime, 2, _event(3))
    assert runtime._committable(TP) == 0
    history.gate.set()
    await _settled(runtime)
    assert history.loads == ["i", "i"]  # one wake-up for offset 0, one for 1 and 2 together
    assert runtime._committable(TP) == 3
    _read(runtime, 3, _event(4))  # no newer than the version the last load saw (5)
    await _settled(runtime)
    assert history.loads == ["i", "i"] and runtime._committable(TP) == 4
    _read(runtime, 4, _event(6))
    await _settled(runtime)
    assert history.loads == ["i", "i", "i"] and runtime._committable(TP) == 5


@pytest.mark.parametrize("log_content", [False, True])
def test_a_wake_ups_log_line_carries_user_content_only_when_asked(
    caplog: pytest.LogCaptureFixture, log_content: bool
) -> None:
    runtime = _runtime(_History())
    runtime.log_content = log_content
    with caplog.at_level(logging.INFO, logger="flowledger.worker"):
        runtime._record("a/wf/i", Outcome("failed", "ValueError", content="card 4111 declined"))
    assert "a/wf/i: failed (ValueError" in caplog.text
    assert ("card 4111 declined" in caplog.text) is log_content
