"""Time travel from fold checkpoints: the document at any version or time is the full fold's,
whether it starts from version 1 or from a checkpoint, and checkpoints stay within their bound.
On the in-memory store: the fold, not the store, is what is under test here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from contracts import commands as c
from projections import cloudflare_instance as cf
from services.api.time_travel import Checkpoint, FoldCheckpoints, InstanceKey, document_at
from services.application.app import FlowledgerApplication
from services.application.history import InstanceHistory
from services.infra.store_env import STORED_FORMAT

START = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
STEPS = 40  # four events a step: 162 versions


def cid() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def long_instance() -> tuple[InstanceHistory, InstanceKey]:
    """One instance of STEPS steps, each command a second after the one before it."""
    app = FlowledgerApplication(env=dict(STORED_FORMAT))
    key = (f"acc-{uuid.uuid4().hex[:8]}", "wf", f"i-{uuid.uuid4().hex[:8]}")
    account, workflow = key[0], key[1]
    app.handle_one(
        c.RegisterWorkflow(command_id=cid(), account_id=account, workflow_name=workflow), START
    )
    app.handle_one(
        c.CreateInstance(
            command_id=cid(), instance_id=key[2], account_id=account, workflow_name=workflow
        ),
        START,
    )
    for n in range(1, STEPS + 1):
        step = c.RecordStep(
            command_id=cid(), instance_id=key[2], name=f"s{n % 3}", output={"n": n},
            start_run=n == 1, complete_run=n == STEPS, account_id=account, workflow_name=workflow,
        )  # fmt: skip
        assert app.handle_one(step, START + timedelta(seconds=n)).outcome == "accepted"
    return InstanceHistory(app), key


def full_fold(history: InstanceHistory, key: InstanceKey, upto: int | None = None,
              until: datetime | None = None) -> object:  # fmt: skip
    """The live view's fold from version 1, stopping at the first event after `until`."""
    doc: dict[str, Any] | None = None
    for event in history.events(*key, upto=upto):
        if until is not None and event.occurred_at > until:
            break
        doc = cf.apply(doc, event)
    return None if doc is None else msgspec.json.decode(msgspec.json.encode(doc))


def test_a_late_version_from_a_checkpoint_equals_the_full_fold(
    long_instance: tuple[InstanceHistory, InstanceKey],
) -> None:
    history, key = long_instance
    latest = history.version(*key)
    checkpoints = FoldCheckpoints(every=16)
    assert document_at(history, checkpoints, key, latest, None) == full_fold(history, key)
    for upto in (latest - 1, latest - 17, 100, 33, 16, 1):
        start = checkpoints.nearest(key, upto, None)
        assert start is not None or upto < 16
        assert document_at(history, checkpoints, key, upto, None) == full_fold(history, key, upto)


def test_a_time_from_a_checkpoint_equals_the_full_fold(
    long_instance: tuple[InstanceHistory, InstanceKey],
) -> None:
    history, key = long_instance
    checkpoints = FoldCheckpoints(every=16)
    document_at(history, checkpoints, key, None, None)  # every checkpoint made
    for seconds in (STEPS, STEPS - 1, 25, 7, 0):
        until = START + timedelta(seconds=seconds, milliseconds=500)
        expected = full_fold(history, key, until=until)
        assert document_at(history, checkpoints, key, None, until) == expected


def test_a_checkpoint_after_the_time_asked_is_not_used() -> None:
    checkpoints = FoldCheckpoints(every=1)
    key: InstanceKey = ("a", "w", "i")
    checkpoints.keep(key, Checkpoint(1, START, b"{}"))
    checkpoints.keep(key, Checkpoint(2, START + timedelta(seconds=5), b"{}"))
    found = checkpoints.nearest(key, None, START + timedelta(seconds=1))
    assert found is not None and found.version == 1
    assert checkpoints.nearest(key, None, START - timedelta(seconds=1)) is None


def test_checkpoints_stay_within_their_bytes() -> None:
    checkpoints = FoldCheckpoints(every=1, max_bytes=1000)
    first: InstanceKey = ("a", "w", "first")
    second: InstanceKey = ("a", "w", "second")
    checkpoints.keep(first, Checkpoint(1, START, b"x" * 600))
    checkpoints.keep(second, Checkpoint(1, START, b"x" * 600))  # the older instance goes
    assert checkpoints.nearest(first, None, None) is None
    for version in range(2, 6):  # one instance alone over the bound: thinned
        checkpoints.keep(second, Checkpoint(version, START, b"x" * 300))
    kept = [
        v for v in range(1, 6) if (c := checkpoints.nearest(second, v, None)) and c.version == v
    ]
    assert 0 < len(kept) < 5
