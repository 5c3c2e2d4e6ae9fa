"""The step limit through the application service: the application's setting reaches the
aggregate, and a step past it is answered `rejected` with `instance.step_limit`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts import commands as c
from contracts.replies import Reply
from services.application.app import FlowledgerApplication
from services.infra.store_env import STORED_FORMAT

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def send(app: FlowledgerApplication, account: str, kind: str, **fields: Any) -> Reply:
    body = {"type": kind, "command_id": str(uuid.uuid4()), "account_id": account,
            "workflow_name": "wf", **fields}  # fmt: skip
    return app.handle_one(msgspec.json.decode(msgspec.json.encode(body), type=c.AnyCommand), NOW)


def test_a_step_past_the_applications_limit_is_rejected_with_its_code() -> None:
    app = FlowledgerApplication(env=dict(STORED_FORMAT))
    app.max_steps_per_instance = 2
    account, instance = f"acc-{uuid.uuid4().hex[:8]}", f"i-{uuid.uuid4().hex[:8]}"
    assert send(app, account, "RegisterWorkflow").outcome == "accepted"
    assert send(app, account, "CreateInstance", instance_id=instance).outcome == "accepted"
    first = send(app, account, "RecordStep", instance_id=instance, name="a", start_run=True)
    second = send(app, account, "RecordStep", instance_id=instance, name="b")
    assert (first.outcome, second.outcome) == ("accepted", "accepted")
    third = send(app, account, "RecordStep", instance_id=instance, name="c")
    assert third.outcome == "rejected" and third.error is not None
    assert third.error.code == "instance.step_limit"
    sleep = send(app, account, "BeginStep", instance_id=instance, name="nap",
                 step_type="sleep", sleep_ms=1000)  # fmt: skip
    assert sleep.error is not None and sleep.error.code == "instance.step_limit"
    assert len(app.get_instance(account, "wf", instance).run.steps) == 2
