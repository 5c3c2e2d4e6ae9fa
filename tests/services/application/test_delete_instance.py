"""DeleteInstance and the workflow's default retention, through the application service on
both event stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import commands as c
from contracts.replies import Reply
from services.bootstrap import build_application
from services.settings import Settings

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _cid() -> str:
    return str(uuid.uuid4())


class Account:
    """One fresh account with workflow `wf` on a real store."""

    def __init__(self, store_url: str, new_id: str, retention: c.Retention | None = None):
        self.app = build_application(Settings(store=store_url))
        self.account = f"acc{new_id}"
        self.one(c.RegisterWorkflow, workflow_name="wf", retention=retention)

    def one(self, kind: type, **fields: Any) -> Reply:
        fields.setdefault("workflow_name", "wf")
        [reply] = self.app.handle([kind(command_id=_cid(), account_id=self.account, **fields)], NOW)
        return reply

    def finished(self, instance_id: str, **create: Any) -> None:
        assert self.one(c.CreateInstance, instance_id=instance_id, **create).outcome == "accepted"
        self.one(c.StartRun, instance_id=instance_id)
        assert self.one(c.CompleteRun, instance_id=instance_id).status == "complete"

    def created_retention(self, instance_id: str) -> Any:
        instance = self.app.get_instance(self.account, "wf", instance_id)
        return self.app.events.get(instance.id, lte=1).__next__().retention  # type: ignore[attr-defined]


@pytest.fixture
def account(store_url: str, new_id: str):  # type: ignore[no-untyped-def]
    one = Account(store_url, new_id)
    yield one
    one.app.close()


def test_a_finished_instance_is_deleted_and_then_every_command_is_not_found(
    account: Account,
) -> None:
    account.finished("done")
    reply = account.one(c.DeleteInstance, instance_id="done")
    assert reply.outcome == "accepted" and reply.status == "complete"
    for kind, fields in [
        (c.DeleteInstance, {}),
        (c.ChangeStatus, {"action": "restart"}),
        (c.SendEvent, {"event_type": "x"}),
        (c.StartRun, {}),
    ]:
        again = account.one(kind, instance_id="done", **fields)
        assert again.outcome == "rejected"
        assert again.error is not None and again.error.code == "instance.not_found"


def test_a_running_instance_is_not_deleted(account: Account) -> None:
    account.one(c.CreateInstance, instance_id="live")
    account.one(c.StartRun, instance_id="live")
    reply = account.one(c.DeleteInstance, instance_id="live")
    assert reply.outcome == "rejected"
    assert reply.error is not None and reply.error.code == "instance.running"
    assert "terminate it first" in reply.error.message
    assert account.one(c.ChangeStatus, instance_id="live", action="pause").outcome == "accepted"


def test_an_unknown_instance_is_not_found(account: Account) -> None:
    reply = account.one(c.DeleteInstance, instance_id="never")
    assert reply.error is not None and reply.error.code == "instance.not_found"


def test_the_id_of_a_deleted_instance_is_not_reused(account: Account) -> None:
    account.finished("taken")
    account.one(c.DeleteInstance, instance_id="taken")
    reply = account.one(c.CreateInstance, instance_id="taken")
    assert reply.error is not None and reply.error.code == "instance.already_exists"
    assert "deleted" in reply.error.message


def test_a_create_without_retention_takes_the_workflows_default_field_by_field(
    store_url: str, new_id: str
) -> None:
    default = c.Retention(success_retention="1 day", error_retention="7 days")
    account = Account(store_url, new_id, retention=default)
    try:
        account.one(c.CreateInstance, instance_id="plain")
        own = c.Retention(success_retention=5_000)
        account.one(c.CreateInstance, instance_id="own", retention=own)
        assert account.created_retention("plain") == {
            "success_retention": "1 day",
            "error_retention": "7 days",
        }
        assert account.created_retention("own") == {
            "success_retention": 5_000,
            "error_retention": "7 days",
        }
        # A changed default applies to instances created afterwards only.
        account.one(c.RegisterWorkflow, retention=None)
        account.one(c.CreateInstance, instance_id="after")
        assert account.created_retention("after") is None
        assert account.created_retention("plain")["success_retention"] == "1 day"
    finally:
        account.app.close()


def test_a_default_retention_that_is_not_a_duration_is_rejected(account: Account) -> None:
    bad = c.Retention(success_retention="soon")
    reply = account.one(c.RegisterWorkflow, retention=bad)
    assert reply.error is not None and reply.error.code == "command.invalid"
    assert "retention.success_retention" in reply.error.message
