"""The production shape: every role its own OS process, on PostgreSQL, over the real broker.

Two commands members share the partitions; one is `kill -9`ed mid-stream and later restarted
(it loses and regains partitions while the other member is busy); the relay is `kill -9`ed and
restarted too. Then the ledger must still be exact: every command answered, every instance in
the read model once, one `InstanceCreated` event id per instance, gap-free versions.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from contracts import commands as c
from projections import cloudflare_instance
from projections.document_view import Query
from services.application.app import FlowledgerApplication
from services.bootstrap import build_application, open_views
from services.infra.kafka_local import ensure_topics
from services.settings import Settings
from tests.fixtures.service import TOKEN, KafkaClient, kafka_client, make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

FLOWLEDGER = Path(sys.executable).parent / "flowledger"
READY_LINE = "Flowledger is running"
CHUNK = 20
BURST = 120
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def role_env(settings: Settings, bootstrap: str, **extra: str) -> dict[str, str]:
    """Only environment variables, as a container would get them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env.update(
        FLOWLEDGER_KAFKA_BOOTSTRAP=bootstrap,
        FLOWLEDGER_STORE=settings.store,
        FLOWLEDGER_TOPIC_PREFIX=settings.topic_prefix,
        FLOWLEDGER_PARTITIONS=str(settings.partitions),
        FLOWLEDGER_API_TOKENS=settings.api_tokens,
        FLOWLEDGER_POLL_INTERVAL_S=str(settings.poll_interval_s),
        **extra,
    )
    return env


@dataclass
class RoleProcess:
    """One `flowledger serve --role X` process; its output goes to a log file."""

    role: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start #{self.starts} ===\n".encode())
            self.proc = subprocess.Popen(
                [str(FLOWLEDGER), "serve", "--role", self.role],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.role} is not running"
        os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        """SIGTERM, and SIGKILL if it does not exit; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def running(self, limit_s: float = 60) -> None:
        """Until this start printed its banner (topics declared, store schema created)."""
        await until(
            lambda: self.output().count(READY_LINE) >= self.starts,
            f"{self.role} did not start:\n{self.output()[-3000:]}",
            limit_s,
            check=self.alive,
        )

    def alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.role} exited {self.proc.returncode}:\n{self.output()}")


async def until(
    condition: Callable[[], Any],
    message: str,
    limit_s: float,
    check: Callable[[], None] = lambda: None,
) -> None:
    """Polls `condition` until it holds; a deadline, not a timing assertion."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        check()
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.1)


async def collect_until(
    client: KafkaClient,
    condition: Callable[[], bool],
    message: Callable[[], str],
    limit_s: float,
    check: Callable[[], None] = lambda: None,
) -> None:
    """Consumes replies and events until `condition` holds over what was received."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        check()
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message())
        await client._collect(0.3)


async def group_members(bootstrap: str, group_id: str) -> int:
    """Members of a consumer group once it is Stable (every member has its partitions), else 0."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group_id])
        _error, _group, state, _ptype, _protocol, members, *_ = response.groups[0]
        return len(members) if state == "Stable" else 0
    finally:
        await admin.close()


async def wait_for_members(bootstrap: str, group_id: str, count: int, limit_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while (members := await group_members(bootstrap, group_id)) != count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"group {group_id}: {members} stable members, wanted {count}")
        await asyncio.sleep(0.2)


@dataclass
class Cluster:
    settings: Settings
    bootstrap: str
    roles: dict[str, RoleProcess] = field(default_factory=dict)

    def add(self, name: str, role: str, tmp: Path, **extra: str) -> RoleProcess:
        env = role_env(self.settings, self.bootstrap, **extra)
        self.roles[name] = RoleProcess(role, env, tmp / f"{name}.log")
        return self.roles[name]

    def check_alive(self, *names: str) -> None:
        for name in names:
            self.roles[name].alive()

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.output()[-4000:]}" for n, p in self.roles.items())


@asynccontextmanager
async def process_client(settings: Settings, bootstrap: str) -> AsyncIterator[KafkaClient]:
    """The fixtures' Kafka client, for services that run as processes started later."""
    # The consumer subscribes before any role has started: declare the topics the way the
    # roles will (same partition count), so it does not race them into auto-creation.
    await ensure_topics(bootstrap, dict.fromkeys(settings.topics.all(), settings.partitions))
    async with kafka_client(settings, bootstrap) as client:
        yield client


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
        await wait_for_members(kafka_bootstrap, settings.commands_group, 2, limit_s=60)

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
            client, lambda: len(burst & answered()) >= 20, lambda: "no burst replies", 60
        )
        member_a.kill9()
        events_before = len(client.received.get(events, []))
        await collect_until(
            client,
            lambda: len(client.received.get(events, [])) >= events_before + 20,
            lambda: "the relay published nothing of the burst",
            60,
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
            limit_s=180,
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
        limit_s=120,
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
            limit_s=60,
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

    # Decided again after the conflict: pausing a terminated instance is a no-op (DESIGN.md).
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
