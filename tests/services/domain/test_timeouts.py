"""What the scheduler's time commands decide: an attempt or an instance that outlived its
timeout fails; a late or repeated one changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from services.domain import status as st
from services.domain.errors import AttemptTimedOut
from services.domain.instance import ATTEMPT_TIMEOUT_ERROR, WorkflowInstance
from tests.services.domain.instance_factory import (
    assert_rejected,
    attempt_in_flight,
    begin_attempt,
    cid,
    completed,
    end_attempt,
    event_names,
    rolling_back,
    running,
    sleeping,
    state_of,
)

AT = datetime(2026, 7, 8, 9, 10, 11, tzinfo=UTC)


def time_out_attempt(i: WorkflowInstance, name: str = "s", attempt: int = 1) -> None:
    i.time_out_attempt(name=name, attempt=attempt, command_id=cid(), at=AT)


def time_out(i: WorkflowInstance) -> None:
    i.time_out(command_id=cid(), at=AT)


def assert_unchanged(i: WorkflowInstance, action: object) -> None:
    before, events = state_of(i), list(i.pending_events)
    action()  # type: ignore[operator]
    assert state_of(i) == before and list(i.pending_events) == events


def test_an_attempt_that_outlived_its_timeout_fails_and_backs_off_per_its_retries() -> None:
    i = attempt_in_flight()

    time_out_attempt(i, "s", 1)

    ended = i.pending_events[-1]
    assert event_names(i)[-1] == "AttemptEnded" and ended.success is False
    assert ended.error["name"] == ATTEMPT_TIMEOUT_ERROR and ended.retry_delay_ms is not None
    assert i.status == st.WAITING  # backing off, as after any failed attempt


def test_a_late_end_attempt_for_a_timed_out_attempt_is_rejected_with_its_own_code() -> None:
    i = attempt_in_flight()
    time_out_attempt(i, "s", 1)

    assert_rejected(
        i, AttemptTimedOut, "step.attempt_timed_out", lambda: end_attempt(i, "s", success=True)
    )


def test_timing_out_an_attempt_no_longer_in_flight_changes_nothing() -> None:
    ended = attempt_in_flight()
    end_attempt(ended, "s", success=True)
    assert_unchanged(ended, lambda: time_out_attempt(ended, "s", 1))

    retried = attempt_in_flight()
    end_attempt(retried, "s", success=False)
    retried.end_sleep(name="s", command_id=cid(), at=AT)
    begin_attempt(retried, "s")
    assert_unchanged(retried, lambda: time_out_attempt(retried, "s", 1))  # attempt 2 runs

    asleep = sleeping()
    assert_unchanged(asleep, lambda: time_out_attempt(asleep, "nap", 1))


def test_an_instance_past_its_timeout_fails_timed_out_whatever_it_is_doing() -> None:
    for i in (running(), attempt_in_flight(), sleeping()):
        time_out(i)

        failed = i.pending_events[-1]
        assert event_names(i)[-1] == "RunFailed" and failed.timed_out is True
        assert i.status == st.ERRORED


def test_an_instance_timeout_after_the_run_ended_or_during_a_rollback_changes_nothing() -> None:
    for i in (completed(), rolling_back()):
        assert_unchanged(i, lambda i=i: time_out(i))
