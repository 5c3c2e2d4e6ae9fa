"""The client side of the end-to-end runs: publishes commands, collects replies, reads over HTTP.

All times are `time.perf_counter()` in this one process: publish, reply arrival and the first
200 from the read model are measured on the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.service import TOKEN, Deployment
from bench.stats import latency_summary, per_second
from contracts.keys import instance_key, workflow_key
from contracts.topics import Topics

ACCOUNT, WORKFLOW = "bench", "bench"
THROUGHPUT_LINGER_MS = 5  # batching for the bursts
LATENCY_LINGER_MS = 0  # nothing held back at a paced load


class ReplyHead(msgspec.Struct):
    command_id: str
    outcome: str


_reply = msgspec.json.Decoder(ReplyHead)


def producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    """The same producer settings for the commands and for the Kafka baseline."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
    )


@dataclass
class Command:
    command_id: str
    instance_id: str
    key: bytes
    value: bytes


def create_command(instance_id: str, workflow: str = WORKFLOW) -> Command:
    command_id = str(uuid.uuid4())
    body = {
        "type": "CreateInstance",
        "command_id": command_id,
        "account_id": ACCOUNT,
        "workflow_name": workflow,
        "instance_id": instance_id,
        "params": {"order": instance_id, "amount": 42},
    }
    key = instance_key(ACCOUNT, workflow, instance_id).encode()
    return Command(command_id, instance_id, key, msgspec.json.encode(body))


def instance_path(instance_id: str, workflow: str = WORKFLOW) -> str:
    return f"/client/v4/accounts/{ACCOUNT}/workflows/{workflow}/instances/{instance_id}"


