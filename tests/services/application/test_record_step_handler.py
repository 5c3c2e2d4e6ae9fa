"""RecordStep through the application service: decoded from JSON like any command, validated
as BeginStep, EndAttempt and EndStep are, answered with the status it leaves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from contracts import commands as c
from contracts.limits import MAX_JSON_BYTES
from contracts.replies import Reply
from services.application.app import FlowledgerApplication
from services.infra.store_env import STORED_FORMAT

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class Service:
    """The in-memory application, one fresh account per test."""

    def __init__(self) -> None:
        self.app = FlowledgerApplication(env=dict(STORED_FORMAT))
        self.account = f"acc-{uuid.uuid4().hex[:8]}"
        assert self.send("RegisterWorkflow").outcome == "accepted"

    def send(self, kind: str, instance: str | None = None, **fields: Any) -> Reply:
        body = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": self.account,
            "workflow_name": "wf",
            **({"instance_id": instance} if instance else {}),
            **fields,
        }
        command = msgspec.json.decode(msgspec.json.encode(body), type=c.AnyCommand)
        return self.app.handle_one(command, NOW)

    def created(self) -> str:
        instance = f"i-{uuid.uuid4().hex[:8]}"
        assert self.send("CreateInstance", instance).outcome == "accepted"
        return instance


@pytest.fixture
def service() -> Service:
    return Service()


def test_a_one_step_run_is_created_and_completed_by_two_commands(service: Service) -> None:
    instance = service.created()
    reply = service.send(
        "RecordStep",
        instance,
        name="only",
        output={"n": 1},
        start_run=True,
        complete_run=True,
        run_output={"result": 1},
    )
    assert (reply.outcome, reply.status, reply.version) == ("accepted", "complete", 7)
    recorded = service.app.get_instance(service.account, "wf", instance)
    assert recorded.run.output == {"result": 1}
    assert [(s.name, s.attempts, s.output) for s in recorded.run.steps] == [("only", 1, {"n": 1})]


def test_record_step_on_a_running_instance_leaves_it_running(service: Service) -> None:
    instance = service.created()
    service.send("StartRun", instance)
    reply = service.send("RecordStep", instance, name="one", output=1)
    assert (reply.outcome, reply.status) == ("accepted", "running")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"config": {"timeout": "soon"}}, "command.invalid"),
        ({"config": {"retries": {"delay": "a while"}}}, "command.invalid"),
        ({"output": "x" * (MAX_JSON_BYTES + 1)}, "payload.too_large"),
        ({"complete_run": True, "run_output": "x" * (MAX_JSON_BYTES + 1)}, "payload.too_large"),
        ({"run_output": {"forgot": "complete_run"}}, "command.invalid"),
        ({"start_run": False}, "instance.invalid_transition"),  # still queued
    ],
    ids=["timeout", "delay", "output", "run_output", "run_output_alone", "queued"],
)
def test_record_step_is_refused_where_the_separate_commands_would_be(
    service: Service, fields: dict[str, Any], code: str
) -> None:
    instance = service.created()
    reply = service.send("RecordStep", instance, name="s", **fields)
    assert reply.outcome == "rejected" and reply.error is not None
    assert reply.error.code == code
    assert service.app.get_instance(service.account, "wf", instance).version == 1


def test_record_step_of_an_unknown_instance_is_refused(service: Service) -> None:
    reply = service.send("RecordStep", f"nobody-{uuid.uuid4().hex[:6]}", name="s", start_run=True)
    assert reply.error is not None and reply.error.code == "instance.not_found"


def test_a_redelivered_record_step_is_a_duplicate(service: Service) -> None:
    instance = service.created()
    command = c.RecordStep(
        command_id=str(uuid.uuid4()),
        account_id=service.account,
        workflow_name="wf",
        instance_id=instance,
        name="s",
        start_run=True,
    )
    first = service.app.handle_one(command, NOW)
    again = service.app.handle_one(command, NOW)
    assert (first.outcome, again.outcome) == ("accepted", "duplicate")
    assert again.version == first.version == 6
