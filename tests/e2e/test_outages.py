"""Outages the service rides out without a restart of its own.

The broker (a broker of this test's own, so the session's stays up) is stopped mid-burst for
longer than a producer's request timeout and started again on the same port; the store
(a PostgreSQL server of this test's own) likewise. Afterwards every command is answered and
applied once, the events topic holds at most a small multiple of the stored events, and
`/readyz` said "not ready" while the part was away.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts.keys import raw_command_key as command_key
from services.bootstrap import Service, start_service
from services.dev_provisioning.kafka import KafkaProvisioningError, start_broker, stop_broker
from services.dev_provisioning.postgres import (
    PostgresProvisioningError,
    create_database_on,
    start_postgres,
    stop_postgres,
)
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import collect_until, until
from tests.fixtures.service import TOKEN, KafkaClient, kafka_client, make_settings

pytestmark = pytest.mark.kafka

BROKER_OUTAGE_S = 35.0  # past aiokafka's request timeout: the case that used to wedge producers
STORE_OUTAGE_S = 10.0
BURST = 300
# Each stored event is relayed once per relay attempt; a few retried batches stay well below.
MAX_EVENTS_PER_STORED_EVENT = 3


def _required(reason: str) -> None:
    if os.environ.get("FLOWLEDGER_REQUIRE_BACKENDS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class OwnBroker:
    state: Path
    bootstrap: str

    async def stop(self) -> None:
        await asyncio.to_thread(stop_broker, self.state)

    async def start(self) -> None:
        port = int(self.bootstrap.rsplit(":", 1)[1])
        await asyncio.to_thread(start_broker, self.state, port=port)


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[OwnBroker]:
    state = tmp_path / "kafka"
    try:
        broker = await asyncio.to_thread(start_broker, state)
    except KafkaProvisioningError as error:
        _required(f"no local broker of its own: {error}")
    try:
        yield OwnBroker(state, broker.bootstrap)
    finally:
        await asyncio.to_thread(stop_broker, state)


def _create(account: str, workflow: str, instance_id: str) -> dict[str, Any]:
    return {
        "type": "CreateInstance",
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
        "instance_id": instance_id,
        "params": {"n": instance_id},
    }


async def _publish(bootstrap: str, topic: str, commands: list[dict[str, Any]]) -> None:
    """A producer of its own: one that lived through the outage may be wedged itself."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        acks = [
            await producer.send(topic, json.dumps(c).encode(), key=command_key(c).encode())
            for c in commands
        ]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


def _answered(client: KafkaClient) -> set[str]:
    return {m.json()["command_id"] for m in client.received.get(client.settings.topics.replies, [])}


async def _wait_ready(service: Service, ready: bool) -> None:
    await until(
        lambda: service.readiness()["ready"] is ready,
        f"/readyz never said ready={ready}: {service.readiness()}",
        DEADLINE_S,
    )


