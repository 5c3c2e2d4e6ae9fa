"""RecordStep: a step that succeeded at its first attempt, recorded in one command with the
same events (and guards) as BeginStep, BeginAttempt, EndAttempt and EndStep."""

from __future__ import annotations

from typing import Any

import pytest

from services.domain import status as st
from services.domain.errors import InvalidTransition, StepMismatch
from services.domain.instance import DEFAULT_STEP_CONFIG, WorkflowInstance
from tests.services.domain.instance_factory import (
    AT,
    BUILDERS,
    assert_rejected,
    begin_attempt,
    begin_step,
    cid,
    complete,
    end_attempt,
    end_step,
    event_names,
    new_instance,
    queued,
    running,
    start,
)

INVALID = "instance.invalid_transition"
MISMATCH = "step.mismatch"
CONFIG = {"retries": {"limit": 2, "delay": 500, "backoff": "constant"}, "timeout": 30_000}
# What differs between two instances recording the same thing with other commands.
_NOT_COMPARED = {"command_id", "originator_id", "timestamp"}


def record(
    i: WorkflowInstance,
    name: str = "s",
    *,
    config: dict[str, Any] | None = None,
    output: Any = None,
    start_run: bool = False,
    complete_run: bool = False,
    run_output: Any = None,
) -> None:
    i.record_step(
        name=name,
        config=config,
        output=output,
        start_run=start_run,
        complete_run=complete_run,
        run_output=run_output,
        command_id=cid(),
        at=AT,
    )


def events_of(i: WorkflowInstance) -> list[tuple[str, dict[str, Any]]]:
    return [
        (type(e).__name__, {k: v for k, v in vars(e).items() if k not in _NOT_COMPARED})
        for e in i.pending_events
    ]


def twins() -> tuple[WorkflowInstance, WorkflowInstance]:
    """Two queued instances created alike (two stores, say), fresh ids for each test."""
    first = new_instance()
    same = {k: getattr(first, k) for k in ("account_id", "workflow_name", "instance_id")}
    same |= {"workflow_id": first.workflow_id, "version_id": first.version_id}
    return first, new_instance(**same)


@pytest.mark.parametrize("config", [None, CONFIG])
def test_record_step_records_the_events_of_the_four_commands_it_replaces(
    config: dict[str, Any] | None,
) -> None:
    separate, combined = twins()
    start(separate)
    start(combined)
    begin_step(separate, "charge", config=config)
    begin_attempt(separate, "charge")
    end_attempt(separate, "charge", output={"charged": 42})
    end_step(separate, "charge", output={"charged": 42})

    record(combined, "charge", config=config, output={"charged": 42})

    assert event_names(combined)[-4:] == ["StepBegan", "AttemptBegan", "AttemptEnded", "StepEnded"]
    assert events_of(combined) == events_of(separate)
    assert combined.run.steps == separate.run.steps
    assert combined.status == separate.status == st.RUNNING
    assert combined.run.steps[0].config == (config or DEFAULT_STEP_CONFIG)


def test_record_step_starting_and_completing_the_run_equals_start_steps_and_complete() -> None:
    separate, combined = twins()
    start(separate)
    begin_step(separate, "only")
    begin_attempt(separate, "only")
    end_attempt(separate, "only", output=1)
    end_step(separate, "only", output=1)
    complete(separate, output={"result": 1})

    record(combined, "only", output=1, start_run=True, complete_run=True, run_output={"result": 1})

    assert event_names(combined) == [
        "InstanceCreated",
        "RunStarted",
        "StepBegan",
        "AttemptBegan",
        "AttemptEnded",
        "StepEnded",
        "RunCompleted",
    ]
    assert events_of(combined) == events_of(separate)
    assert combined.status == st.COMPLETE and combined.run.output == {"result": 1}


def test_record_step_counts_repeats_of_the_same_name() -> None:
    i = running()
    record(i, "poll", output=1)
    record(i, "poll", output=2)
    assert [(s.name, s.count, s.output) for s in i.run.steps] == [("poll", 1, 1), ("poll", 2, 2)]
    assert all(s.attempts == 1 and s.success for s in i.run.steps)


@pytest.mark.parametrize("state", [n for n in BUILDERS if n not in ("running",)])
def test_record_step_is_rejected_unless_running(state: str) -> None:
    i = BUILDERS[state]()
    error = InvalidTransition if i.status != st.RUNNING else StepMismatch
    code = INVALID if i.status != st.RUNNING else MISMATCH
    assert_rejected(i, error, code, lambda: record(i, "x"))


@pytest.mark.parametrize("state", [n for n in BUILDERS if n != "queued"])
def test_record_step_starting_the_run_is_rejected_unless_queued(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InvalidTransition, INVALID, lambda: record(i, "x", start_run=True))


def test_record_step_while_a_step_is_open_is_rejected_and_records_nothing() -> None:
    i = running()
    begin_step(i, "open")
    error = assert_rejected(i, StepMismatch, MISMATCH, lambda: record(i, "other"))
    assert "'open' is still open" in str(error)


def test_a_queued_instance_cannot_record_a_step_without_starting_its_run() -> None:
    i = queued()
    assert_rejected(i, InvalidTransition, INVALID, lambda: record(i, "x"))
    record(i, "x", start_run=True)
    assert i.status == st.RUNNING and i.run.steps[0].ended
