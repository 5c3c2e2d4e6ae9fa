"""A whole instance life over the real broker: every command kind, and a rebuild from the
events topic alone that equals the service's own read model but for the personal content,
which the topic withholds (docs/erasure.md)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import msgspec

from contracts.erasure import WITHHELD
from contracts.events import AnyEvent
from projections import cloudflare_instance
from tests.fixtures.service import KafkaClient


async def _do(
    kafka: KafkaClient, account: str, instance: str, kind: str, **fields: Any
) -> dict[str, Any]:
    command = {
        "type": kind,
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": "wf",
        **fields,
    }
    if kind not in ("RegisterWorkflow",):
        command.setdefault("instance_id", instance)
    await kafka.send(command)
    return await kafka.reply(command["command_id"])


CONTENT_KEYS = ("params", "output", "payload", "message")


def _masked(value: Any) -> Any:
    """The document with every content value replaced by one mark."""
    if isinstance(value, dict):
        return {k: "*" if k in CONTENT_KEYS else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


async def test_full_life_and_rebuild_from_events_topic_equals_read_model_but_for_content(
    kafka: KafkaClient, http: httpx.AsyncClient, new_id: str
) -> None:
    account, instance = f"acc{new_id}", f"life-{new_id}"
    assert (await _do(kafka, account, instance, "RegisterWorkflow"))["outcome"] == "accepted"
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("CreateInstance", {"params": {"order": 7}}, "queued"),
        ("SendEvent", {"event_type": "approved", "payload": {"by": "ann"}}, "queued"),
        ("StartRun", {}, "running"),
        (
            "BeginStep",
            {
                "name": "charge",
                "config": {
                    "retries": {"limit": 2, "delay": 100, "backoff": "linear"},
                    "timeout": 1000,
                    "sensitive": "output",
                },
            },
            "running",
        ),
        ("BeginAttempt", {"name": "charge"}, "running"),
        (
            "EndAttempt",
            {"name": "charge", "success": False, "error": {"name": "E", "message": "card"}},
            "waiting",
        ),
        ("EndSleep", {"name": "charge"}, "running"),
        ("BeginAttempt", {"name": "charge"}, "running"),
        ("ChangeStatus", {"action": "pause"}, "waitingForPause"),
        (
            "EndAttempt",
            {"name": "charge", "success": True, "output": {"card": "4242"}},
            "waitingForPause",
        ),
        ("EndStep", {"name": "charge", "output": {"card": "4242"}}, "waitingForPause"),
        ("AcknowledgePause", {}, "paused"),
        ("ChangeStatus", {"action": "resume"}, "running"),
        ("BeginStep", {"name": "nap", "step_type": "sleep", "sleep_ms": 10}, "waiting"),
        ("EndSleep", {"name": "nap"}, "running"),
        (
            "BeginStep",
            {"name": "approval", "step_type": "waitForEvent", "event_type": "approved"},
            "running",
        ),
        ("CompleteRun", {"output": {"done": True}, "outcome": "approved"}, "complete"),
    ]
    for kind, fields, expected in steps:
        reply = await _do(kafka, account, instance, kind, **fields)
        assert (kind, reply["outcome"], reply.get("status")) == (kind, "accepted", expected)

    rejected = await _do(kafka, account, instance, "ChangeStatus", action="terminate")
    assert rejected["error"]["code"] == "instance.cannot_terminate"
    final_version = (await _do(kafka, account, instance, "ChangeStatus", action="pause"))["version"]

    events = await kafka.wait_for(
        kafka.settings.topics.events,
        lambda m: m.json().get("instance_id") == instance,
        count=final_version,
    )
    decoded = [msgspec.json.decode(m.value, type=AnyEvent) for m in events]
    assert [e.version for e in decoded] == list(range(1, final_version + 1))
    rebuilt = None
    for event in decoded:
        rebuilt = cloudflare_instance.apply(rebuilt, event)
    assert rebuilt is not None

    path = f"/client/v4/accounts/{account}/workflows/wf/instances/{instance}"
    for _ in range(100):
        served = (await http.get(path)).json()
        if served["result"] and served["result"]["status"] == "complete":
            break
        await asyncio.sleep(0.1)
    from_topic = cloudflare_instance.get_response(rebuilt)
    assert _masked(served["result"]) == _masked(from_topic)
    assert from_topic["params"] == WITHHELD and served["result"]["params"] == {"order": 7}
    charge = served["result"]["steps"][0]
    assert charge["output"] == cloudflare_instance.REDACTED and len(charge["attempts"]) == 2
    assert served["result"]["steps"][2]["output"] == '{"by":"ann"}'  # buffered event delivered


async def test_bulk_restart_rollback_timeouts_and_failures_over_the_broker(
    kafka: KafkaClient, new_id: str
) -> None:
    account = f"acc{new_id}"
    assert (await _do(kafka, account, "", "RegisterWorkflow"))["outcome"] == "accepted"
    bulk = {
        "type": "CreateInstances",
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": "wf",
        "instances": [{"instance_id": "a"}, {"instance_id": "b"}],
    }
    await kafka.send(bulk)
    assert [i["instance_id"] for i in (await kafka.reply(bulk["command_id"]))["instances"]] == [
        "a",
        "b",
    ]
    again = {**bulk, "command_id": str(uuid.uuid4())}
    await kafka.send(again)
    assert all(i["skipped"] for i in (await kafka.reply(again["command_id"]))["instances"])

    flow: list[tuple[str, str, dict[str, Any], str]] = [
        ("a", "StartRun", {}, "running"),
        (
            "a",
            "BeginStep",
            {
                "name": "w",
                "step_type": "waitForEvent",
                "event_type": "go",
                "wait_timeout": "1 hour",
            },
            "waiting",
        ),
        ("a", "TimeOutWait", {"name": "w"}, "running"),
        ("a", "FailRun", {"error": {"name": "Boom", "message": "no go"}}, "errored"),
        ("a", "ChangeStatus", {"action": "restart"}, "queued"),
        ("b", "ChangeStatus", {"action": "terminate", "rollback": True}, "rollingBack"),
        ("b", "EndRollback", {"outcome": "complete"}, "terminated"),
    ]
    for instance, kind, fields, expected in flow:
        reply = await _do(kafka, account, instance, kind, **fields)
        assert (kind, reply["outcome"], reply.get("status")) == (kind, "accepted", expected)
    missing = await _do(
        kafka, account, "a", "ChangeStatus", action="restart", **{"from": {"name": "nope"}}
    )
    assert missing["error"]["code"] == "instance.restart_step_not_found"
