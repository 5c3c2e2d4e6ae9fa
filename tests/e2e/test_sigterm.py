"""SIGTERM drains the commands role: the batch in flight is saved, answered and its offsets
committed before the process exits, so a restart redelivers nothing that was answered.

The proof does not depend on when the signal lands: after the exit, a command has a reply
exactly when its offset is below the group's committed offset for its partition; after a
restart every command has exactly one reply, `accepted` (a redelivery would add a `duplicate`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.keys import raw_command_key as command_key
from tests.e2e.test_processes import create, register
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import Cluster, collect_until, process_client, wait_for_members
from tests.fixtures.service import KafkaClient, make_settings

pytestmark = pytest.mark.kafka

COMMANDS = 300


@pytest.fixture
async def client(kafka_bootstrap: str, store_url: str) -> AsyncIterator[KafkaClient]:
    async with process_client(make_settings(store_url), kafka_bootstrap) as kafka:
        yield kafka


async def send(client: KafkaClient, command: dict[str, Any]) -> tuple[int, int]:
    """Publishes one command; its (partition, offset) on the commands topic."""
    meta = await client.producer.send_and_wait(
        client.settings.topics.commands,
        json.dumps(command).encode(),
        key=command_key(command).encode(),
    )
    return meta.partition, meta.offset


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def read_to_end(client: KafkaClient, topic: str) -> None:
    """Consumes `topic` up to its current end: every reply published so far is then received."""
    partitions = client.settings.partitions
    consumer = client.consumer
    await collect_until(
        client,
        lambda: len([tp for tp in consumer.assignment() if tp.topic == topic]) == partitions,
        lambda: f"no assignment of {topic}",
        limit_s=DEADLINE_S,
    )
    ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    for tp, end in ends.items():
        while await consumer.position(tp) < end:
            await client._collect(0.2)


def replies_by_command(client: KafkaClient) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for message in client.received.get(client.settings.topics.replies, []):
        reply = message.json()
        found.setdefault(reply["command_id"], []).append(reply)
    return found


async def test_sigterm_drains_in_flight_commands_and_commits_them(
    client: KafkaClient, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = client.settings
    topics = settings.topics
    cluster = Cluster(settings, kafka_bootstrap)
    # Small batches: the signal lands inside one of many batches, not between two big ones.
    member = cluster.add("commands", "commands", tmp_path, FLOWLEDGER_BATCH_MAX_RECORDS="20")
    try:
        member.start()
        await member.running()
        await wait_for_members(kafka_bootstrap, settings.commands_group, 1, limit_s=DEADLINE_S)
        account = f"acc{uuid.uuid4().hex[:8]}"
        registration = register(account, "wf")
        positions = {registration["command_id"]: await send(client, registration)}
        assert (await client.reply(registration["command_id"]))["outcome"] == "accepted"

        commands = [create(account, "wf", f"i-{n:04d}") for n in range(COMMANDS)]
        sent = await asyncio.gather(*(send(client, c) for c in commands))
        positions |= {c["command_id"]: at for c, at in zip(commands, sent, strict=True)}
        await collect_until(
            client,
            lambda: len(replies_by_command(client)) >= 40,
            lambda: "the commands role answered nothing",
            limit_s=DEADLINE_S,
            check=member.alive,
        )
        # Replies come right after a batch ends; a moment later the next batch is being decided
        # (a batch takes longer than this), so the signal lands inside one, not between two.
        await asyncio.sleep(0.05)
        answered_at_signal = len(replies_by_command(client))
        member.signal(signal.SIGTERM)
        assert member.proc is not None
        assert await asyncio.to_thread(member.proc.wait, 60) == 0, member.output()

        # Everything decided before the exit is answered and committed, nothing more or less.
        committed = await committed_offsets(
            kafka_bootstrap, settings.commands_group, topics.commands
        )
        await read_to_end(client, topics.replies)
        answered = replies_by_command(client)
        for command_id, (partition, offset) in positions.items():
            assert (command_id in answered) == (offset < committed.get(partition, 0)), (
                f"{command_id} at {partition}@{offset}: committed {committed}"
            )
        print(f"{answered_at_signal} answered at SIGTERM, {len(answered)} by the exit")
        assert len(answered) < len(positions), "all answered before the signal: nothing tested"

        member.start()
        await member.running()
        await collect_until(
            client,
            lambda: set(positions) <= set(replies_by_command(client)),
            lambda: "commands unanswered after the restart",
            limit_s=DEADLINE_S,
            check=member.alive,
        )
        # Kafka redelivers in offset order: anything redelivered precedes the last answers.
        await read_to_end(client, topics.replies)
        answered = replies_by_command(client)
        outcomes = Counter(r["outcome"] for rs in answered.values() for r in rs)
        assert outcomes == Counter(accepted=len(positions)), outcomes
        assert member.stop() == 0, member.output()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        member.stop()
