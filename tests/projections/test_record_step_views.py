"""A step recorded with one RecordStep leaves every read model, and the scheduler's timers,
exactly as BeginStep, BeginAttempt, EndAttempt and EndStep do (with StartRun and CompleteRun
folded in or not): the domain events are the same, so are their lifecycle events and folds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from contracts import events as ev
from projections import timers
from projections.read_models import READ_MODELS
from services.application.lifecycle import LifecycleTranslator
from services.domain.instance import WorkflowInstance
from tests.services.domain.instance_factory import AT, cid, new_instance

STEP_CONFIG = {"retries": {"limit": 1, "delay": 1_000, "backoff": "constant"}, "timeout": 5_000}
Path = Callable[[WorkflowInstance], None]


def _separate(*, complete: bool) -> Path:
    def run(i: WorkflowInstance) -> None:
        i.start_run(command_id=cid(), at=AT)
        i.begin_step(
            name="charge",
            step_type="step",
            config=STEP_CONFIG,
            sleep_ms=None,
            event_type=None,
            wait_timeout=None,
            command_id=cid(),
            at=AT,
        )
        i.begin_attempt(name="charge", command_id=cid(), at=AT)
        i.end_attempt(
            name="charge", success=True, output={"ok": 1}, error=None, command_id=cid(), at=AT
        )
        i.end_step(
            name="charge", success=True, output={"ok": 1}, error=None, command_id=cid(), at=AT
        )
        if complete:
            i.complete_run(output=["done"], outcome=None, reasons=[], command_id=cid(), at=AT)

    return run


def _combined(*, start_run: bool, complete: bool) -> Path:
    def run(i: WorkflowInstance) -> None:
        if not start_run:
            i.start_run(command_id=cid(), at=AT)
        i.record_step(
            name="charge",
            config=STEP_CONFIG,
            output={"ok": 1},
            start_run=start_run,
            complete_run=complete,
            run_output=["done"] if complete else None,
            command_id=cid(),
            at=AT,
        )

    return run


def _lifecycle(path: Path, identity: dict[str, Any]) -> list[ev.LifecycleEvent]:
    instance = new_instance(**identity)
    path(instance)
    translator = LifecycleTranslator(load_first=lambda _: None)
    translated = [translator.translate(e) for e in instance.collect_events()]
    return [e for e in translated if e is not None]


def _views(events: list[ev.LifecycleEvent]) -> dict[str, Any]:
    """Every read model's documents, and the timers' document after each event."""
    docs: dict[str, dict[str, Any]] = {name: {} for name in READ_MODELS}
    timer_docs: list[dict[str, Any] | None] = []
    timer_doc: dict[str, Any] | None = None
    for event in events:
        for name, model in READ_MODELS.items():
            key = model.key_of(event)
            if key is not None:
                docs[name][key] = model.apply(docs[name].get(key), event)
        timer_doc = timers.apply(timer_doc, event)
        timer_docs.append(timer_doc)
    return {"views": docs, "timers": timer_docs}


@pytest.mark.parametrize(
    ("combined", "complete"),
    [
        (_combined(start_run=False, complete=False), False),
        (_combined(start_run=True, complete=False), False),
        (_combined(start_run=False, complete=True), True),
        (_combined(start_run=True, complete=True), True),
    ],
    ids=["step", "start+step", "step+complete", "start+step+complete"],
)
def test_every_view_and_the_timers_are_the_same_after_one_command_as_after_the_four(
    combined: Path, complete: bool
) -> None:
    probe = new_instance(timeout="1 hour")  # an instance timeout: the timers keep a document
    identity = {
        "account_id": probe.account_id,
        "workflow_name": probe.workflow_name,
        "instance_id": probe.instance_id,
        "workflow_id": probe.workflow_id,
        "version_id": probe.version_id,
        "timeout": "1 hour",
    }
    separate = _lifecycle(_separate(complete=complete), identity)
    one = _lifecycle(combined, identity)

    assert [type(e).__name__ for e in one] == [type(e).__name__ for e in separate]
    assert [e.version for e in one] == [e.version for e in separate]
    views, expected = _views(one), _views(separate)
    assert views == expected
    assert all(views["views"][name] for name in READ_MODELS if name != "workflows")
    last_timers = views["timers"][-1]
    if complete:
        assert last_timers is None  # nothing left to fire for a finished run
    else:  # the instance's timeout still armed, no attempt timer left behind
        assert last_timers is not None and set(last_timers["timers"]) == {"instance"}
