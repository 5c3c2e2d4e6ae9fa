"""The figures the end-to-end ones are compared with, measured in the same run.

- Kafka round trip: small messages produced and consumed back through the same broker, with the
  same producer settings as the commands (a burst for msgs/s, a paced load for latency).
- Store only: the application deciding and saving CreateInstance batches, no Kafka, no HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from bench.load import LATENCY_LINGER_MS, THROUGHPUT_LINGER_MS, producer
from bench.stats import latency_summary, per_second
from contracts.commands import CreateInstance, RegisterWorkflow
from services.bootstrap import build_application
from services.infra.kafka_topics import ensure_topics
from services.settings import Settings

PAYLOAD = b"x" * 200  # about the size of a CreateInstance command


async def kafka_roundtrip(
    bootstrap: str, partitions: int, burst: int, rate: float, seconds: float
) -> dict[str, Any]:
    topic = f"bench-roundtrip-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, {topic: partitions})
    arrivals: dict[int, float] = {}
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()

    async def collect() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    arrivals[struct.unpack_from(">Q", record.value or b"")[0]] = now

    collector = asyncio.create_task(collect())
    try:
        figures = await _burst(bootstrap, topic, burst, arrivals)
        figures.update(await _paced(bootstrap, topic, burst, rate, seconds, arrivals))
        return figures
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await consumer.stop()
        await _delete_topic(bootstrap, topic)


def _message(seq: int) -> tuple[bytes, bytes]:
    return f"k{seq}".encode(), struct.pack(">Q", seq) + PAYLOAD


async def _wait_for(arrivals: dict[int, float], total: int, timeout_s: float) -> None:
    """Until `total` distinct messages have come back (sequence numbers are never reused)."""
    deadline = time.perf_counter() + timeout_s
    while len(arrivals) < total and time.perf_counter() < deadline:
        await asyncio.sleep(0.002)


async def _burst(
    bootstrap: str, topic: str, count: int, arrivals: dict[int, float]
) -> dict[str, Any]:
    messages = [_message(seq) for seq in range(count)]
    send = producer(bootstrap, THROUGHPUT_LINGER_MS)
    await send.start()
    try:
        start = time.perf_counter()
        acks = [await send.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*acks)
    finally:
        await send.stop()
    await _wait_for(arrivals, count, timeout_s=60)
    received = [arrivals[s] for s in range(count) if s in arrivals]
    last = max(received, default=start)
    return {
        "burst_messages": count,
        "burst_received": len(received),
        "kafka_roundtrip_msgs_per_s": per_second(len(received), last - start),
    }


async def _paced(
    bootstrap: str, topic: str, first: int, rate: float, seconds: float, arrivals: dict[int, float]
) -> dict[str, Any]:
    total = max(1, int(rate * seconds))
    sent_at: dict[int, float] = {}
    send = producer(bootstrap, LATENCY_LINGER_MS)
    await send.start()
    try:
        start = time.perf_counter()
        seq = first
        while seq < first + total:
            due = min(first + total, first + int((time.perf_counter() - start) * rate) + 1)
            while seq < due:
                key, value = _message(seq)
                sent_at[seq] = time.perf_counter()
                await send.send(topic, value, key=key)
                seq += 1
            await asyncio.sleep(max(0.0, start + (seq - first) / rate - time.perf_counter()))
        await send.flush()
    finally:
        await send.stop()
    await _wait_for(arrivals, first + total, timeout_s=30)
    latencies = [arrivals[s] - t for s, t in sent_at.items() if s in arrivals]
    missing = [float("inf")] * (total - len(latencies))
    return latency_summary(latencies + missing, "kafka_roundtrip")


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    with contextlib.suppress(Exception):
        await admin.start()
        await admin.delete_topics([topic])
    with contextlib.suppress(Exception):
        await admin.close()


def store_only(store: str, seconds: float, batch: int = 500) -> dict[str, Any]:
    """CreateInstance batches through `app.handle` (decide + save in one transaction)."""
    app = build_application(Settings(store=store))
    account, workflow = "bench", "bench"
    try:
        now = datetime.now(UTC)
        register = RegisterWorkflow(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name=workflow
        )
        app.handle([register], now)
        created, busy = 0, 0.0
        wall_start = time.perf_counter()
        while created == 0 or time.perf_counter() - wall_start < seconds:
            commands = [
                CreateInstance(
                    command_id=str(uuid.uuid4()),
                    account_id=account,
                    workflow_name=workflow,
                    instance_id=f"so-{created + n}",
                    params={"order": created + n, "amount": 42},
                )
                for n in range(batch)
            ]
            start = time.perf_counter()
            replies = app.handle(commands, datetime.now(UTC))
            busy += time.perf_counter() - start
            accepted = sum(r.outcome == "accepted" for r in replies)
            if accepted != batch:
                raise RuntimeError(f"store-only: {batch - accepted} of {batch} not accepted")
            created += batch
        return {"store_only_per_s": per_second(created, busy), "store_only_instances": created}
    finally:
        app.close()
