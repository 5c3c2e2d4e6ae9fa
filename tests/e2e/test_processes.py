"""The production shape: every role its own OS process, on PostgreSQL, over the real broker.

Two commands members share the partitions; one is `kill -9`ed mid-stream and later restarted
(it loses and regains partitions while the other member is busy); the relay is `kill -9`ed and
restarted too. Then the ledger must still be exact: every command answered, every instance in
the read model once, one `InstanceCreated` event id per instance, gap-free versions.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import commands as c
from projections import cloudflare_instance
from services.application.app import FlowledgerApplication
from services.bootstrap import build_application, open_views
from services.settings import Settings
from services.store.document_view import Query
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import (
    Cluster,
    collect_until,
    free_port,
    process_client,
    until,
    wait_for_members,
)
from tests.fixtures.service import TOKEN, KafkaClient, make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

CHUNK = 20
BURST = 120
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
async def client(kafka_bootstrap: str, postgres_dsn: str) -> AsyncIterator[KafkaClient]:
    settings = make_settings(postgres_dsn).model_copy(update={"partitions": 4})
    async with process_client(settings, kafka_bootstrap) as kafka:
        yield kafka


def register(account: str, workflow: str) -> dict[str, Any]:
    return {
        "type": "RegisterWorkflow",
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
    }


def create(account: str, workflow: str, instance_id: str) -> dict[str, Any]:
    return {
        "type": "CreateInstance",
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
        "instance_id": instance_id,
        "params": {"instance": instance_id},
    }


def pause(account: str, workflow: str, instance_id: str) -> dict[str, Any]:
    return {
        "type": "ChangeStatus",
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
        "instance_id": instance_id,
        "action": "pause",
    }


async def test_roles_as_processes_survive_kill_9(
    client: KafkaClient, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = client.settings
    topics = settings.topics
    cluster = Cluster(settings, kafka_bootstrap)
    port = free_port()
    # Small batches: more store commits and offset commits for the kill to fall between.
    member_a = cluster.add("commands-a", "commands", tmp_path, FLOWLEDGER_BATCH_MAX_RECORDS="50")
    cluster.add("commands-b", "commands", tmp_path, FLOWLEDGER_BATCH_MAX_RECORDS="50")
    ops_port = free_port()
    relay = cluster.add("relay", "relay", tmp_path, FLOWLEDGER_OPS_PORT=str(ops_port))
    projections = cluster.add("projections", "projections", tmp_path, FLOWLEDGER_LOG_FORMAT="json")
    cluster.add("api", "api", tmp_path, FLOWLEDGER_HTTP_PORT=str(port))
    try:
        # All at once, as `docker compose up` starts them: schema creation races included.
        for role in cluster.roles.values():
            role.start()
        for role in cluster.roles.values():
            await role.running()
        await wait_for_members(kafka_bootstrap, settings.commands_group, 2, limit_s=DEADLINE_S)

        account, workflow = f"acc{uuid.uuid4().hex[:8]}", "orders"
        registration = register(account, workflow)
        await client.send(registration)
        assert (await client.reply(registration["command_id"]))["outcome"] == "accepted"

        commands: list[dict[str, Any]] = []
        instance_ids: list[str] = []
        replies, events = topics.replies, topics.events

        def answered() -> set[str]:
            return {m.json()["command_id"] for m in client.received.get(replies, [])}

        async def send_chunk(size: int) -> set[str]:
            """Creates `size` instances, each followed by its pause (same key, same partition,
            so applied in that order); returns the command ids."""
            new = [f"order-{n:04d}" for n in range(len(instance_ids), len(instance_ids) + size)]
            instance_ids.extend(new)
            batch = [
                c for i in new for c in (create(account, workflow, i), pause(account, workflow, i))
            ]
            commands.extend(batch)
            await asyncio.gather(*(client.send(c) for c in batch))
            return {c["command_id"] for c in batch}

        for _ in range(4):
            await send_chunk(CHUNK)
        # A burst, and the plug pulled on member A while the burst's replies are flowing: it
        # is likely between a store commit and its offset commit, or in the middle of a batch.
        burst = await send_chunk(BURST)
        await collect_until(
            client, lambda: len(burst & answered()) >= 20, lambda: "no burst replies", DEADLINE_S
        )
        member_a.kill9()

        def burst_events() -> int:
            return sum(m.json().get("command_id") in burst for m in client.received.get(events, []))

        # Counted from the burst's own events, not from what had arrived before the kill: on
        # a quick run the whole burst is often relayed already, and nothing more would come.
        await collect_until(
            client,
            lambda: burst_events() >= 20,
            lambda: "the relay published nothing of the burst",
            DEADLINE_S,
        )
        relay.kill9()  # mid-stream: published some events but likely not recorded its position
        for _ in range(2):
            await send_chunk(CHUNK)
        relay.start()
        member_a.start()  # rejoins: partitions move back while B is busy
        for _ in range(4):
            await send_chunk(CHUNK)
            cluster.check_alive("commands-b", "projections", "api")

        ids = {c["command_id"] for c in commands}
        await collect_until(
            client,
            lambda: ids <= answered(),
            lambda: f"{len(ids - answered())} commands unanswered",
            limit_s=DEADLINE_S,
            check=lambda: cluster.check_alive("commands-a", "commands-b"),
        )
        await client._collect(1.0)  # late redeliveries are answered too: count them
        await _all_events(client, topics.events, account, instance_ids, cluster)
        await _assert_replies(client, topics.replies, commands)
        _assert_events(client, topics.events, account, instance_ids)
        await _assert_read_model(settings, account, instance_ids, cluster)
        await _assert_http(port, account, workflow, instance_ids[::30])
        await _assert_operations(port, ops_port, projections.output())
        cluster.check_alive("commands-a", "commands-b", "relay", "projections", "api")
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        for role in cluster.roles.values():
            role.stop()


async def _all_events(
    client: KafkaClient, topic: str, account: str, instance_ids: list[str], cluster: Cluster
) -> None:
    """Waits until every instance's last event (its pause, version 2) is on the topic."""
    wanted = set(instance_ids)

    def paused() -> set[str]:
        return {
            e["instance_id"]
            for m in client.received.get(topic, [])
            if (e := m.json()).get("account_id") == account and e["type"] == "InstancePaused"
        }

    await collect_until(
        client,
        lambda: wanted <= paused(),
        lambda: f"{len(wanted - paused())} instances never relayed their pause",
        limit_s=DEADLINE_S,
        check=lambda: cluster.check_alive("relay"),
    )


