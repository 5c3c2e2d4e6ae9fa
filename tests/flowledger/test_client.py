"""The Python client over the real broker, against the running service on both stores: `send`
answers accepted, duplicate and rejected replies; `events()` yields a scripted lifecycle's
events in order, each once, even when the topic carries one twice."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from contracts import events as ev
from contracts.commands import AnyCommand, CreateInstance
from contracts.erasure import WITHHELD
from contracts.keys import kafka_key
from flowledger.client import FlowledgerClient, ReplyTimeout
from services.bootstrap import Service
from tests.fixtures.deadline import DEADLINE_S


@pytest.fixture
async def client(service: Service, kafka_bootstrap: str) -> AsyncIterator[FlowledgerClient]:
    async with FlowledgerClient(
        kafka_bootstrap, topic_prefix=service.settings.topic_prefix, reply_timeout_s=DEADLINE_S
    ) as client:
        yield client


def names(new_id: str) -> tuple[str, str, str]:
    return f"acc-{new_id}", "orders", f"order-{new_id}"


async def test_send_answers_accepted_then_duplicate_then_rejected(
    client: FlowledgerClient, new_id: str
) -> None:
    account, workflow, instance = names(new_id)
    registered = await client.register_workflow(account, workflow, class_name="Orders")
    assert registered.outcome == "accepted" and registered.workflow_id

    command = CreateInstance(
        command_id=str(uuid.uuid4()),
        account_id=account,
        workflow_name=workflow,
        instance_id=instance,
        params={"n": 1},
    )
    first = await client.send(command)
    assert first.outcome == "accepted" and first.error is None
    assert (first.instance_id, first.status, first.version) == (instance, "queued", 1)

    again = await client.send(command)  # a redelivery: same command_id, same content
    assert again.outcome == "duplicate"
    assert (again.instance_id, again.status, again.version) == (instance, "queued", 1)

    other = await client.create_instance(account, workflow, instance)  # a new command
    assert other.outcome == "rejected" and other.error is not None
    assert other.error.code == "instance.already_exists"
    unknown = await client.create_instance(account, "never-registered", instance)
    assert unknown.outcome == "rejected" and unknown.error is not None
    assert unknown.error.code == "workflow.not_found"


async def test_convenience_methods_drive_an_instance(client: FlowledgerClient, new_id: str) -> None:
    account, workflow, instance = names(new_id)
    assert (await client.register_workflow(account, workflow)).outcome == "accepted"
    created = await client.create_instances(
        account, workflow, [{"instance_id": instance, "params": {"n": 1}}]
    )
    assert created.outcome == "accepted" and created.instances
    assert [i.instance_id for i in created.instances] == [instance]
    steps = [
        (client.pause(account, workflow, instance), "paused"),
        (client.resume(account, workflow, instance), "queued"),
        (client.send_event(account, workflow, instance, "approved", {"by": "ann"}), "queued"),
        (client.terminate(account, workflow, instance), "terminated"),
        (client.restart(account, workflow, instance), "queued"),
        (client.terminate(account, workflow, instance), "terminated"),
        (client.delete_instance(account, workflow, instance), "terminated"),
    ]
    for call, status in steps:
        reply = await call
        assert (reply.outcome, reply.status) == ("accepted", status), reply
    gone = await client.pause(account, workflow, instance)
    assert gone.outcome == "rejected" and gone.error and gone.error.code == "instance.not_found"
    minted = await client.create_instance(account, workflow, params=None)
    assert minted.outcome == "accepted" and (minted.instance_id or "").startswith("cf_")


async def test_no_reply_within_the_timeout_raises(client: FlowledgerClient) -> None:
    # A record without a command_id is dead-lettered and never answered.
    command_id = str(uuid.uuid4())
    with pytest.raises(ReplyTimeout) as raised:
        await client.send_raw(b'{"type": "StartRun"}', "k", command_id, timeout_s=1.0)
    assert raised.value.command_id == command_id


async def _lifecycle(client: FlowledgerClient, account: str, workflow: str, instance: str) -> None:
    assert (await client.register_workflow(account, workflow)).outcome == "accepted"
    assert (await client.create_instance(account, workflow, instance)).outcome == "accepted"
    progress: list[tuple[str, dict[str, Any]]] = [
        ("StartRun", {}),
        ("BeginStep", {"name": "charge"}),
        ("BeginAttempt", {"name": "charge"}),
        ("EndAttempt", {"name": "charge", "success": True, "output": 7}),
        ("EndStep", {"name": "charge", "output": 7}),
        ("CompleteRun", {"output": {"done": True}}),
    ]
    for kind, fields in progress:
        ids = {"account_id": account, "workflow_name": workflow, "instance_id": instance}
        command = msgspec.convert(
            {"type": kind, "command_id": str(uuid.uuid4()), **ids, **fields}, AnyCommand
        )
        reply = await client.send(command)
        assert reply.outcome == "accepted", reply


EXPECTED = [
    "InstanceCreated", "RunStarted", "StepBegan", "AttemptBegan", "AttemptEnded", "StepEnded",
    "RunCompleted",
]  # fmt: skip


async def _collect(stream: Any, count: int, quiet_s: float = 1.0) -> list[ev.LifecycleEvent]:
    """`count` events, then whatever else arrives within `quiet_s` (there should be none)."""
    got: list[ev.LifecycleEvent] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(got) < count:
            got.append(await anext(stream))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(quiet_s):
            while True:
                got.append(await anext(stream))
    return got


async def test_events_from_the_beginning_yield_a_lifecycle_in_order_once_each(
    client: FlowledgerClient, kafka_bootstrap: str, new_id: str
) -> None:
    account, workflow, instance = names(new_id)
    await _lifecycle(client, account, workflow, instance)
    # A redelivery: the topic carries the run's start twice.
    async with client.events(
        account_id=account, instance_id=instance, from_beginning=True
    ) as stream:
        first_pass = await _collect(stream, len(EXPECTED), quiet_s=0.1)
    started = next(e for e in first_pass if isinstance(e, ev.RunStarted))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            client.topics.events, msgspec.json.encode(started), key=kafka_key(started).encode()
        )
    finally:
        await producer.stop()

    async with client.events(
        account_id=account, instance_id=instance, from_beginning=True
    ) as stream:
        events = await _collect(stream, len(EXPECTED))
    assert [type(e).__name__ for e in events] == EXPECTED
    assert [e.version for e in events] == list(range(1, len(EXPECTED) + 1))
    assert all(isinstance(e, ev.InstanceEvent) and e.instance_id == instance for e in events)
    created = events[0]
    assert isinstance(created, ev.InstanceCreated) and created.account_id == account
    completed = events[-1]
    # Content stays off the topic (docs/erasure.md): the event says that there was an output.
    assert isinstance(completed, ev.RunCompleted) and completed.output == WITHHELD


async def test_events_from_now_filtered_by_workflow_and_type(
    client: FlowledgerClient, new_id: str
) -> None:
    account, workflow, instance = names(new_id)
    # Earlier history of the same workflow, which "from now" must not show: on the topic
    # before the stream starts (the relay publishes a little after the replies).
    await _lifecycle(client, account, workflow, f"old-{new_id}")
    async with client.events(instance_id=f"old-{new_id}", from_beginning=True) as old:
        await _collect(old, len(EXPECTED), quiet_s=0)
    async with client.events(
        account_id=account, workflow_name=workflow, types=["RunStarted", "RunCompleted"]
    ) as stream:  # positioned at the end on entry: what follows is "now"
        await _lifecycle(client, account, workflow, instance)
        events = await _collect(stream, 2)
    assert [type(e).__name__ for e in events] == ["RunStarted", "RunCompleted"]
    assert {e.instance_id for e in events if isinstance(e, ev.InstanceEvent)} == {instance}


async def test_a_plain_async_for_starts_at_the_first_iteration(
    client: FlowledgerClient, new_id: str
) -> None:
    account, workflow, instance = names(new_id)
    await _lifecycle(client, account, workflow, instance)
    seen = []
    async for event in client.events(instance_id=instance, from_beginning=True):
        seen.append(event.version)
        if len(seen) == len(EXPECTED):
            break
    assert seen == list(range(1, len(EXPECTED) + 1))