async def _run_burst_across(
    service: Service,
    client: KafkaClient,
    bootstrap: str,
    outage: Callable[[], Any],
) -> tuple[str, list[dict[str, Any]]]:
    """Registers a workflow, sends a burst, runs `outage` once part of it is answered, sends a
    second burst, and waits until every command is answered."""
    topic = service.settings.topics.commands
    account, workflow = f"acc{uuid.uuid4().hex[:8]}", "orders"
    registration = {
        "type": "RegisterWorkflow",
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
    }
    await _publish(bootstrap, topic, [registration])
    assert (await client.reply(registration["command_id"]))["outcome"] == "accepted"

    first = [_create(account, workflow, f"a{n:04d}") for n in range(BURST)]
    second = [_create(account, workflow, f"b{n:04d}") for n in range(BURST // 3)]
    await _publish(bootstrap, topic, first)
    first_ids = {c["command_id"] for c in first}
    await collect_until(
        client, lambda: len(first_ids & _answered(client)) >= 30, lambda: "no replies", DEADLINE_S
    )
    await outage()
    await _publish(bootstrap, topic, second)
    wanted = first_ids | {c["command_id"] for c in second}
    await collect_until(
        client,
        lambda: wanted <= _answered(client),
        lambda: f"{len(wanted - _answered(client))} of {len(wanted)} commands unanswered",
        3 * DEADLINE_S,
    )
    return account, first + second


async def _assert_applied_once(
    service: Service, client: KafkaClient, account: str, commands: list[dict[str, Any]]
) -> None:
    replies: dict[str, set[tuple[Any, ...]]] = {}
    for message in client.received.get(client.settings.topics.replies, []):
        reply = message.json()
        replies.setdefault(reply["command_id"], set()).add(
            (reply["outcome"] == "rejected", reply.get("instance_id"), reply.get("version"))
        )
    for command in commands:
        # Accepted once, maybe answered `duplicate` again after a redelivery: the same answer.
        assert replies[command["command_id"]] == {(False, command["instance_id"], 1)}, command
        instance = await asyncio.to_thread(
            service.app.get_instance, account, "orders", command["instance_id"]
        )
        assert instance.version == 1  # created once, nothing applied twice


async def _assert_events_bounded(client: KafkaClient, account: str, stored: int) -> None:
    topic = client.settings.topics.events

    def ours() -> list[dict[str, Any]]:
        return [
            e for m in client.received.get(topic, []) if (e := m.json())["account_id"] == account
        ]

    await collect_until(
        client,
        lambda: len({e["event_id"] for e in ours()}) >= stored,
        lambda: f"{len({e['event_id'] for e in ours()})} of {stored} events relayed",
        DEADLINE_S,
    )
    assert len(ours()) <= MAX_EVENTS_PER_STORED_EVENT * stored, (len(ours()), stored)


async def test_a_broker_outage_mid_burst_ends_with_every_command_answered_once(
    own_broker: OwnBroker, tmp_path: Path
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'store.db'}", stuck_after_s=5.0)
    service = await start_service(settings, own_broker.bootstrap)
    transport = httpx.ASGITransport(app=service.api)
    http = httpx.AsyncClient(
        transport=transport, base_url="http://f", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        async with kafka_client(settings, own_broker.bootstrap) as client:

            async def outage() -> None:
                await own_broker.stop()
                await _wait_ready(service, False)
                assert (await http.get("/readyz")).status_code == 503
                write = await http.post(
                    f"/client/v4/accounts/{uuid.uuid4().hex[:8]}/workflows/orders/instances",
                    json={"instance_id": "during-outage"},
                )
                assert write.status_code == 503, write.text
                await asyncio.sleep(BROKER_OUTAGE_S)  # the outage itself, not a measurement
                await own_broker.start()

            account, commands = await _run_burst_across(
                service, client, own_broker.bootstrap, outage
            )
            await _assert_applied_once(service, client, account, commands)
            # Every create stored one event, plus the workflow's registration.
            await _assert_events_bounded(client, account, len(commands) + 1)
            await _wait_ready(service, True)
    finally:
        await http.aclose()
        await service.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> tuple[Path, str]:
    data_dir = tmp_path / "postgres"
    try:
        server = start_postgres(data_dir)
    except PostgresProvisioningError as error:
        _required(f"no PostgreSQL of its own: {error}")
    return data_dir, server.dsn()


@pytest.mark.postgres
async def test_a_store_restart_mid_burst_ends_with_every_command_answered_once(
    own_postgres: tuple[Path, str], kafka_bootstrap: str
) -> None:
    data_dir, admin_dsn = own_postgres
    port = int(admin_dsn.rsplit(":", 1)[1].split("/")[0])
    store = create_database_on(admin_dsn, f"t_outage_{uuid.uuid4().hex[:8]}")
    settings = make_settings(store, stuck_after_s=5.0)
    service = await start_service(settings, kafka_bootstrap)
    try:
        async with kafka_client(settings, kafka_bootstrap) as client:

            async def outage() -> None:
                await asyncio.to_thread(stop_postgres, data_dir)
                await _wait_ready(service, False)
                assert service.readiness()["store"] == "down"
                await asyncio.sleep(STORE_OUTAGE_S)
                await asyncio.to_thread(start_postgres, data_dir, port=port)

            account, commands = await _run_burst_across(service, client, kafka_bootstrap, outage)
            await _assert_applied_once(service, client, account, commands)
            await _assert_events_bounded(client, account, len(commands) + 1)
            await _wait_ready(service, True)
    finally:
        await service.stop()
        await asyncio.to_thread(stop_postgres, data_dir)