async def _assert_replies(client: KafkaClient, topic: str, commands: list[dict[str, Any]]) -> None:
    by_command: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in client.received.get(topic, []):
        reply = message.json()
        by_command[reply["command_id"]].append(reply)
    for command in commands:
        got = by_command[command["command_id"]]
        assert got, f"no reply for {command}"
        assert {r["outcome"] for r in got} <= {"accepted", "duplicate"}, got
        # A duplicate repeats the original answer: the same instance and version.
        assert len({(r["instance_id"], r["status"], r["version"]) for r in got}) == 1, got
    redelivered = sum(len(v) > 1 for v in by_command.values())
    print(f"{len(commands)} commands, {redelivered} answered more than once (redeliveries)")


def _assert_events(client: KafkaClient, topic: str, account: str, instance_ids: list[str]) -> None:
    created: dict[str, set[str]] = defaultdict(set)
    versions: dict[str, list[int]] = defaultdict(list)
    for message in client.received.get(topic, []):
        event = message.json()
        if event.get("account_id") != account or "instance_id" not in event:
            continue
        versions[event["instance_id"]].append(event["version"])
        if event["type"] == "InstanceCreated":
            created[event["instance_id"]].add(event["event_id"])
    assert set(created) == set(instance_ids)
    for instance_id in instance_ids:
        assert len(created[instance_id]) == 1, (instance_id, created[instance_id])
        seen = versions[instance_id]
        assert sorted(set(seen)) == list(range(1, max(seen) + 1)), (instance_id, seen)
        # Redeliveries repeat a suffix, but a version never first appears before its predecessor.
        first_seen = list(dict.fromkeys(seen))
        assert first_seen == sorted(first_seen), (instance_id, seen)
        assert max(seen) == 2, (instance_id, seen)  # created, then paused: nothing applied twice
    repeated = sum(len(v) - len(set(v)) for v in versions.values())
    print(f"{sum(map(len, versions.values()))} instance events, {repeated} relayed again")


async def _assert_read_model(
    settings: Settings, account: str, instance_ids: list[str], cluster: Cluster
) -> None:
    app = await asyncio.to_thread(build_application, settings)
    try:
        view = (await asyncio.to_thread(open_views, app))[cloudflare_instance.VIEW_NAME]
        query = Query(account_id=account, limit=len(instance_ids) + 50)

        def paused_docs() -> list[dict[str, Any]]:
            return [d for d in view.find(query) if d["status"] == "paused"]

        await until(
            lambda: len(paused_docs()) == len(instance_ids),
            "read model never caught up",
            limit_s=DEADLINE_S,
            check=lambda: cluster.check_alive("projections"),
        )
        docs = await asyncio.to_thread(view.find, query)
        ids = [d["id"] for d in docs]
        assert sorted(ids) == sorted(instance_ids)  # each exactly once, none missing or extra
        assert await asyncio.to_thread(view.count, query) == len(instance_ids)
    finally:
        app.close()


