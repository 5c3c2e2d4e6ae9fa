"""The walking skeleton end to end: Kafka in, store, relay, projection, HTTP out; on both stores."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from contracts.erasure import WITHHELD
from services.api.auth import ApiTokens
from tests.fixtures.service import KafkaClient


def _register(account: str, workflow: str) -> dict[str, Any]:
    return {
        "type": "RegisterWorkflow",
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
    }


def _create(account: str, workflow: str, instance_id: str | None, **extra: Any) -> dict[str, Any]:
    body = {
        "type": "CreateInstance",
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
        "params": {"n": 1},
        **extra,
    }
    if instance_id:
        body["instance_id"] = instance_id
    return body


async def _registered(kafka: KafkaClient, account: str, workflow: str) -> None:
    """Registers and waits: commands with other keys may land on other partitions, so a create
    is only ordered after the registration once its reply has arrived."""
    register = _register(account, workflow)
    await kafka.send(register)
    assert (await kafka.reply(register["command_id"]))["outcome"] == "accepted"


async def _readable(http: httpx.AsyncClient, path: str, tries: int = 100) -> httpx.Response:
    for _ in range(tries):
        response = await http.get(path)
        if response.status_code != 404:
            return response
        await asyncio.sleep(0.1)
    return response


async def test_created_instance_is_replied_relayed_and_readable(
    kafka: KafkaClient, http: httpx.AsyncClient, new_id: str
) -> None:
    account, workflow, instance = f"acc{new_id}", "checkout", f"inst-{new_id}"
    await _registered(kafka, account, workflow)
    create = _create(account, workflow, instance)
    await kafka.send(create)

    reply = await kafka.reply(create["command_id"])
    assert reply["outcome"] == "accepted"
    assert (reply["instance_id"], reply["status"], reply["version"]) == (instance, "queued", 1)

    [event] = await kafka.wait_for(
        kafka.settings.topics.events, lambda m: m.json()["type"] == "InstanceCreated"
    )
    payload = event.json()
    assert event.key == f"{account}/{workflow}/{instance}"
    assert (payload["version"], payload["command_id"]) == (1, create["command_id"])
    assert payload["params"] == WITHHELD  # content is read through the api (docs/erasure.md)

    response = await _readable(
        http, f"/client/v4/accounts/{account}/workflows/{workflow}/instances/{instance}"
    )
    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    assert body["result"]["status"] == "queued"
    assert body["result"]["params"] == {"n": 1}
    assert body["result"]["versionId"] == reply["version_id"]


async def test_redelivered_create_is_a_duplicate_without_a_new_event(
    kafka: KafkaClient, new_id: str
) -> None:
    account, workflow = f"acc{new_id}", "wf"
    await _registered(kafka, account, workflow)
    create = _create(account, workflow, "twice")
    await kafka.send(create)
    await kafka.send(create)

    replies = await kafka.wait_for(
        kafka.settings.topics.replies,
        lambda m: m.json()["command_id"] == create["command_id"],
        count=2,
    )
    assert sorted(r.json()["outcome"] for r in replies) == ["accepted", "duplicate"]
    marker = _create(account, workflow, "after")
    await kafka.send(marker)
    await kafka.wait_for(
        kafka.settings.topics.events, lambda m: m.json().get("instance_id") == "after"
    )
    created = [
        m
        for m in kafka.received[kafka.settings.topics.events]
        if m.json().get("instance_id") == "twice"
    ]
    assert len(created) == 1


async def test_create_without_id_mints_one_and_unknown_workflow_is_rejected(
    kafka: KafkaClient, new_id: str
) -> None:
    account = f"acc{new_id}"
    orphan = _create(account, "never-registered", "x")
    await kafka.send(orphan)
    rejected = await kafka.reply(orphan["command_id"])
    assert rejected["outcome"] == "rejected"
    assert rejected["error"]["code"] == "workflow.not_found"

    await _registered(kafka, account, "wf")
    minted = _create(account, "wf", None)
    await kafka.send(minted)
    reply = await kafka.reply(minted["command_id"])
    assert reply["outcome"] == "accepted"
    assert reply["instance_id"].startswith("cf_") and len(reply["instance_id"]) == 67


async def test_malformed_message_is_dead_lettered_and_the_consumer_carries_on(
    kafka: KafkaClient, http: httpx.AsyncClient, new_id: str
) -> None:
    account = f"acc{new_id}"
    await kafka.send(b"{not json", key="garbage")
    unknown = {"type": "LaunchRocket", "command_id": str(uuid.uuid4()), "account_id": account}
    await kafka.send(unknown, key="garbage")
    invalid = _create(account, "wf", "bad id with spaces")
    await kafka.send(invalid, key="garbage")
    await _registered(kafka, account, "wf")
    good = _create(account, "wf", "good")
    await kafka.send(good)

    dead = await kafka.wait_for(kafka.settings.topics.dead_letters, lambda m: True, count=2)
    assert dead[0].value == b"{not json"
    assert "not JSON" in dead[0].headers["x-flowledger-reason"]
    assert dead[0].headers["x-flowledger-source-topic"] == kafka.settings.topics.commands
    assert int(dead[0].headers["x-flowledger-source-offset"]) >= 0
    assert "LaunchRocket" in dead[1].headers["x-flowledger-reason"]

    assert (await kafka.reply(unknown["command_id"]))["error"]["code"] == "command.unknown_type"
    invalid_reply = await kafka.reply(invalid["command_id"])
    assert invalid_reply["error"]["code"] == "command.invalid"
    assert "instance_id" in invalid_reply["error"]["message"]
    assert (await kafka.reply(good["command_id"]))["outcome"] == "accepted"


async def test_http_requires_a_known_token_and_hides_other_accounts(
    service: Any, kafka: KafkaClient, new_id: str
) -> None:
    account = f"acc{new_id}"
    await _registered(kafka, account, "wf")
    create = _create(account, "wf", "secret")
    await kafka.send(create)
    await kafka.reply(create["command_id"])
    path = f"/client/v4/accounts/{account}/workflows/wf/instances/secret"
    tokens = {"mine": frozenset({account}), "theirs": frozenset({"other"})}
    service.api.state.api_tokens = ApiTokens(tokens)
    transport = httpx.ASGITransport(app=service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowledger") as client:
        assert (await client.get(path)).status_code == 401
        unknown = await client.get(path, headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 401 and unknown.json()["success"] is False
        theirs = await client.get(path, headers={"Authorization": "Bearer theirs"})
        assert theirs.status_code == 404 and theirs.json()["result"] is None
        assert theirs.json()["errors"][0]["code"] >= 1000
        mine = await _readable_with(client, path, "Token token=mine")
        assert mine.status_code == 200


async def _readable_with(client: httpx.AsyncClient, path: str, auth: str) -> httpx.Response:
    for _ in range(100):
        response = await client.get(path, headers={"Authorization": auth})
        if response.status_code != 404:
            return response
        await asyncio.sleep(0.1)
    return response