@dataclass
class Probe:
    """Speaks to one deployment as a producer and a reader would."""

    bootstrap: str
    deployment: Deployment
    http: httpx.AsyncClient
    consumer: AIOKafkaConsumer
    arrivals: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    _waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)

    @property
    def topics(self) -> Topics:
        return Topics(self.deployment.prefix)

    async def _collect(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    reply = _reply.decode(record.value or b"{}")
                    self.arrivals.setdefault(reply.command_id, now)
                    self.outcomes[reply.outcome] = self.outcomes.get(reply.outcome, 0) + 1
                    waiter = self._waiters.pop(reply.command_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(now)

    def reply_future(self, command_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if command_id in self.arrivals:
            future.set_result(self.arrivals[command_id])
        else:
            self._waiters[command_id] = future
        return future

    async def wait_replies(self, command_ids: list[str], deadline: float) -> int:
        """How many of `command_ids` have a reply once all do or the deadline passes."""
        pending = [cid for cid in command_ids if cid not in self.arrivals]
        while pending and time.perf_counter() < deadline:
            self.deployment.check_alive()
            await asyncio.sleep(0.005)
            pending = [cid for cid in pending if cid not in self.arrivals]
        return len(command_ids) - len(pending)

    async def projection_lag(self) -> int | None:
        response = await self.http.get("/readyz")
        if response.status_code != 200:
            return None
        lag = response.json().get("projection_lag") or {}
        return sum(lag.values()) if isinstance(lag, dict) else int(lag)

    async def readable(self, instance_id: str) -> bool:
        return (await self.http.get(instance_path(instance_id))).status_code == 200

    # --- set-up --------------------------------------------------------------------------

    async def wait_started(self, timeout_s: float = 90.0) -> None:
        deadline = time.perf_counter() + timeout_s
        while True:
            self.deployment.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if self.deployment.all_started() and await self.projection_lag() is not None:
                    return
            if time.perf_counter() > deadline:
                raise RuntimeError(f"service not ready in {timeout_s:.0f}s")
            await asyncio.sleep(0.2)

    async def register_and_warm_up(self, count: int, timeout_s: float = 60.0) -> None:
        """RegisterWorkflow, then `count` creates: every partition has a live consumer after."""
        register = {
            "type": "RegisterWorkflow",
            "command_id": str(uuid.uuid4()),
            "account_id": ACCOUNT,
            "workflow_name": WORKFLOW,
        }
        async with _started(producer(self.bootstrap, LATENCY_LINGER_MS)) as send:
            await send.send_and_wait(
                self.topics.commands,
                msgspec.json.encode(register),
                key=workflow_key(ACCOUNT, WORKFLOW).encode(),
            )
            deadline = time.perf_counter() + timeout_s
            if await self.wait_replies([register["command_id"]], deadline) != 1:
                raise RuntimeError("no reply to RegisterWorkflow")
            commands = [create_command(f"warm-{uuid.uuid4().hex[:8]}-{n}") for n in range(count)]
            await _publish_all(send, self.topics.commands, commands)
            if await self.wait_replies([c.command_id for c in commands], deadline) != count:
                raise RuntimeError("warm-up commands unanswered")

    # --- the two measurements ------------------------------------------------------------

    async def throughput(self, count: int, timeout_s: float) -> dict[str, Any]:
        """`count` creates published at once; done when all are replied and readable."""
        commands = [create_command(f"tp-{n}") for n in range(count)]
        ids = [c.command_id for c in commands]
        async with _started(producer(self.bootstrap, THROUGHPUT_LINGER_MS)) as send:
            start = time.perf_counter()
            deadline = start + timeout_s
            await _publish_all(send, self.topics.commands, commands)
            published = time.perf_counter()
        replied = await self.wait_replies(ids, deadline)
        last_reply = max((self.arrivals[i] for i in ids if i in self.arrivals), default=start)
        readable_at = await self._all_readable(commands, deadline) if replied == count else None
        end = readable_at or time.perf_counter()
        rejected = self.outcomes.get("rejected", 0)
        return {
            "commands": count,
            "complete": readable_at is not None,
            "replied": replied,
            "rejected_total": rejected,
            "publish_per_s": per_second(count, published - start),
            "replies_per_s": per_second(replied, last_reply - start),
            "e2e_commands_per_s": per_second(count if readable_at else 0, end - start),
            "seconds": round(end - start, 3),
        }

    async def _all_readable(self, commands: list[Command], deadline: float) -> float | None:
        """When the projection lag is 0 and the last and some random instances answer 200."""
        sample = commands[-20:] + random.sample(commands, min(20, len(commands)))
        while time.perf_counter() < deadline:
            self.deployment.check_alive()
            if await self.projection_lag() == 0:
                seen = time.perf_counter()
                checks = await asyncio.gather(*(self.readable(c.instance_id) for c in sample))
                if all(checks):
                    return seen
            await asyncio.sleep(0.005)
        return None

    async def latency(
        self, rate: float, seconds: float, sample_every: int, poll_s: float, drain_s: float
    ) -> dict[str, Any]:
        """A paced load of `rate` creates/s for `seconds`: publish -> reply, publish -> readable.

        A sampled instance is polled over HTTP from the moment its reply arrives (as a client
        that reads its own write would), every `poll_s`, until the first 200.
        """
        total = max(1, int(rate * seconds))
        sent_at: dict[str, float] = {}
        readable: list[float] = []
        pollers: list[asyncio.Task[None]] = []
        async with _started(producer(self.bootstrap, LATENCY_LINGER_MS)) as send:
            start = time.perf_counter()
            sent = 0
            while sent < total:
                due = min(total, int((time.perf_counter() - start) * rate) + 1)
                while sent < due:
                    command = create_command(f"lat-{sent}")
                    if sent % sample_every == 0:
                        reply = self.reply_future(command.command_id)
                        poll = self._poll_readable(command, reply, readable, poll_s)
                        pollers.append(asyncio.create_task(poll))
                    sent_at[command.command_id] = time.perf_counter()
                    await send.send(self.topics.commands, command.value, key=command.key)
                    sent += 1
                await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
            offered_s = time.perf_counter() - start
            await send.flush()
        drain_deadline = time.perf_counter() + drain_s
        await self.wait_replies(list(sent_at), drain_deadline)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*pollers, return_exceptions=True),
                max(0.1, drain_deadline - time.perf_counter()),
            )
        for task in pollers:
            task.cancel()
        replies = [self.arrivals[c] - t for c, t in sent_at.items() if c in self.arrivals]
        missing_replies = len(sent_at) - len(replies)
        missing_reads = len(pollers) - len(readable)
        inf = float("inf")  # an unanswered command counts as slower than any answered one
        return {
            "rate": rate,
            "offered_per_s": per_second(total, offered_s),
            "commands": total,
            "reply_missing": missing_replies,
            "readable_missing": missing_reads,
            **latency_summary(replies + [inf] * missing_replies, "reply"),
            **latency_summary(readable + [inf] * missing_reads, "readable"),
        }

    async def _poll_readable(
        self, command: Command, reply: asyncio.Future[float], out: list[float], poll_s: float
    ) -> None:
        published = time.perf_counter()
        await reply
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if await self.readable(command.instance_id):
                    out.append(time.perf_counter() - published)
                    return
            await asyncio.sleep(poll_s)


async def _publish_all(send: AIOKafkaProducer, topic: str, commands: list[Command]) -> None:
    """As fast as the broker takes them: enqueue everything, then wait for every ack."""
    acks = [await send.send(topic, c.value, key=c.key) for c in commands]
    await asyncio.gather(*acks)


@contextlib.asynccontextmanager
async def _started(client: AIOKafkaProducer) -> Any:
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@contextlib.asynccontextmanager
async def probe(bootstrap: str, deployment: Deployment) -> Any:
    """A started Probe: replies consumer running, HTTP client on the api process."""
    consumer = AIOKafkaConsumer(
        Topics(deployment.prefix).replies,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=deployment.http_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        limits=limits,
        timeout=10.0,
    ) as http:
        await consumer.start()
        client = Probe(bootstrap, deployment, http, consumer)
        collector = asyncio.create_task(client._collect())
        try:
            yield client
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
            await consumer.stop()
