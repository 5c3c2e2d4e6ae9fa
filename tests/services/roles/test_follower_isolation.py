"""Each follower of the log (relay, projections, scheduler) handed an event it cannot handle,
over the real broker and store: that event is parked and visible in readiness, read from the
store, while the others flow on and the process stays ready."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from contracts.keys import instance_global_id
from projections import cloudflare_instance, timers
from services.bootstrap import Service
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.service import KafkaClient

pytestmark = pytest.mark.kafka


def _raising_for(instance: str, fold: Callable[..., Any], *, at: int = 0) -> Callable[..., Any]:
    """`fold`, except that it raises on any event of `instance` (its argument `at`)."""

    def broken(*args: Any) -> Any:
        if getattr(args[at], "instance_id", None) == instance:
            raise RuntimeError(f"cannot handle {instance}")
        return fold(*args)

    return broken


def _poison_each_follower(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    relay = service.relay
    assert relay is not None
    monkeypatch.setattr(relay, "_prepare", _raising_for("poison-relay", relay._prepare))
    [view] = [p for p in service.projections if p.name == cloudflare_instance.VIEW_NAME]
    monkeypatch.setattr(view, "_apply", _raising_for("poison-view", view._apply, at=1))
    monkeypatch.setattr(timers, "apply", _raising_for("poison-timers", timers.apply, at=1))


async def test_an_event_a_follower_cannot_handle_is_parked_and_the_others_flow_on(
    every_role: tuple[Service, KafkaClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, client = every_role
    _poison_each_follower(service, monkeypatch)
    account = f"acc{uuid.uuid4().hex[:8]}"

    async def do(kind: str, instance: str | None = None, **fields: Any) -> None:
        command = {"type": kind, "command_id": str(uuid.uuid4()), "account_id": account}
        command |= {"workflow_name": "wf", **fields}
        if instance is not None:
            command["instance_id"] = instance
        await client.send(command)
        assert (await client.reply(command["command_id"]))["outcome"] == "accepted"

    await do("RegisterWorkflow")
    for instance in ("poison-relay", "poison-view", "poison-timers", "ok"):
        await do("CreateInstance", instance)
        await do("StartRun", instance)
        await do("BeginStep", instance, name="nap", step_type="sleep", sleep_ms=1_000)

    def ended(instance: str) -> Callable[[Any], bool]:
        def matches(message: Any) -> bool:
            event = message.json()
            return (event["account_id"], event.get("instance_id")) == (account, instance) and (
                event["type"] == "StepEnded"
            )

        return matches

    events = service.settings.topics.events
    await client.wait_for(events, ended("ok"))  # fired by the scheduler, published by the relay
    await client.wait_for(events, ended("poison-view"))

    view = service.views[cloudflare_instance.VIEW_NAME]
    assert view.get(str(instance_global_id(account, "wf", "ok"))) is not None
    assert view.get(str(instance_global_id(account, "wf", "poison-view"))) is None

    async def parked_by_every_follower_and_caught_up() -> bool:
        await service.store_health.refresh()
        report = service.readiness()
        parked = report.get("parked") or {}
        caught_up = report["relay_lag"] == 0 and set(report["projection_lag"].values()) == {0}
        followers = set(parked.get("by_follower", {}))
        return caught_up and followers == {"relay", "projections", "scheduler"}

    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await parked_by_every_follower_and_caught_up():
        assert asyncio.get_running_loop().time() < deadline, service.readiness()
        await asyncio.sleep(0.2)
    report = service.readiness()
    assert report["ready"] is True and report["stuck_followers"] == []
    assert {one["follower"] for one in report["parked"]["latest"]} == {
        "relay",
        "projections",
        "scheduler",
    }
