"""A run has at most `max_steps` steps (the application's setting, passed in): BeginStep and
RecordStep past it are refused with `instance.step_limit`, recording nothing."""

from __future__ import annotations

import pytest

from services.domain.errors import StepLimitReached
from services.domain.instance import WorkflowInstance
from tests.services.domain.instance_factory import AT, cid, record_step, restart, running

LIMIT = 3


def record(i: WorkflowInstance, name: str, *, max_steps: int = LIMIT) -> None:
    record_step(i, name, max_steps=max_steps)


def begin_sleep(i: WorkflowInstance, name: str) -> None:
    i.begin_step(
        name=name,
        step_type="sleep",
        config=None,
        sleep_ms=1000,
        event_type=None,
        wait_timeout=None,
        command_id=cid(),
        at=AT,
        max_steps=LIMIT,
    )


def full() -> WorkflowInstance:
    i = running()
    for n in range(LIMIT):
        record(i, f"s{n}")
    return i


def test_record_step_past_the_limit_is_refused_with_its_code_and_records_nothing() -> None:
    i = full()
    version = i.version
    with pytest.raises(StepLimitReached) as refused:
        record(i, "one too many")
    assert refused.value.code == "instance.step_limit"
    assert f"({LIMIT})" in refused.value.message
    assert i.version == version and len(i.run.steps) == LIMIT


def test_begin_step_past_the_limit_is_refused_too() -> None:
    with pytest.raises(StepLimitReached):
        begin_sleep(full(), "nap")


def test_the_last_step_within_the_limit_is_accepted() -> None:
    i = running()
    for n in range(LIMIT - 1):
        record(i, f"s{n}")
    begin_sleep(i, "last")
    assert len(i.run.steps) == LIMIT


def test_a_restart_begins_a_run_with_room_again() -> None:
    i = full()
    i.complete_run(output=None, outcome=None, reasons=[], command_id=cid(), at=AT)
    restart(i)
    i.start_run(command_id=cid(), at=AT)
    record(i, "again")
    assert [s.name for s in i.run.steps] == ["again"]


def test_a_higher_limit_lets_the_same_run_go_on() -> None:
    i = full()
    record(i, "more", max_steps=LIMIT + 1)
    assert len(i.run.steps) == LIMIT + 1
