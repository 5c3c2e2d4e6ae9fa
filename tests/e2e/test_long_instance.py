"""A long instance over the real broker, on both stores (issue 28 part 3's acceptance): 1,500
RecordStep commands, published in order in small pipelined batches, each batch's replies
awaited; the last 100 steps take at most 1.5x (plus 0.5 s) the time of the first 100, measured
in the same run, and the instance reads at the end with its 1,500 steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from services.bootstrap import Service
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.service import KafkaClient

pytestmark = pytest.mark.kafka

STEPS = 1_500
BATCH = 10  # commands published together, then their replies awaited
WINDOW = 100  # the first and the last this many steps are timed
BOUND_RATIO, BOUND_SLACK_S = 1.5, 0.5


class Replies:
    """Every reply on the replies topic, by command id (the shared client's `reply` scans all
    it has seen on each call: over 1,500 commands that scan would itself grow with time)."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.by_command: dict[str, dict[str, Any]] = {}

    async def wait(self, command_ids: list[str]) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while any(c not in self.by_command for c in command_ids):
            assert asyncio.get_running_loop().time() < deadline, "replies did not come"
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    reply = json.loads(record.value or b"{}")
                    self.by_command[reply["command_id"]] = reply
        return [self.by_command[c] for c in command_ids]


@pytest.fixture
async def replies(service: Service, kafka_bootstrap: str) -> AsyncIterator[Replies]:
    consumer = AIOKafkaConsumer(
        service.settings.topics.replies,
        bootstrap_servers=kafka_bootstrap,
        group_id="test-" + uuid.uuid4().hex,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        yield Replies(consumer)
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer.stop(), 15)


class LongInstance:
    def __init__(self, kafka: KafkaClient, replies: Replies, new_id: str) -> None:
        self.kafka, self.replies = kafka, replies
        self.account, self.workflow, self.instance = f"acc{new_id}", "long", f"long-{new_id}"

    def command(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "command_id": str(uuid.uuid4()), "account_id": self.account,
                "workflow_name": self.workflow, **fields}  # fmt: skip

    async def accepted(self, commands: list[dict[str, Any]]) -> None:
        for command in commands:
            await self.kafka.producer.send(
                self.kafka.settings.topics.commands,
                json.dumps(command).encode(),
                key=self.key(command).encode(),
            )
        await self.kafka.producer.flush()
        answers = await self.replies.wait([c["command_id"] for c in commands])
        assert all(a["outcome"] == "accepted" for a in answers), answers

    def key(self, command: dict[str, Any]) -> str:
        if command["type"] == "RegisterWorkflow":
            return f"{self.account}/{self.workflow}"
        return f"{self.account}/{self.workflow}/{self.instance}"

    def step(self, n: int) -> dict[str, Any]:
        return self.command("RecordStep", instance_id=self.instance, name=f"step {n % 7}",
                            output={"n": n, "note": "x" * 100}, start_run=n == 1)  # fmt: skip

    async def steps(self, first: int, last: int) -> float:
        """Records steps first..last in batches; the seconds it took."""
        started = time.perf_counter()
        for start in range(first, last + 1, BATCH):
            await self.accepted([self.step(n) for n in range(start, min(start + BATCH, last + 1))])
        return time.perf_counter() - started


async def _read_when_caught_up(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while True:
        body: dict[str, Any] = (await http.get(path)).json()
        if (body.get("result") or {}).get("step_count") == STEPS:
            return body
        assert asyncio.get_running_loop().time() < deadline, body.get("result", {}).keys()
        await asyncio.sleep(0.2)


async def test_the_last_steps_of_a_long_instance_cost_what_its_first_did(
    kafka: KafkaClient, replies: Replies, http: httpx.AsyncClient, new_id: str
) -> None:
    long = LongInstance(kafka, replies, new_id)
    await long.accepted([long.command("RegisterWorkflow")])
    await long.accepted([long.command("CreateInstance", instance_id=long.instance)])

    first = await long.steps(1, WINDOW)
    await long.steps(WINDOW + 1, STEPS - WINDOW)
    last = await long.steps(STEPS - WINDOW + 1, STEPS)

    print(f"first {WINDOW} steps {first:.2f}s, last {WINDOW} steps {last:.2f}s")
    assert last <= BOUND_RATIO * first + BOUND_SLACK_S, (first, last)
    path = f"/client/v4/accounts/{long.account}/workflows/{long.workflow}/instances/{long.instance}"
    body = await _read_when_caught_up(http, path)
    assert body["result"]["status"] == "running"
    assert len(body["result"]["steps"]) == STEPS
    assert json.loads(body["result"]["steps"][-1]["output"])["n"] == STEPS
