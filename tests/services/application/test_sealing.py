"""Personal content sealed with each instance's own key, on real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from contracts import commands as c
from contracts.erasure import ERASED, UNREADABLE
from contracts.events import InstanceCreated
from services.application.notification_log import NotificationLog
from services.application.sealing import KeyRing, MemoryKeyStore, UnknownKeyEncryptionKey
from services.bootstrap import build_application
from services.domain.instance import WorkflowInstance
from services.settings import Settings
from services.store.key_table import open_key_table

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _cid() -> str:
    return str(uuid.uuid4())


def _run_to_complete(app, account: str, instance: str, marker: str) -> None:  # type: ignore[no-untyped-def]
    base = {"account_id": account, "workflow_name": "wf", "instance_id": instance}
    replies = app.handle(
        [
            c.RegisterWorkflow(command_id=_cid(), account_id=account, workflow_name="wf"),
            c.CreateInstance(command_id=_cid(), params={"secret": marker}, user_id=marker, **base),
            c.StartRun(command_id=_cid(), **base),
            c.BeginStep(command_id=_cid(), name="s", step_type="step", **base),
            c.BeginAttempt(command_id=_cid(), name="s", **base),
            c.EndAttempt(command_id=_cid(), name="s", success=True, output=marker, **base),
            c.EndStep(command_id=_cid(), name="s", success=True, output=marker, **base),
            c.CompleteRun(command_id=_cid(), output={"out": marker}, **base),
        ],
        NOW,
    )
    assert [r.outcome for r in replies] == ["accepted"] * 8, replies


def test_personal_content_is_stored_sealed_and_read_back_in_clear(
    store_url: str, new_id: str
) -> None:
    marker = f"marker-{new_id}"
    app = build_application(Settings(store=store_url))
    _run_to_complete(app, f"acc{new_id}", "i", marker)
    instance_id = WorkflowInstance.create_id(f"acc{new_id}", "wf", "i")

    stored = app.recorder.select_events(instance_id)
    assert len(stored) == 8 - 1  # the workflow's own event is another aggregate's
    assert not [e for e in stored if marker.encode() in e.state]

    restarted = build_application(Settings(store=store_url))  # nothing cached
    instance = restarted.get_instance(f"acc{new_id}", "wf", "i")
    assert instance.params == {"secret": marker} and instance.run.output == {"out": marker}
    assert instance.run.steps[0].output == marker
    app.close()
    restarted.close()


def test_after_erasure_the_history_folds_with_every_content_erased(
    store_url: str, new_id: str
) -> None:
    marker = f"marker-{new_id}"
    app = build_application(Settings(store=store_url))
    _run_to_complete(app, f"acc{new_id}", "i", marker)
    instance_id = WorkflowInstance.create_id(f"acc{new_id}", "wf", "i")

    app.erase([instance_id])
    restarted = build_application(Settings(store=store_url))
    events = list(restarted.events.get(instance_id))
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    created = events[0]
    assert created.params == ERASED and created.metadata["user_id"] == ERASED
    assert created.metadata["mode"] == "async"  # what is not personal stays as it was
    instance = restarted.get_instance(f"acc{new_id}", "wf", "i")
    assert instance.status == "complete" and instance.run.output == ERASED
    app.close()
    restarted.close()


def test_a_new_key_encryption_key_first_still_opens_keys_wrapped_by_the_old() -> None:
    store, old, new = MemoryKeyStore(), b"o" * 32, b"n" * 32
    aggregate_id = uuid.uuid4()
    before = KeyRing(store, [old]).cipher(aggregate_id, create=True)
    assert before is not None
    sealed = before.encrypt(b"\x00" * 12, b"content", None)

    after = KeyRing(store, [new, old]).cipher(aggregate_id, create=False)
    assert after is not None and after.decrypt(b"\x00" * 12, sealed, None) == b"content"


def test_a_data_key_wrapped_by_an_unlisted_key_encryption_key_is_refused() -> None:
    store = MemoryKeyStore()
    aggregate_id = uuid.uuid4()
    KeyRing(store, [b"o" * 32]).cipher(aggregate_id, create=True)
    with pytest.raises(UnknownKeyEncryptionKey):
        KeyRing(store, [b"n" * 32]).cipher(aggregate_id, create=False)


def test_an_instance_without_a_key_reads_erased_rather_than_failing() -> None:
    ring = KeyRing(MemoryKeyStore(), [b"k" * 32])
    assert ring.cipher(uuid.uuid4(), create=False) is None


def _wrap_with_another_kek(app, instance_id: uuid.UUID) -> None:  # type: ignore[no-untyped-def]
    """The instance's data key as if wrapped by a KEK the process does not have."""
    elsewhere = MemoryKeyStore()
    KeyRing(elsewhere, [b"x" * 32]).prepare([instance_id])
    open_key_table(app.factory).replace(elsewhere.fetch([instance_id]))


def test_followers_read_an_instance_whose_key_no_kek_opens_as_unreadable_and_go_on(
    store_url: str, new_id: str
) -> None:
    app = build_application(Settings(store=store_url))
    _run_to_complete(app, f"acc{new_id}", "lost", "lost-content")
    _run_to_complete(app, f"acc{new_id}", "kept", "kept-content")
    lost = WorkflowInstance.create_id(f"acc{new_id}", "wf", "lost")
    _wrap_with_another_kek(app, lost)

    restarted = build_application(Settings(store=store_url))  # nothing cached
    batch = NotificationLog(restarted).read(0, 1_000)
    assert batch is not None
    created = {e.instance_id: e.params for _, e in batch.events if isinstance(e, InstanceCreated)}
    assert created == {"lost": UNREADABLE, "kept": {"secret": "kept-content"}}
    with pytest.raises(UnknownKeyEncryptionKey):  # the instance's own reads still refuse
        restarted.get_instance(f"acc{new_id}", "wf", "lost")
    app.close()
    restarted.close()
