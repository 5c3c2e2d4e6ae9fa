"""The project's own Kafka provisioning, exercised against the real broker it provides."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.dev_provisioning.kafka import (
    KafkaProvisioningError,
    broker_status,
    ensure_kafka_jars,
    start_broker,
)
from services.infra.kafka_topics import ensure_topics


def _topic(purpose: str) -> str:
    return f"test.{purpose}.{uuid.uuid4().hex[:12]}"


@pytest.mark.kafka
async def test_idempotent_producer_round_trip_keeps_per_key_order(kafka_bootstrap: str) -> None:
    topic = _topic("roundtrip")
    await ensure_topics(kafka_bootstrap, {topic: 3})
    keys = [f"instance-{i}" for i in range(12)]
    sent: dict[str, list[str]] = defaultdict(list)
    partition_of: dict[str, int] = {}

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for seq in range(5):
            for key in keys:
                value = f"{key}:{seq}"
                meta = await producer.send_and_wait(topic, value.encode(), key=key.encode())
                sent[key].append(value)
                assert partition_of.setdefault(key, meta.partition) == meta.partition
    finally:
        await producer.stop()
    assert set(partition_of.values()) == {0, 1, 2}, "the keys should spread over all partitions"

    received: dict[str, list[str]] = defaultdict(list)
    offsets: dict[int, list[int]] = defaultdict(list)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"test-group-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while sum(map(len, received.values())) < len(keys) * 5:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    for record in records:
                        assert record.key is not None and record.value is not None
                        key = record.key.decode()
                        assert tp.partition == partition_of[key]
                        received[key].append(record.value.decode())
                        offsets[tp.partition].append(record.offset)
        await consumer.commit()
    finally:
        await consumer.stop()

    assert received == sent
    for partition_offsets in offsets.values():
        assert partition_offsets == sorted(partition_offsets)


@pytest.mark.kafka
def test_start_broker_on_a_running_state_dir_returns_that_broker(
    kafka_bootstrap: str, kafka_state_dir: Path
) -> None:
    running = broker_status(kafka_state_dir)
    if running is None:
        pytest.skip("this session's Kafka comes from the environment or Docker, not a local broker")
    assert running.bootstrap == kafka_bootstrap

    again = start_broker(kafka_state_dir)

    assert again == running
    assert (kafka_state_dir / "broker.pid").read_text().strip() == str(running.pid)
    props = str(kafka_state_dir.resolve() / "server.properties").encode()
    brokers = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and props in _cmdline(Path("/proc", pid, "cmdline"))
    ]
    assert brokers == [str(running.pid)]


def _cmdline(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_missing_java_names_the_jdk_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(KafkaProvisioningError, match="JDK 17") as info:
        start_broker(tmp_path / "broker")
    assert "\n" not in str(info.value)


def test_missing_maven_names_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("needs java on PATH to get as far as Maven")
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(os.path.realpath(java))
    monkeypatch.setenv("PATH", str(only_java))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("FLOWLEDGER_CACHE_DIR", str(tmp_path / "cache"))

    with pytest.raises(KafkaProvisioningError, match="install Apache Maven") as info:
        ensure_kafka_jars()
    assert "\n" not in str(info.value)
