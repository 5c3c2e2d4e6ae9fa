"""`kill -9` of the scheduler with timers pending, then a restart: every timer fires, each
effect is applied once, and nothing fires before its time. Roles as processes, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import Cluster, collect_until, process_client
from tests.fixtures.service import KafkaClient, make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

INSTANCES = 12
SLEEP_MS = 3_000


@pytest.fixture
async def client(kafka_bootstrap: str, postgres_dsn: str) -> AsyncIterator[KafkaClient]:
    async with process_client(make_settings(postgres_dsn), kafka_bootstrap) as kafka:
        yield kafka


def _command(account: str, kind: str, instance: str | None = None, **fields: Any) -> dict[str, Any]:
    command = {
        "type": kind,
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": "wf",
        **fields,
    }
    if instance is not None:
        command["instance_id"] = instance
    return command


async def _answered(client: KafkaClient, commands: list[dict[str, Any]]) -> None:
    for command in commands:
        await client.send(command)
    for command in commands:
        reply = await client.reply(command["command_id"])
        assert reply["outcome"] == "accepted", reply


async def test_a_scheduler_killed_with_timers_pending_fires_each_once_after_restart(
    client: KafkaClient, kafka_bootstrap: str, tmp_path: Path
) -> None:
    cluster = Cluster(client.settings, kafka_bootstrap)
    for role in ("commands", "relay", "scheduler"):
        cluster.add(role, role, tmp_path)
    account = f"acc{uuid.uuid4().hex[:8]}"
    instances = [f"nap-{n}" for n in range(INSTANCES)]
    try:
        for process in cluster.roles.values():
            process.start()
        for process in cluster.roles.values():
            await process.running()

        await _answered(client, [_command(account, "RegisterWorkflow")])
        await _answered(
            client,
            [
                command
                for instance in instances
                for command in (
                    _command(account, "CreateInstance", instance),
                    _command(account, "StartRun", instance),
                    _command(
                        account,
                        "BeginStep",
                        instance,
                        name="nap",
                        step_type="sleep",
                        sleep_ms=SLEEP_MS,
                    ),
                )
            ],
        )
        cluster.roles["scheduler"].kill9()  # every sleep pending, some perhaps not yet folded
        await asyncio.sleep(SLEEP_MS / 1000 + 1)  # the outage: the sleeps fall due meanwhile
        cluster.roles["scheduler"].start()
        await cluster.roles["scheduler"].running()

        def events(kind: str) -> dict[str, list[dict[str, Any]]]:
            found: dict[str, list[dict[str, Any]]] = {}
            for message in client.received.get(client.settings.topics.events, []):
                event = message.json()
                if event.get("account_id") == account and event["type"] == kind:
                    found.setdefault(event["instance_id"], []).append(event)
            return found

        await collect_until(
            client,
            lambda: set(events("StepEnded")) == set(instances),
            lambda: f"{len(events('StepEnded'))} of {INSTANCES} sleeps ended\n{cluster.logs()}",
            DEADLINE_S,
        )
        began, ended = events("StepBegan"), events("StepEnded")
        for instance in instances:
            # Applied once: one StepEnded (by event id, across redeliveries), one version.
            assert len({e["event_id"] for e in ended[instance]}) == 1, ended[instance]
            start = datetime.fromisoformat(began[instance][0]["occurred_at"])
            end = datetime.fromisoformat(ended[instance][0]["occurred_at"])
            assert (end - start).total_seconds() * 1000 >= SLEEP_MS  # never early
    finally:
        for process in cluster.roles.values():
            process.stop()