async def _assert_http(port: int, account: str, workflow: str, sample: list[str]) -> None:
    """The api role, a process of its own, serves what the projections process wrote."""
    base = f"http://127.0.0.1:{port}/client/v4/accounts/{account}/workflows/{workflow}/instances"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        for instance_id in sample:
            response = await http.get(f"{base}/{instance_id}")
            assert response.status_code == 200, response.text
            assert response.json()["result"]["status"] == "paused"


# --- two commands members on one store: what a rebalance can make them do ---------------------


def _member(dsn: str) -> FlowledgerApplication:
    """A commands member's application: its own aggregate cache, the shared PostgreSQL."""
    return build_application(Settings(store=dsn))


def _cmd(account: str, kind: type[Any], **fields: Any) -> Any:
    return kind(command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf", **fields)


def _save_after(member: FlowledgerApplication, rival: Callable[[], Any]) -> None:
    """Runs `rival` once, after `member` has decided its batch and before it saves: the
    interleaving of a rebalance, made deterministic."""
    real_save = member.save
    pending = [rival]

    def save(*objs: Any, **kwargs: Any) -> Any:
        while pending:
            pending.pop()()
        return real_save(*objs, **kwargs)

    member.save = save  # type: ignore[method-assign]


@pytest.fixture
def members(postgres_dsn: str) -> Iterator[tuple[FlowledgerApplication, FlowledgerApplication]]:
    a, b = _member(postgres_dsn), _member(postgres_dsn)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _instance_with_cached_state(a: FlowledgerApplication, account: str) -> None:
    a.handle([_cmd(account, c.RegisterWorkflow)], NOW)
    a.handle([_cmd(account, c.CreateInstance, instance_id="i")], NOW)
    a.get_instance(account, "wf", "i")  # now in A's cache, at version 1


def test_the_same_command_delivered_to_two_members_is_applied_once(
    members: tuple[FlowledgerApplication, FlowledgerApplication], new_id: str
) -> None:
    a, b = members
    account = f"acc{new_id}"
    _instance_with_cached_state(a, account)
    pause = _cmd(account, c.ChangeStatus, instance_id="i", action="pause")
    won: list[Any] = []
    _save_after(a, lambda: won.extend(b.handle([pause], NOW)))

    [lost] = a.handle([pause], NOW)

    assert won[0].outcome == "accepted" and lost.outcome == "duplicate"
    assert (lost.status, lost.version) == (won[0].status, won[0].version) == ("paused", 2)
    history = list(a.events.get(a.get_instance(account, "wf", "i").id))
    assert [type(e).__name__ for e in history][1:] == ["InstancePaused"]


def test_a_member_that_lost_a_race_decides_again_on_the_winners_state(
    members: tuple[FlowledgerApplication, FlowledgerApplication], new_id: str
) -> None:
    a, b = members
    account = f"acc{new_id}"
    _instance_with_cached_state(a, account)
    terminate = _cmd(account, c.ChangeStatus, instance_id="i", action="terminate")
    _save_after(a, lambda: b.handle([terminate], NOW))

    [reply] = a.handle([_cmd(account, c.ChangeStatus, instance_id="i", action="pause")], NOW)

    # Decided again after the conflict: pausing a terminated instance is a no-op
    # (docs/architecture.md, "The instance state machine").
    assert (reply.outcome, reply.status, reply.version) == ("accepted", "terminated", 2)
    assert a.get_instance(account, "wf", "i").version == 2


def test_a_member_regaining_a_partition_decides_on_the_other_members_writes(
    members: tuple[FlowledgerApplication, FlowledgerApplication], new_id: str
) -> None:
    a, b = members
    account = f"acc{new_id}"
    _instance_with_cached_state(a, account)
    # While A did not own the partition, B paused the instance; A's cache still says queued.
    b.handle([_cmd(account, c.ChangeStatus, instance_id="i", action="pause")], NOW)

    [reply] = a.handle([_cmd(account, c.ChangeStatus, instance_id="i", action="resume")], NOW)

    assert (reply.outcome, reply.status, reply.version) == ("accepted", "queued", 3)


async def _assert_operations(api_port: int, relay_ops_port: int, json_log: str) -> None:
    """Lags read from the store: the api and the relay processes report the deployment's."""
    async with httpx.AsyncClient(timeout=10) as http:
        ready = (await http.get(f"http://127.0.0.1:{api_port}/readyz")).json()
        assert (ready["ready"], ready["store"], ready["relay_lag"]) == (True, "ok", 0), ready
        assert set(ready["projection_lag"].values()) == {0}, ready
        metrics = (await http.get(f"http://127.0.0.1:{relay_ops_port}/metrics")).text
        assert "flowledger_relay_lag 0.0" in metrics.splitlines(), metrics
        assert (await http.get(f"http://127.0.0.1:{relay_ops_port}/readyz")).status_code == 200
    lines = [line for line in json_log.splitlines() if line and not line.startswith("===")]
    assert lines and all(json.loads(line)["level"] for line in lines), lines[:5]
