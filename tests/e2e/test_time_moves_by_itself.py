"""Time moves by itself, over the real broker, on SQLite and PostgreSQL: with no engine sending
time commands, sleeps end, waits time out, back-offs end, attempts and instances time out.

Durations are short and real (about a second); the only waits are deadlines for what must
happen, never assertions on how long it took.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from contracts.keys import instance_key, workflow_key
from services.bootstrap import Service
from services.roles.scheduler import SchedulerRole
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import until
from tests.fixtures.service import KafkaClient

pytestmark = pytest.mark.kafka


class Engine:
    """Sends what an engine would, except anything about time."""

    def __init__(self, client: KafkaClient) -> None:
        self.client = client
        self.account = f"acc{uuid.uuid4().hex[:8]}"

    async def do(self, kind: str, instance: str | None = None, **fields: Any) -> dict[str, Any]:
        command = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": self.account,
            "workflow_name": "wf",
            **fields,
        }
        if instance is not None:
            command["instance_id"] = instance
        await self.client.send(command)
        reply = await self.client.reply(command["command_id"])
        assert reply["outcome"] == "accepted", reply
        return reply

    async def running(self, instance: str, **create: Any) -> None:
        await self.do("CreateInstance", instance, **create)
        await self.do("StartRun", instance)

    async def event(self, instance: str, kind: str, **fields: Any) -> dict[str, Any]:
        """The first lifecycle event of `kind` of the instance with these fields."""

        def matches(message: Any) -> bool:
            event = message.json()
            return (
                event.get("account_id") == self.account
                and event.get("instance_id") == instance
                and event["type"] == kind
                and all(event.get(k) == v for k, v in fields.items())
            )

        found = await self.client.wait_for(self.client.settings.topics.events, matches)
        return found[0].json()  # type: ignore[no-any-return]


async def test_sleeps_waits_and_back_offs_end_by_themselves(
    every_role: tuple[Service, KafkaClient],
) -> None:
    _service, client = every_role
    engine = Engine(client)
    await engine.do("RegisterWorkflow")

    await engine.running("sleeper")
    await engine.do("BeginStep", "sleeper", name="nap", step_type="sleep", sleep_ms=1_000)
    await engine.event("sleeper", "StepEnded", name="nap", success=True)

    await engine.running("waiter")
    wait = {"step_type": "waitForEvent", "event_type": "go", "wait_timeout": 1_000}
    await engine.do("BeginStep", "waiter", name="approval", **wait)
    ended = await engine.event("waiter", "StepEnded", name="approval")
    assert ended["success"] is False and ended["error"]["name"] == "WaitTimeoutError"

    await engine.running("retrier")
    config = {"retries": {"limit": 2, "delay": 500, "backoff": "constant"}}
    await engine.do("BeginStep", "retrier", name="charge", config=config)
    await engine.do("BeginAttempt", "retrier", name="charge")
    failure = {"name": "E", "message": "declined"}
    await engine.do("EndAttempt", "retrier", name="charge", success=False, error=failure)
    await engine.event("retrier", "BackoffEnded", name="charge")


async def test_an_event_that_arrives_first_cancels_the_waits_timeout(
    every_role: tuple[Service, KafkaClient],
) -> None:
    service, client = every_role
    engine = Engine(client)
    await engine.do("RegisterWorkflow")
    await engine.running("early")
    wait = {"step_type": "waitForEvent", "event_type": "go", "wait_timeout": "1 hour"}
    await engine.do("BeginStep", "early", name="approval", **wait)
    await engine.do("SendEvent", "early", event_type="go", payload={"ok": True})
    await engine.event("early", "EventDelivered")

    role = service.roles["scheduler"]
    assert isinstance(role, SchedulerRole)
    key = instance_key(engine.account, "wf", "early")

    def timer_gone() -> bool:
        doc = role.scheduler.table.get(key)
        return doc is None or "wait" not in doc["timers"]

    await until(timer_gone, "the wait's timer was never cancelled", DEADLINE_S)


async def test_attempts_and_instances_that_outlive_their_timeouts_fail(
    every_role: tuple[Service, KafkaClient],
) -> None:
    _service, client = every_role
    engine = Engine(client)
    await engine.do("RegisterWorkflow")

    await engine.running("stuck")
    config = {"retries": {"limit": 1, "delay": 200, "backoff": "constant"}, "timeout": 1_000}
    await engine.do("BeginStep", "stuck", name="slow", config=config)
    await engine.do("BeginAttempt", "stuck", name="slow")
    timed_out = await engine.event("stuck", "AttemptEnded", name="slow", attempt=1)
    assert timed_out["error"]["name"] == "WorkflowTimeoutError"
    await engine.event("stuck", "BackoffEnded", name="slow")  # the retry policy applies

    await engine.running("late", timeout=1_000)
    failed = await engine.event("late", "RunFailed")
    assert failed["timed_out"] is True


async def test_a_workflow_on_a_schedule_gets_a_cron_instance_and_loses_it_when_removed(
    every_role: tuple[Service, KafkaClient],
) -> None:
    service, client = every_role
    engine = Engine(client)
    await engine.do("RegisterWorkflow", schedules=["* * * * *"])

    def cron_created(message: Any) -> bool:
        event = message.json()
        return event.get("account_id") == engine.account and event["type"] == "InstanceCreated"

    # The next minute's tick: within about a minute (the deadline allows for a loaded machine).
    [created] = await client.wait_for(client.settings.topics.events, cron_created)
    assert created.json()["trigger_source"] == "cron"

    await engine.do("RegisterWorkflow")  # no schedules: they are removed
    role = service.roles["scheduler"]
    assert isinstance(role, SchedulerRole)
    key = workflow_key(engine.account, "wf")
    await until(
        lambda: role.scheduler.table.get(key) is None, "the schedule was never removed", DEADLINE_S
    )
