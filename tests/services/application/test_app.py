"""The application service on real stores (a SQLite file and a PostgreSQL database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import commands as c
from services.bootstrap import build_application
from services.settings import Settings

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _cid() -> str:
    return str(uuid.uuid4())


def _app(store_url: str):  # type: ignore[no-untyped-def]
    return build_application(Settings(store=store_url))


def test_a_redelivered_command_is_a_duplicate_even_after_a_restart(
    store_url: str, new_id: str
) -> None:
    account = f"acc{new_id}"
    create = c.CreateInstance(
        command_id=_cid(), account_id=account, workflow_name="wf", instance_id="i"
    )
    app = _app(store_url)
    register = c.RegisterWorkflow(command_id=_cid(), account_id=account, workflow_name="wf")
    first = app.handle([register, create], NOW)
    assert [r.outcome for r in first] == ["accepted", "accepted"]
    head = app.recorder.max_notification_id()
    app.close()

    restarted = _app(store_url)
    [again] = restarted.handle([create], NOW)
    assert again.outcome == "duplicate" and again.version == first[1].version
    assert restarted.recorder.max_notification_id() == head  # no new event
    restarted.close()


def test_a_batch_is_saved_together_and_later_commands_see_earlier_ones(
    store_url: str, new_id: str
) -> None:
    account = f"acc{new_id}"
    app = _app(store_url)
    replies = app.handle(
        [
            c.RegisterWorkflow(command_id=_cid(), account_id=account, workflow_name="wf"),
            c.CreateInstance(
                command_id=_cid(), account_id=account, workflow_name="wf", instance_id="i"
            ),
            c.ChangeStatus(
                command_id=_cid(),
                account_id=account,
                workflow_name="wf",
                instance_id="i",
                action="pause",
            ),
            c.ChangeStatus(
                command_id=_cid(),
                account_id=account,
                workflow_name="wf",
                instance_id="i",
                action="terminate",
            ),
            c.ChangeStatus(
                command_id=_cid(),
                account_id=account,
                workflow_name="wf",
                instance_id="i",
                action="terminate",
            ),
        ],
        NOW,
    )
    assert [r.status for r in replies[1:4]] == ["queued", "paused", "terminated"]
    assert replies[4].outcome == "rejected"
    assert replies[4].error is not None and replies[4].error.code == "instance.cannot_terminate"
    assert app.get_instance(account, "wf", "i").status == "terminated"
    app.close()


def test_rejections_store_nothing(store_url: str, new_id: str) -> None:
    account = f"acc{new_id}"
    app = _app(store_url)
    replies = app.handle(
        [
            c.CreateInstance(
                command_id=_cid(), account_id=account, workflow_name="nowf", instance_id="i"
            ),
            c.ChangeStatus(
                command_id=_cid(),
                account_id=account,
                workflow_name="wf",
                instance_id="ghost",
                action="pause",
            ),
            c.CreateInstance(
                command_id=_cid(),
                account_id=account,
                workflow_name="nowf",
                params="x" * (1024 * 1024 + 1),
            ),
        ],
        NOW,
    )
    assert [r.error.code for r in replies if r.error] == [
        "workflow.not_found",
        "instance.not_found",
        "payload.too_large",
    ]
    assert app.recorder.max_notification_id() in (None, 0)
    app.close()


def test_bulk_create_skips_ids_that_already_exist(store_url: str, new_id: str) -> None:
    account = f"acc{new_id}"
    app = _app(store_url)
    app.handle(
        [
            c.RegisterWorkflow(command_id=_cid(), account_id=account, workflow_name="wf"),
            c.CreateInstance(
                command_id=_cid(), account_id=account, workflow_name="wf", instance_id="old"
            ),
        ],
        NOW,
    )
    [reply] = app.handle(
        [
            c.CreateInstances(
                command_id=_cid(),
                account_id=account,
                workflow_name="wf",
                instances=[c.InstanceBody(instance_id="old"), c.InstanceBody(instance_id="new")],
            ),
        ],
        NOW,
    )
    assert reply.outcome == "accepted" and reply.instances is not None
    assert [(i.instance_id, i.skipped) for i in reply.instances] == [("old", True), ("new", False)]
    app.close()
