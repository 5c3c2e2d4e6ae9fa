"""The application service on real stores (a SQLite file and a PostgreSQL database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from contracts import commands as c
from contracts.replies import Reply
from services.application.command_log import CommandRecord
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


# --- a command_id names one command: reusing it for another is refused, not a duplicate ------


def _registered(app, account: str) -> None:  # type: ignore[no-untyped-def]
    register = c.RegisterWorkflow(command_id=_cid(), account_id=account, workflow_name="wf")
    assert app.handle([register], NOW)[0].outcome == "accepted"


def _assert_id_reused(reply: Reply, command: c.CreateInstance, secret: str) -> None:
    assert reply.outcome == "rejected" and reply.error is not None
    assert reply.error.code == "command.id_reused"
    # Only the new command's own names: nothing of the command that used the id first.
    assert (reply.account_id, reply.instance_id) == (command.account_id, command.instance_id)
    assert reply.version is None and reply.version_id is None
    assert secret not in msgspec.json.encode(reply).decode()


def test_a_command_id_reused_with_other_content_is_refused_after_a_restart(
    store_url: str, new_id: str
) -> None:
    account = f"acc{new_id}"
    app = _app(store_url)
    _registered(app, account)
    first = c.CreateInstance(
        command_id=_cid(), account_id=account, workflow_name="wf", instance_id="first-one"
    )
    assert app.handle([first], NOW)[0].outcome == "accepted"
    app.close()

    restarted = _app(store_url)
    head = restarted.recorder.max_notification_id()
    other = msgspec.structs.replace(first, instance_id="second", params={"n": 2})
    [reply] = restarted.handle([other], NOW)
    _assert_id_reused(reply, other, secret="first-one")
    assert restarted.recorder.max_notification_id() == head  # nothing stored
    [again] = restarted.handle([first], NOW)
    assert again.outcome == "duplicate" and again.instance_id == "first-one"
    restarted.close()


def test_a_command_id_reused_by_another_account_is_refused_without_the_first_reply(
    store_url: str, new_id: str
) -> None:
    mine, theirs = f"acc{new_id}", f"other{new_id}"
    app = _app(store_url)
    _registered(app, mine)
    _registered(app, theirs)
    first = c.CreateInstance(
        command_id=_cid(), account_id=mine, workflow_name="wf", instance_id="private"
    )
    app.handle([first], NOW)
    probe = msgspec.structs.replace(first, account_id=theirs, instance_id="probe")
    [reply] = app.handle([probe], NOW)
    _assert_id_reused(reply, probe, secret="private")
    app.close()


def test_a_command_id_reused_within_one_batch_is_refused_and_a_repeat_is_a_duplicate(
    store_url: str, new_id: str
) -> None:
    account = f"acc{new_id}"
    app = _app(store_url)
    _registered(app, account)
    first = c.CreateInstance(
        command_id=_cid(), account_id=account, workflow_name="wf", instance_id="first-one"
    )
    other = msgspec.structs.replace(first, instance_id="second-one")
    same = msgspec.structs.replace(first, command_id=first.command_id.upper())
    replies = app.handle([first, other, same], NOW)
    assert [r.outcome for r in replies] == ["accepted", "rejected", "duplicate"]
    _assert_id_reused(replies[1], other, secret="first-one")
    app.close()


def test_a_record_kept_before_digests_answers_its_id_as_a_duplicate(
    store_url: str, new_id: str
) -> None:
    account = f"acc{new_id}"
    app = _app(store_url)
    command = c.StartRun(command_id=_cid(), account_id=account, workflow_name="wf", instance_id="i")
    old = Reply(command_id=command.command_id, outcome="accepted", status="running", version=2)
    record = CommandRecord(command_id=command.command_id, reply=msgspec.to_builtins(old), digest="")
    [accepted] = record.collect_events()
    del accepted.__dict__["digest"]  # as it was stored before digests were kept
    app.recorder.insert_events([app.mapper.to_stored_event(accepted)])
    [reply] = app.handle([command], NOW)
    assert (reply.outcome, reply.status, reply.version) == ("duplicate", "running", 2)
    app.close()


def test_client_json_shaped_like_the_stores_own_tags_is_read_back_as_sent(
    store_url: str, new_id: str
) -> None:
    account = f"acc{new_id}"
    tagged = {"_type_": "uuid_hex", "_data_": "0" * 32}
    unknown = {"_type_": "nothing_registered", "_data_": 1}
    params = {"uuid": tagged, "unknown": unknown, "list": [tagged]}
    app = _app(store_url)
    head = app.recorder.max_notification_id() or 0
    app.handle(
        [
            c.RegisterWorkflow(command_id=_cid(), account_id=account, workflow_name="wf"),
            c.CreateInstance(
                command_id=_cid(),
                account_id=account,
                workflow_name="wf",
                instance_id="i",
                params=params,
            ),
        ],
        NOW,
    )
    app.close()

    restarted = _app(store_url)  # no cache: the events are decoded from the store
    notifications = restarted.recorder.select_notifications(start=head + 1, limit=1_000)
    events = [restarted.mapper.to_domain_event(n) for n in notifications]
    created = [e for e in events if getattr(e, "account_id", None) == account]
    assert created and all(getattr(e, "params", params) == params for e in created)
    assert restarted.get_instance(account, "wf", "i").params == params
    restarted.close()
