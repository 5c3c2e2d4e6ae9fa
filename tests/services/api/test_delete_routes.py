"""DELETE .../instances/{id} and the workflow's default retention over HTTP, on both stores
over the real broker (no scheduler: the test is the engine)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cloudflare import Cloudflare

from tests.fixtures.live_server import LiveServer, register_workflow
from tests.fixtures.service import KafkaClient

V4 = "/client/v4/accounts"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Tenant:
    """One account's workflow, written over HTTP, driven as an engine over Kafka."""

    def __init__(self, client: httpx.AsyncClient, kafka: KafkaClient, account: str, token: str):
        self.client, self.kafka, self.account, self.token = client, kafka, account, token
        self.workflow = f"wf-{uuid.uuid4().hex[:8]}"
        self.base = f"{V4}/{account}/workflows/{self.workflow}/instances"

    async def request(self, method: str, path: str = "", **kwargs: Any) -> httpx.Response:
        return await self.client.request(
            method, self.base + path, headers=auth(self.token), **kwargs
        )

    async def engine(self, instance_id: str, kind: str, **fields: Any) -> None:
        command = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": self.account,
            "workflow_name": self.workflow,
            "instance_id": instance_id,
            **fields,
        }
        await self.kafka.send(command)
        assert (await self.kafka.reply(command["command_id"]))["outcome"] == "accepted"

    async def create(self, instance_id: str, *, finished: bool) -> None:
        created = await self.request("POST", json={"instance_id": instance_id, "params": {"a": 1}})
        assert created.status_code == 200, created.text
        await self.engine(instance_id, "StartRun")
        if finished:
            await self.engine(instance_id, "CompleteRun", output={"receipt": "r-1"})
        # Progress sent straight to Kafka reaches the view asynchronously: wait for it.
        wanted = "complete" if finished else "running"
        for _ in range(150):
            shown = await self.request("GET", f"/{instance_id}")
            if shown.status_code == 200 and shown.json()["result"]["status"] == wanted:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{instance_id} never showed {wanted}")

    async def listed_ids(self) -> set[str]:
        listed = await self.request("GET")
        assert listed.status_code == 200, listed.text
        return {item["id"] for item in listed.json()["result"]}


@pytest.fixture
async def asgi(live_service: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=live_service.service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowledger") as client:
        yield client


async def _tenant(s: LiveServer, client: httpx.AsyncClient, kafka: KafkaClient) -> Tenant:
    t = Tenant(client, kafka, s.account_a, s.token_a)
    await register_workflow(client, t.account, t.workflow, t.token)
    return t


async def test_a_deleted_instance_is_404_on_every_route_and_gone_from_the_list(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    t = await _tenant(live_service, asgi, live_kafka)
    await t.create("done", finished=True)
    await t.create("kept", finished=True)

    deleted = await t.request("DELETE", "/done")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["success"] is True
    assert deleted.json()["result"] == {"status": "ok", "success": True}

    for path, params in [
        ("/done", {}),
        ("/done", {"as_of": "1"}),
        ("/done/history", {}),
        ("/done/step", {"name": "x"}),
    ]:
        gone = await t.request("GET", path, params=params)
        assert gone.status_code == 404, (path, gone.text)
        assert gone.json()["success"] is False
    assert await t.listed_ids() == {"kept"}
    staged = await asgi.get("/v1/workflow-instances", headers=auth(t.token))
    assert staged.status_code == 200 and "done" not in {
        doc["id"] for doc in staged.json()["data"]
    } | {doc.get("name") for doc in staged.json()["data"]}

    again = await t.request("DELETE", "/done")
    assert again.status_code == 404, again.text
    assert "instance.not_found" in again.json()["errors"][0]["message"]
    paused = await t.request("PATCH", "/done/status", json={"status": "restart"})
    assert paused.status_code == 404, paused.text
    reused = await t.request("POST", json={"instance_id": "done"})
    assert reused.status_code == 409, reused.text
    assert "not reused" in reused.json()["errors"][0]["message"]


async def test_a_running_instance_is_refused_with_409_and_stays(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    t = await _tenant(live_service, asgi, live_kafka)
    await t.create("live", finished=False)
    refused = await t.request("DELETE", "/live")
    assert refused.status_code == 409, refused.text
    message = refused.json()["errors"][0]["message"]
    assert "instance.running" in message and "terminate it first" in message
    assert refused.json()["errors"][0]["code"] == 10117
    assert (await t.request("GET", "/live")).json()["result"]["status"] == "running"
    unknown = await t.request("DELETE", "/never-was")
    assert unknown.status_code == 404, unknown.text


async def test_another_accounts_instance_is_404_and_nothing_changes(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    t = await _tenant(live_service, asgi, live_kafka)
    await t.create("mine", finished=True)
    before = (await t.request("GET", "/mine")).json()["result"]
    intruder = await asgi.delete(f"{t.base}/mine", headers=auth(live_service.token_b))
    assert intruder.status_code == 404, intruder.text
    ghost = await asgi.delete(f"{t.base}/not-there", headers=auth(live_service.token_b))
    assert intruder.text == ghost.text.replace("not-there", "mine")
    assert (await t.request("GET", "/mine")).json()["result"] == before


async def test_the_workflow_put_sets_the_default_retention_of_later_instances(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    t = await _tenant(live_service, asgi, live_kafka)
    put = await asgi.put(
        f"{V4}/{t.account}/workflows/{t.workflow}",
        json={"instance_retention": {"success_retention": "1 day", "error_retention": 60_000}},
        headers=auth(t.token),
    )
    assert put.status_code == 200, put.text
    created = await t.request("POST", json={"instance_id": "later"})
    assert created.status_code == 200, created.text
    history = await t.request("GET", "/later/history")
    assert history.json()["result"][0]["data"]["retention"] == {
        "success_retention": "1 day",
        "error_retention": 60_000,
    }
    bad = await asgi.put(
        f"{V4}/{t.account}/workflows/{t.workflow}",
        json={"instance_retention": {"success_retention": "whenever"}},
        headers=auth(t.token),
    )
    assert bad.status_code == 400, bad.text


async def test_the_cloudflare_sdks_own_client_deletes_through_its_generic_delete(
    live_server: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    """Cloudflare's SDK (5.9) has no instance delete: its generic `delete` reaches the route."""
    t = await _tenant(live_server, asgi, live_kafka)
    await t.create("sdk", finished=True)
    sdk = Cloudflare(
        api_token=live_server.token_a, base_url=f"{live_server.base_url}/client/v4", max_retries=0
    )
    try:
        path = f"/accounts/{t.account}/workflows/{t.workflow}/instances/sdk"
        answer = await asyncio.to_thread(sdk.delete, path, cast_to=object)
    finally:
        sdk.close()
    assert isinstance(answer, dict) and answer["result"] == {"status": "ok", "success": True}
    assert (await t.request("GET", "/sdk")).status_code == 404
