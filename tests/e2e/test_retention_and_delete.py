"""Retention and deletion over the real broker, on SQLite and PostgreSQL, the scheduler
running: a finished instance whose retention passed is deleted by itself, a running one is
not; DELETE over HTTP removes a completed instance from every route and list; another
account's DELETE is a 404 that changes nothing.

Retentions are short and real (2 seconds); the only waits are deadlines for what must
happen, never assertions on how long it took.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from contracts.keys import instance_global_id
from services.bootstrap import Service, start_service
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.service import KafkaClient, kafka_client, make_settings

pytestmark = pytest.mark.kafka

V4 = "/client/v4/accounts"


@dataclass
class World:
    service: Service
    kafka: KafkaClient
    http: httpx.AsyncClient
    account: str
    token: str
    other_token: str


@pytest.fixture
async def world(store_url: str, kafka_bootstrap: str) -> AsyncIterator[World]:
    """The whole service, scheduler included; account A's and account B's tokens."""
    suffix = uuid.uuid4().hex[:8]
    account, other = f"acc-a-{suffix}", f"acc-b-{suffix}"
    token, other_token = f"tok-a-{uuid.uuid4().hex}", f"tok-b-{uuid.uuid4().hex}"
    settings = make_settings(store_url, api_tokens=f"{token}={account};{other_token}={other}")
    service = await start_service(settings, kafka_bootstrap)
    try:
        async with kafka_client(service.settings, kafka_bootstrap) as client:
            transport = httpx.ASGITransport(app=service.api)
            async with httpx.AsyncClient(transport=transport, base_url="http://fl") as http:
                yield World(service, client, http, account, token, other_token)
    finally:
        await service.stop()


class Tenant:
    def __init__(self, world: World) -> None:
        self.w = world
        self.workflow = f"wf-{uuid.uuid4().hex[:8]}"
        self.base = f"{V4}/{world.account}/workflows/{self.workflow}/instances"

    async def call(
        self, method: str, path: str = "", token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.w.token}"}
        return await self.w.http.request(method, self.base + path, headers=headers, **kwargs)

    def global_id(self, instance_id: str) -> str:
        return str(instance_global_id(self.w.account, self.workflow, instance_id))

    async def register(self) -> None:
        put = await self.w.http.put(
            f"{V4}/{self.w.account}/workflows/{self.workflow}",
            json={},
            headers={"Authorization": f"Bearer {self.w.token}"},
        )
        assert put.status_code == 200, put.text

    async def engine(self, instance_id: str, kind: str, **fields: Any) -> None:
        command = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": self.w.account,
            "workflow_name": self.workflow,
            "instance_id": instance_id,
            **fields,
        }
        await self.w.kafka.send(command)
        reply = await self.w.kafka.reply(command["command_id"])
        assert reply["outcome"] == "accepted", reply

    async def create(self, instance_id: str, retention: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"instance_id": instance_id, "params": {"email": "a@b.example"}}
        if retention is not None:
            body["instance_retention"] = retention
        created = await self.call("POST", json=body)
        assert created.status_code == 200, created.text

    async def complete(self, instance_id: str) -> None:
        await self.engine(instance_id, "StartRun")
        await self.engine(instance_id, "BeginStep", name="work")
        await self.engine(instance_id, "BeginAttempt", name="work")
        await self.engine(instance_id, "EndAttempt", name="work", success=True, output={"x": 1})
        await self.engine(instance_id, "EndStep", name="work", output={"x": 1})
        await self.engine(instance_id, "CompleteRun", output={"done": True})

    async def status(self, instance_id: str) -> str | None:
        """The instance's status as the API shows it; None for a 404."""
        shown = await self.call("GET", f"/{instance_id}")
        if shown.status_code == 404:
            return None
        assert shown.status_code == 200, shown.text
        return str(shown.json()["result"]["status"])

    async def until_status(self, instance_id: str, wanted: str | None) -> None:
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while (await self.status(instance_id)) != wanted:
            assert asyncio.get_running_loop().time() < deadline, f"{instance_id} never {wanted}"
            await asyncio.sleep(0.1)

    async def listed(self) -> set[str]:
        listed = await self.call("GET")
        assert listed.status_code == 200, listed.text
        return {item["id"] for item in listed.json()["result"]}


async def test_a_completed_instance_is_deleted_once_its_retention_passed_and_a_running_one_is_not(
    world: World,
) -> None:
    t = Tenant(world)
    await t.register()
    retention = {"success_retention": "2 seconds", "error_retention": "2 seconds"}
    await t.create("expires", retention)
    await t.create("still-running", retention)
    await t.complete("expires")
    await t.engine("still-running", "StartRun")
    await t.engine("still-running", "BeginStep", name="long")

    await t.until_status("expires", None)  # deleted by the scheduler: 404

    history = await t.call("GET", "/expires/history")
    assert history.status_code == 404, history.text
    assert await t.status("still-running") == "running"
    assert "still-running" in await t.listed() and "expires" not in await t.listed()
    # The running one outlived the same retention: it was never deleted.
    assert (await t.call("DELETE", "/still-running")).status_code == 409


async def test_delete_over_http_removes_a_completed_instance_everywhere(world: World) -> None:
    t = Tenant(world)
    await t.register()
    await t.create("done")
    await t.create("other")
    await t.complete("done")
    await t.until_status("done", "complete")

    deleted = await t.call("DELETE", "/done")
    assert deleted.status_code == 200, deleted.text
    for path, params in [("/done", {}), ("/done/history", {}), ("/done", {"as_of": "1"}),
                         ("/done/step", {"name": "work"})]:  # fmt: skip
        gone = await t.call("GET", path, params=params)
        assert gone.status_code == 404, (path, gone.text)
    assert await t.listed() == {"other"}
    for path in ("/v1/runs", "/v1/workflow-instances", "/v3.6/workflow_runs"):
        other = await world.http.get(path, headers={"Authorization": f"Bearer {world.token}"})
        assert other.status_code == 200, (path, other.text)
        assert t.global_id("other") in other.text, path
        assert t.global_id("done") not in other.text, path
    assert (await t.call("DELETE", "/done")).status_code == 404


async def test_deleting_another_accounts_instance_is_404_and_changes_nothing(
    world: World,
) -> None:
    t = Tenant(world)
    await t.register()
    await t.create("mine")
    await t.complete("mine")
    await t.until_status("mine", "complete")
    before = (await t.call("GET", "/mine")).json()["result"]

    refused = await t.call("DELETE", "/mine", token=world.other_token)
    assert refused.status_code == 404, refused.text

    assert (await t.call("GET", "/mine")).json()["result"] == before
    history = await t.call("GET", "/mine/history")
    assert history.json()["result"][-1]["type"] == "RunCompleted"
