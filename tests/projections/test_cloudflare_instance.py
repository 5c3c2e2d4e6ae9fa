"""The Cloudflare projection is a pure fold over lifecycle events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from contracts import events as ev
from contracts.keys import instance_global_id
from projections import cloudflare_instance as cf
from projections.timestamps import iso
from tests.projections.events_factory import Story, fold

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _common(instance_id: str, version: int) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "account_id": "acc",
        "workflow_name": "wf",
        "instance_id": instance_id,
        "version": version,
        "occurred_at": T0 + timedelta(seconds=version),
        "command_id": str(uuid.uuid4()),
    }


def _created(instance_id: str) -> ev.InstanceCreated:
    return ev.InstanceCreated(
        **_common(instance_id, 1),
        global_id=str(uuid.uuid4()),  # type: ignore[arg-type]
        workflow_id=str(uuid.uuid4()),
        version_id=str(uuid.uuid4()),
        params={"p": 1},
    )


def _fold(events: list[ev.LifecycleEvent]) -> dict[str, object]:
    doc = None
    for event in events:
        doc = cf.apply(doc, event)
    assert doc is not None
    return doc


def test_created_instance_reads_as_queued_with_its_params() -> None:
    instance_id = f"i-{uuid.uuid4().hex[:8]}"
    created = _created(instance_id)
    response = cf.get_response(_fold([created]))
    assert response["status"] == "queued" and response["params"] == {"p": 1}
    assert response["versionId"] == created.version_id
    assert response["step_count"] == 0 and response["trigger"] == {"source": "api"}


def test_sensitive_step_output_is_redacted_and_run_completes() -> None:
    iid = f"i-{uuid.uuid4().hex[:8]}"
    config = {
        "retries": {"limit": 1, "delay": 10, "backoff": "constant"},
        "timeout": 5,
        "sensitive": "output",
    }
    doc = _fold(
        [
            _created(iid),
            ev.RunStarted(**_common(iid, 2)),  # type: ignore[arg-type]
            ev.StepBegan(**_common(iid, 3), name="s", step_type="step", count=1, config=config),  # type: ignore[arg-type]
            ev.AttemptBegan(**_common(iid, 4), name="s", attempt=1),  # type: ignore[arg-type]
            ev.AttemptEnded(**_common(iid, 5), name="s", attempt=1, success=True),  # type: ignore[arg-type]
            ev.StepEnded(
                **_common(iid, 6), name="s", step_type="step", success=True, output="secret"
            ),  # type: ignore[arg-type]
            ev.RunCompleted(**_common(iid, 7), output={"ok": True}),  # type: ignore[arg-type]
        ]
    )
    response = cf.get_response(doc)
    [step] = response["steps"]
    assert step["output"] == cf.REDACTED and step["success"] is True
    assert len(step["attempts"]) == 1 and step["attempts"][0]["success"] is True
    assert response["status"] == "complete" and response["output"] == '{"ok":true}'
    assert response["success"] is True and response["end"] is not None


def test_terminate_adds_a_termination_step_and_restart_starts_afresh() -> None:
    iid = f"i-{uuid.uuid4().hex[:8]}"
    terminated = _fold(
        [
            _created(iid),
            ev.InstanceTerminated(**_common(iid, 2), rollback=False),  # type: ignore[arg-type]
        ]
    )
    assert terminated["status"] == "terminated"
    assert terminated["steps"][-1] == {"type": "termination", "trigger": {"source": "api"}}
    restarted = cf.apply(terminated, ev.InstanceRestarted(**_common(iid, 3), run=2, kept_steps=0))  # type: ignore[arg-type]
    assert restarted is not None and restarted["status"] == "queued" and restarted["steps"] == []


def test_instance_events_are_keyed_by_global_id_and_workflow_events_are_not_ours() -> None:
    iid = f"i-{uuid.uuid4().hex[:8]}"
    assert cf.key_of(_created(iid)) == str(instance_global_id("acc", "wf", iid))
    assert cf.key_of(ev.RunStarted(**_common(iid, 2))) == cf.key_of(_created(iid))  # type: ignore[arg-type]
    registered = ev.WorkflowRegistered(
        event_id=str(uuid.uuid4()),
        account_id="acc",
        workflow_name="wf",
        version=1,
        occurred_at=T0,
        command_id=str(uuid.uuid4()),
        workflow_id=str(uuid.uuid4()),
        version_id=str(uuid.uuid4()),
    )
    assert cf.key_of(registered) is None


def test_steps_of_every_kind_carry_exactly_the_seed_fields() -> None:
    iid = f"i-{uuid.uuid4().hex[:8]}"
    failed = ev.ErrorData(name="E", message="boom")
    doc = _fold(
        [
            _created(iid),
            ev.RunStarted(**_common(iid, 2)),  # type: ignore[arg-type]
            ev.StepBegan(**_common(iid, 3), name="s", step_type="step", count=1),  # type: ignore[arg-type]
            ev.AttemptBegan(**_common(iid, 4), name="s", attempt=1),  # type: ignore[arg-type]
            ev.AttemptEnded(**_common(iid, 5), name="s", attempt=1, success=False, error=failed),  # type: ignore[arg-type]
            ev.StepEnded(
                **_common(iid, 6), name="s", step_type="step", success=False, error=failed
            ),  # type: ignore[arg-type]
            ev.StepBegan(**_common(iid, 7), name="nap", step_type="sleep", count=1, sleep_ms=5),  # type: ignore[arg-type]
            ev.StepEnded(**_common(iid, 8), name="nap", step_type="sleep", success=True),  # type: ignore[arg-type]
            ev.StepBegan(
                **_common(iid, 9), name="w", step_type="waitForEvent", count=1, event_type="go"
            ),  # type: ignore[arg-type]
            ev.EventReceived(**_common(iid, 10), event_type="go", payload={"ok": 1}),  # type: ignore[arg-type]
            ev.EventDelivered(**_common(iid, 11), event_type="go", payload={"ok": 1}),  # type: ignore[arg-type]
            ev.InstanceTerminated(**_common(iid, 12), rollback=False),  # type: ignore[arg-type]
        ]
    )
    steps = cf.get_response(doc)["steps"]
    assert [s["type"] for s in steps] == ["step", "sleep", "waitForEvent", "termination"]
    assert set(steps[0]) == {
        "attempts",
        "config",
        "end",
        "name",
        "output",
        "start",
        "success",
        "type",
    }
    assert set(steps[1]) == {"end", "error", "finished", "name", "start", "type"}
    assert set(steps[2]) == {"end", "error", "finished", "name", "output", "start", "type"}
    assert steps[3] == {"trigger": {"source": "api"}, "type": "termination"}
    assert steps[0]["attempts"][0]["error"] == {"name": "E", "message": "boom"}
    assert steps[2]["output"] == '{"ok":1}' and steps[2]["finished"] is True
    # The step route still tells why the step failed.
    assert cf.step_response(doc, "s", "step", None) == {
        "error": {"name": "E", "message": "boom"},
        "status": "errored",
        "output": None,
    }


def test_a_pending_sleep_shows_its_planned_end_and_a_finished_one_its_actual_end() -> None:
    story = Story()
    opening = [story.created(), story.started()]
    began = story.step_began("nap", "sleep", sleep_ms=90_000)
    sleeping = fold(cf.apply, [*opening, began])
    [step] = cf.get_response(sleeping)["steps"]
    assert step["end"] == iso(began.occurred_at + timedelta(seconds=90))
    assert step["finished"] is False
    woke = cf.apply(sleeping, story.step_ended("nap", "sleep"))
    assert woke is not None
    assert cf.get_response(woke)["steps"][0]["end"] == iso(story.at(story.version))


@pytest.mark.parametrize(
    ("timeout", "length"),
    [(None, timedelta(hours=24)), ("1 hour", timedelta(hours=1)), (5_000, timedelta(seconds=5))],
)
def test_a_pending_wait_shows_its_timeout_as_its_end(
    timeout: int | str | None, length: timedelta
) -> None:
    story = Story()
    opening = [story.created(), story.started()]
    began = story.step_began("ok?", "waitForEvent", wait_timeout=timeout)
    waiting = fold(cf.apply, [*opening, began])
    [step] = cf.get_response(waiting)["steps"]
    assert step["end"] == iso(began.occurred_at + length) and "output" not in step
    timed_out = cf.apply(waiting, story.step_ended("ok?", "waitForEvent", error="timed out"))
    assert timed_out is not None
    [step] = cf.get_response(timed_out)["steps"]
    assert step["end"] == iso(story.at(story.version)) and step["finished"] is True


def test_a_sleep_event_without_a_readable_length_plans_no_wait() -> None:
    story = Story()
    opening = [story.created(), story.started()]
    began = msgspec.structs.replace(story.step_began("nap", "sleep"), sleep_ms=None)
    [step] = cf.get_response(fold(cf.apply, [*opening, began]))["steps"]
    assert step["end"] == step["start"] == iso(began.occurred_at)


def test_outputs_in_the_get_response_are_json_text_and_long_ones_are_cut() -> None:
    story = Story()
    big = {"blob": "x" * 5_000}
    doc = fold(
        cf.apply,
        [
            story.created(),
            story.started(),
            story.step_began("s"),
            story.attempt_began("s"),
            story.attempt_ended("s", output=big),
            story.step_ended("s", output=big),
            story.step_began("ok?", "waitForEvent"),
            story.event_delivered([1, "two"]),
            story.completed(42),
        ],
    )
    response = cf.get_response(doc)
    step, wait = response["steps"]
    assert len(step["output"]) == cf.OUTPUT_PREVIEW_CHARS
    assert step["output"].startswith('{"blob":"xxx') and step["output"].endswith(cf.ELLIPSIS)
    assert wait["output"] == '[1,"two"]'
    assert response["output"] == "42"
    # The step route still serves the whole value.
    assert cf.step_response(doc, "s", "step", None) == {
        "error": None,
        "status": "complete",
        "output": big,
    }
    assert cf.step_response(doc, "ok?", "waitForEvent", None)["output"] == [1, "two"]  # type: ignore[index]


def test_a_step_output_is_null_until_the_step_succeeds_and_the_run_output_is_null_text() -> None:
    story = Story()
    doc = fold(
        cf.apply,
        [story.created(), story.started(), story.step_began("s"), story.attempt_began("s")],
    )
    response = cf.get_response(doc)
    assert response["steps"][0]["output"] is None and response["output"] == "null"
    done = cf.apply(doc, story.step_ended("s", output=None))
    assert done is not None and cf.get_response(done)["steps"][0]["output"] == "null"


def test_an_unset_sensitive_flag_is_left_out_of_the_step_config() -> None:
    story = Story()
    config = {
        "retries": {"limit": 1, "delay": 10, "backoff": "constant"},
        "timeout": 5,
        "sensitive": None,
    }
    doc = fold(cf.apply, [story.created(), story.started(), story.step_began("s", config=config)])
    assert cf.get_response(doc)["steps"][0]["config"] == {
        "retries": {"limit": 1, "delay": 10, "backoff": "constant"},
        "timeout": 5,
    }


def test_a_sleep_folded_before_planned_ends_were_kept_reads_its_start_as_its_end() -> None:
    story = Story()
    doc = fold(cf.apply, [story.created(), story.started(), story.step_began("nap", "sleep")])
    doc["steps"][0]["end"] = None  # as the fold left it before
    [step] = cf.get_response(doc)["steps"]
    assert step["end"] == step["start"]
