"""Unit tests of the WorkflowInstance state machine (docs/architecture.md, "The instance
state machine")."""

from __future__ import annotations

from typing import Any

import pytest

from services.domain import status as st
from services.domain.errors import (
    CannotTerminate,
    InstanceFinished,
    InvalidTransition,
    RestartStepNotFound,
    StepMismatch,
)
from services.domain.instance import DEFAULT_STEP_CONFIG, DEFAULT_WAIT_TIMEOUT, WorkflowInstance
from tests.services.domain.instance_factory import (
    AT,
    BUILDERS,
    NON_TERMINAL_BUILDERS,
    TERMINAL_BUILDERS,
    acknowledge_pause,
    assert_no_op,
    assert_rejected,
    attempt_in_flight,
    backing_off,
    begin_attempt,
    begin_step,
    complete,
    end_attempt,
    end_rollback,
    end_sleep,
    end_step,
    event_names,
    fail,
    new_instance,
    pause,
    queued,
    restart,
    resume,
    rolling_back,
    running,
    send,
    sleeping,
    start,
    terminate,
    time_out_wait,
    waiting_for_event,
    waiting_for_pause,
)

INVALID = "instance.invalid_transition"
MISMATCH = "step.mismatch"


def last_event(i: WorkflowInstance) -> Any:
    return i.pending_events[-1]


# --- create and start ------------------------------------------------------------------------


def test_create_records_instance_created_and_is_queued() -> None:
    i = new_instance(params={"order": 7})
    assert i.status == st.QUEUED
    assert i.version == 1
    assert event_names(i) == ["InstanceCreated"]
    assert i.params == {"order": 7}
    assert i.run.number == 1
    assert i.run.steps == []
    assert i.step_count == 0
    assert i.event_buffer == {}
    assert i.resume_to is None
    assert not i.is_terminal


def test_create_id_is_deterministic_per_account_workflow_and_instance_id() -> None:
    a = new_instance(account_id="acct-x", workflow_name="wf-x", instance_id="one")
    b = new_instance(account_id="acct-x", workflow_name="wf-x", instance_id="one")
    c = new_instance(account_id="acct-x", workflow_name="wf-x", instance_id="two")
    assert a.id == b.id
    assert a.id != c.id


def test_start_run_of_queued_instance_is_running() -> None:
    i = queued()
    start(i)
    assert i.status == st.RUNNING
    assert event_names(i)[-1] == "RunStarted"


@pytest.mark.parametrize("state", [n for n in BUILDERS if n != "queued"])
def test_start_run_is_rejected_unless_queued(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InvalidTransition, INVALID, lambda: start(i))


# --- steps -----------------------------------------------------------------------------------


def test_begin_step_records_step_with_default_retry_config_and_stays_running() -> None:
    i = running()
    begin_step(i, "fetch")
    assert i.status == st.RUNNING
    assert i.step_count == 1
    step = i.run.steps[0]
    assert (step.name, step.type, step.count, step.ended) == ("fetch", "step", 1, False)
    assert step.config == DEFAULT_STEP_CONFIG
    assert step.config["retries"] == {"limit": 5, "delay": 10_000, "backoff": "exponential"}


def test_begin_step_keeps_an_explicit_config() -> None:
    i = running()
    config = {"retries": {"limit": 1, "delay": "1 second", "backoff": "constant"}, "timeout": 5}
    begin_step(i, "fetch", config=config)
    assert i.run.steps[0].config == config


def test_begin_step_counts_repeats_of_the_same_name() -> None:
    i = running()
    for _ in range(3):
        begin_step(i, "fetch")
        begin_attempt(i, "fetch")
        end_attempt(i, "fetch")
        end_step(i, "fetch")
    assert [s.count for s in i.run.steps] == [1, 2, 3]


def test_begin_sleep_makes_instance_waiting() -> None:
    i = running()
    begin_step(i, "nap", "sleep", sleep_ms=5_000)
    assert i.status == st.WAITING
    assert i.run.steps[0].type == "sleep"
    assert i.run.steps[0].config is None
    assert last_event(i).sleep_ms == 5_000


def test_begin_wait_for_event_makes_instance_waiting_with_default_timeout() -> None:
    i = running()
    begin_step(i, "approve", "waitForEvent", event_type="approval")
    assert i.status == st.WAITING
    assert i.run.steps[0].event_type == "approval"
    assert last_event(i).wait_timeout == DEFAULT_WAIT_TIMEOUT


def test_wait_for_event_without_event_type_is_rejected() -> None:
    i = running()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: begin_step(i, "w", "waitForEvent"))


def test_begin_step_while_another_is_open_is_rejected() -> None:
    i = running()
    begin_step(i, "a")
    assert_rejected(i, StepMismatch, MISMATCH, lambda: begin_step(i, "b"))


@pytest.mark.parametrize("state", [n for n in BUILDERS if not n.startswith("running")])
def test_begin_step_is_rejected_unless_running(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InvalidTransition, INVALID, lambda: begin_step(i, "x"))


def test_successful_attempt_then_end_step_records_output() -> None:
    i = attempt_in_flight()
    assert i.run.steps[-1].attempt_in_flight
    assert i.run.steps[-1].attempts == 1
    end_attempt(i, "s", output={"v": 1})
    assert i.status == st.RUNNING
    assert last_event(i).retry_delay_ms is None
    end_step(i, "s", output={"v": 1})
    step = i.run.steps[-1]
    assert (step.ended, step.success, step.output) == (True, True, {"v": 1})
    assert i.status == st.RUNNING
    assert event_names(i)[-2:] == ["AttemptEnded", "StepEnded"]


def test_failed_attempt_with_default_retries_backs_off_ten_seconds_then_exponentially() -> None:
    i = running()
    begin_step(i, "s")
    delays = []
    for _ in range(5):
        begin_attempt(i, "s")
        end_attempt(i, "s", success=False, error={"name": "E", "message": "no"})
        assert i.status == st.WAITING
        assert i.run.steps[-1].backing_off
        delays.append(last_event(i).retry_delay_ms)
        end_sleep(i)
        assert i.status == st.RUNNING
        assert event_names(i)[-1] == "BackoffEnded"
    assert delays == [10_000, 20_000, 40_000, 80_000, 160_000]
    # the sixth attempt is past the limit of five retries: no more back-off
    begin_attempt(i, "s")
    end_attempt(i, "s", success=False)
    assert last_event(i).retry_delay_ms is None
    assert i.status == st.RUNNING
    end_step(i, "s", success=False, error={"name": "E", "message": "gave up"})
    step = i.run.steps[-1]
    assert (step.ended, step.success, step.attempts) == (True, False, 6)


def test_failed_attempt_without_error_gets_a_default_error() -> None:
    i = attempt_in_flight()
    end_attempt(i, "s", success=False)
    assert last_event(i).error == {"name": "Error", "message": "attempt failed"}


def test_failed_attempt_uses_the_step_retry_config() -> None:
    i = running()
    config = {"retries": {"limit": 1, "delay": "2 seconds", "backoff": "linear"}, "timeout": 1}
    begin_step(i, "s", config=config)
    begin_attempt(i, "s")
    end_attempt(i, "s", success=False)
    assert last_event(i).retry_delay_ms == 2_000
    end_sleep(i)
    begin_attempt(i, "s")
    end_attempt(i, "s", success=False)
    assert last_event(i).retry_delay_ms is None
    assert i.status == st.RUNNING


def test_end_sleep_ends_back_off_and_allows_next_attempt() -> None:
    i = backing_off()
    end_sleep(i, "s")
    assert i.status == st.RUNNING
    assert not i.run.steps[-1].backing_off
    begin_attempt(i, "s")
    assert i.run.steps[-1].attempts == 2


def test_attempt_during_back_off_is_rejected() -> None:
    i = backing_off()
    assert_rejected(i, InvalidTransition, INVALID, lambda: begin_attempt(i, "s"))


def test_end_sleep_ends_the_sleep_step_and_returns_to_running() -> None:
    i = sleeping()
    end_sleep(i, "nap")
    step = i.run.steps[-1]
    assert (step.ended, step.success) == (True, True)
    assert i.status == st.RUNNING
    assert event_names(i)[-1] == "StepEnded"


def test_end_sleep_with_wrong_name_is_rejected() -> None:
    i = sleeping()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: end_sleep(i, "other"))


def test_end_sleep_while_waiting_for_an_event_is_rejected() -> None:
    i = waiting_for_event()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: end_sleep(i))


@pytest.mark.parametrize("state", ["queued", "running", "paused", "complete"])
def test_end_sleep_is_rejected_unless_waiting(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InvalidTransition, INVALID, lambda: end_sleep(i))


def test_begin_attempt_of_another_step_name_is_rejected() -> None:
    i = running()
    begin_step(i, "a")
    assert_rejected(i, StepMismatch, MISMATCH, lambda: begin_attempt(i, "b"))


def test_begin_attempt_without_open_step_is_rejected() -> None:
    i = running()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: begin_attempt(i, "a"))


def test_begin_attempt_of_a_sleep_is_rejected() -> None:
    i = running()
    begin_step(i, "nap", "sleep", sleep_ms=1)
    end_sleep(i)
    begin_step(i, "nap2", "sleep", sleep_ms=1)
    assert_rejected(i, InvalidTransition, INVALID, lambda: begin_attempt(i, "nap2"))


def test_second_attempt_while_one_is_in_flight_is_rejected() -> None:
    i = attempt_in_flight()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: begin_attempt(i, "s"))


def test_end_attempt_without_attempt_in_flight_is_rejected() -> None:
    i = running()
    begin_step(i, "s")
    assert_rejected(i, StepMismatch, MISMATCH, lambda: end_attempt(i, "s"))


def test_end_step_while_attempt_in_flight_is_rejected() -> None:
    i = attempt_in_flight()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: end_step(i, "s"))


def test_end_step_with_wrong_name_is_rejected() -> None:
    i = running()
    begin_step(i, "s")
    assert_rejected(i, StepMismatch, MISMATCH, lambda: end_step(i, "other"))


def test_end_step_when_no_step_is_open_is_rejected() -> None:
    i = running()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: end_step(i, "s"))


def test_failed_end_step_gets_a_default_error_and_no_output() -> None:
    i = running()
    begin_step(i, "s")
    end_step(i, "s", success=False, output={"ignored": True})
    assert last_event(i).error == {"name": "Error", "message": "step failed"}
    assert i.run.steps[-1].output is None
    assert i.run.steps[-1].success is False


# --- waitForEvent and sent events -----------------------------------------------------------


def test_send_event_while_waiting_for_that_type_delivers_it() -> None:
    i = waiting_for_event("approval")
    send(i, "approval", {"ok": True})
    assert event_names(i)[-2:] == ["EventReceived", "EventDelivered"]
    step = i.run.steps[-1]
    assert (step.ended, step.success, step.output) == (True, True, {"ok": True})
    assert i.status == st.RUNNING
    assert i.event_buffer == {}


def test_send_event_of_another_type_while_waiting_is_buffered() -> None:
    i = waiting_for_event("approval")
    send(i, "other", 1)
    assert event_names(i)[-1] == "EventReceived"
    assert i.status == st.WAITING
    assert i.event_buffer == {"other": [1]}


def test_send_event_buffers_fifo_per_type() -> None:
    i = running()
    send(i, "a", 1)
    send(i, "b", "x")
    send(i, "a", 2)
    assert i.event_buffer == {"a": [1, 2], "b": ["x"]}
    assert i.status == st.RUNNING


def test_wait_for_event_consumes_first_buffered_payload_immediately() -> None:
    i = running()
    send(i, "a", 1)
    send(i, "a", 2)
    begin_step(i, "w1", "waitForEvent", event_type="a")
    assert event_names(i)[-2:] == ["StepBegan", "EventDelivered"]
    assert last_event(i).from_buffer is True
    assert i.run.steps[-1].output == 1
    assert i.status == st.RUNNING
    assert i.event_buffer == {"a": [2]}
    begin_step(i, "w2", "waitForEvent", event_type="a")
    assert i.run.steps[-1].output == 2
    assert i.event_buffer == {}


def test_send_event_to_queued_instance_is_buffered() -> None:
    i = queued()
    send(i, "a", 1)
    assert i.event_buffer == {"a": [1]}
    assert i.status == st.QUEUED


def test_time_out_wait_fails_the_wait_and_resumes_running() -> None:
    i = waiting_for_event("approval")
    time_out_wait(i, "wait")
    step = i.run.steps[-1]
    assert (step.ended, step.success) == (True, False)
    assert last_event(i).error["name"] == "WaitTimeoutError"
    assert i.status == st.RUNNING


def test_time_out_wait_of_a_sleep_is_rejected() -> None:
    i = sleeping()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: time_out_wait(i, "nap"))


def test_time_out_wait_with_wrong_name_is_rejected() -> None:
    i = waiting_for_event()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: time_out_wait(i, "other"))


def test_time_out_wait_while_running_is_rejected() -> None:
    i = running()
    assert_rejected(i, InvalidTransition, INVALID, lambda: time_out_wait(i, "wait"))


@pytest.mark.parametrize("state", TERMINAL_BUILDERS)
def test_send_event_to_finished_instance_is_rejected(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InstanceFinished, "instance.finished", lambda: send(i, "a", 1))


# --- pause and resume ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "before"),
    [
        ("queued", st.QUEUED),
        ("running", st.RUNNING),
        ("waiting_sleep", st.WAITING),
        ("waiting_event", st.WAITING),
        ("waiting_backoff", st.WAITING),
    ],
)
def test_pause_then_resume_restores_the_previous_status(state: str, before: str) -> None:
    i = BUILDERS[state]()
    assert pause(i) is True
    assert i.status == st.PAUSED
    assert i.resume_to == before
    assert event_names(i)[-1] == "InstancePaused"
    assert resume(i) is True
    assert i.status == before
    assert i.resume_to is None
    assert event_names(i)[-1] == "InstanceResumed"


def test_resume_of_paused_back_off_can_still_end_the_back_off() -> None:
    i = backing_off()
    pause(i)
    resume(i)
    end_sleep(i)
    assert i.status == st.RUNNING


def test_pause_while_attempt_in_flight_is_waiting_for_pause() -> None:
    i = attempt_in_flight()
    assert pause(i) is True
    assert i.status == st.WAITING_FOR_PAUSE
    assert event_names(i)[-1] == "PauseRequested"


def test_acknowledge_pause_makes_waiting_for_pause_paused_and_resume_runs() -> None:
    i = waiting_for_pause()
    end_attempt(i, "s", output=1)
    assert i.status == st.WAITING_FOR_PAUSE
    end_step(i, "s", output=1)
    assert i.status == st.WAITING_FOR_PAUSE
    acknowledge_pause(i)
    assert i.status == st.PAUSED
    assert event_names(i)[-1] == "PauseAcknowledged"
    resume(i)
    assert i.status == st.RUNNING


def test_resume_of_waiting_for_pause_withdraws_the_pause() -> None:
    i = waiting_for_pause()
    assert resume(i) is True
    assert i.status == st.RUNNING
    assert i.run.steps[-1].attempt_in_flight
    end_attempt(i, "s")
    end_step(i, "s")
    assert i.status == st.RUNNING


def test_back_off_begun_while_a_pause_is_pending_is_waited_out_after_the_pause() -> None:
    i = waiting_for_pause()
    end_attempt(i, "s", success=False)
    assert i.status == st.WAITING_FOR_PAUSE
    acknowledge_pause(i)
    assert i.status == st.PAUSED
    resume(i)
    assert i.status == st.WAITING
    end_sleep(i)
    assert i.status == st.RUNNING
    assert event_names(i)[-1] == "BackoffEnded"


def test_withdrawn_pause_returns_to_a_back_off_begun_meanwhile() -> None:
    i = waiting_for_pause()
    end_attempt(i, "s", success=False)
    resume(i)
    assert i.status == st.WAITING


def test_acknowledge_pause_while_an_attempt_is_in_flight_is_rejected() -> None:
    i = waiting_for_pause()
    assert_rejected(i, StepMismatch, MISMATCH, lambda: acknowledge_pause(i))


@pytest.mark.parametrize("state", ["running", "queued", "paused", "complete"])
def test_acknowledge_pause_is_rejected_unless_waiting_for_pause(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InvalidTransition, INVALID, lambda: acknowledge_pause(i))


@pytest.mark.parametrize("state", [*TERMINAL_BUILDERS, "paused", "waitingForPause"])
def test_pause_of_finished_or_already_paused_instance_is_a_no_op(state: str) -> None:
    i = BUILDERS[state]()
    assert_no_op(i, lambda: pause(i))


def test_pause_while_rolling_back_is_rejected() -> None:
    i = rolling_back()
    assert_rejected(i, InvalidTransition, INVALID, lambda: pause(i))


@pytest.mark.parametrize("state", [n for n in BUILDERS if n not in ("paused", "waitingForPause")])
def test_resume_of_instance_that_is_not_paused_is_a_no_op(state: str) -> None:
    i = BUILDERS[state]()
    assert_no_op(i, lambda: resume(i))


@pytest.mark.parametrize("state", ["paused", "waitingForPause"])
def test_commands_of_the_engine_are_rejected_while_paused(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InvalidTransition, INVALID, lambda: begin_step(i, "x"))
    assert_rejected(i, InvalidTransition, INVALID, lambda: complete(i))


# --- terminate -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [n for n in NON_TERMINAL_BUILDERS if n != "rollingBack"])
def test_terminate_of_live_instance_is_terminated(state: str) -> None:
    i = BUILDERS[state]()
    terminate(i)
    assert i.status == st.TERMINATED
    assert i.is_terminal
    assert i.resume_to is None
    assert event_names(i)[-1] == "InstanceTerminated"


@pytest.mark.parametrize("state", [n for n in NON_TERMINAL_BUILDERS if n != "rollingBack"])
def test_terminate_with_rollback_rolls_back_then_end_rollback_terminates(state: str) -> None:
    i = BUILDERS[state]()
    terminate(i, rollback=True)
    assert i.status == st.ROLLING_BACK
    assert not i.is_terminal
    end_rollback(i, outcome="failure", error={"name": "E", "message": "undo failed"})
    assert i.status == st.TERMINATED
    assert event_names(i)[-1] == "RollbackEnded"
    assert last_event(i).outcome == "failure"


@pytest.mark.parametrize("state", TERMINAL_BUILDERS)
def test_terminate_of_finished_instance_is_rejected(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(
        i, CannotTerminate, "instance.cannot_terminate", lambda: terminate(i, rollback=False)
    )


def test_terminate_while_rolling_back_stops_the_rollback() -> None:
    i = rolling_back()
    terminate(i)
    assert i.status == st.TERMINATED
    assert_rejected(i, InvalidTransition, INVALID, lambda: end_rollback(i))


def test_a_second_rollback_while_rolling_back_is_rejected() -> None:
    i = rolling_back()
    assert_rejected(
        i, CannotTerminate, "instance.cannot_terminate", lambda: terminate(i, rollback=True)
    )


@pytest.mark.parametrize("state", [n for n in BUILDERS if n != "rollingBack"])
def test_end_rollback_is_rejected_unless_rolling_back(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InvalidTransition, INVALID, lambda: end_rollback(i))


def test_engine_progress_is_rejected_while_rolling_back() -> None:
    i = rolling_back()
    assert_rejected(i, InvalidTransition, INVALID, lambda: begin_step(i, "x"))
    assert_rejected(i, InvalidTransition, INVALID, lambda: complete(i))
    assert_rejected(i, InvalidTransition, INVALID, lambda: fail(i))


# --- complete and fail -----------------------------------------------------------------------


def test_complete_run_is_complete_with_output() -> None:
    i = running()
    begin_step(i, "s")
    begin_attempt(i, "s")
    end_attempt(i, "s", output=3)
    end_step(i, "s", output=3)
    complete(i, output={"total": 3})
    assert i.status == st.COMPLETE
    assert i.run.output == {"total": 3}
    assert i.is_terminal


def test_complete_run_with_an_open_step_is_rejected() -> None:
    i = running()
    begin_step(i, "s")
    assert_rejected(i, StepMismatch, MISMATCH, lambda: complete(i))


@pytest.mark.parametrize("state", [n for n in BUILDERS if n != "running"])
def test_complete_run_is_rejected_unless_running(state: str) -> None:
    i = BUILDERS[state]()
    if state == "running_attempt_in_flight":
        assert_rejected(i, StepMismatch, MISMATCH, lambda: complete(i))
    else:
        assert_rejected(i, InvalidTransition, INVALID, lambda: complete(i))


@pytest.mark.parametrize("timed_out", [False, True])
@pytest.mark.parametrize("state", [n for n in NON_TERMINAL_BUILDERS if n != "rollingBack"])
def test_fail_run_is_errored(state: str, timed_out: bool) -> None:
    i = BUILDERS[state]()
    fail(i, timed_out=timed_out)
    assert i.status == st.ERRORED
    assert i.run.error == {"name": "Error", "message": "boom"}
    assert last_event(i).timed_out is timed_out


@pytest.mark.parametrize("state", TERMINAL_BUILDERS)
def test_fail_run_of_finished_instance_is_rejected(state: str) -> None:
    i = BUILDERS[state]()
    assert_rejected(i, InvalidTransition, INVALID, lambda: fail(i))


@pytest.mark.parametrize("state", TERMINAL_BUILDERS)
def test_finished_instance_rejects_every_engine_command(state: str) -> None:
    i = BUILDERS[state]()
    for action in (
        lambda: start(i),
        lambda: begin_step(i, "x"),
        lambda: begin_attempt(i, "x"),
        lambda: end_attempt(i, "x"),
        lambda: end_step(i, "x"),
        lambda: end_sleep(i),
        lambda: time_out_wait(i, "x"),
        lambda: acknowledge_pause(i),
        lambda: complete(i),
        lambda: fail(i),
        lambda: end_rollback(i),
    ):
        assert_rejected(i, InvalidTransition, INVALID, action)
    assert i.status == BUILDERS[state]().status


# --- restart ---------------------------------------------------------------------------------


def _three_steps() -> WorkflowInstance:
    i = running()
    for name in ("a", "b", "c"):
        begin_step(i, name)
        begin_attempt(i, name)
        end_attempt(i, name, output=name.upper())
        end_step(i, name, output=name.upper())
    return i


@pytest.mark.parametrize("state", list(BUILDERS))
def test_restart_from_any_status_is_queued_with_a_new_run_and_no_steps(state: str) -> None:
    i = BUILDERS[state]()
    send_allowed = not i.is_terminal
    if send_allowed:
        send(i, "buffered", 1)
    run_number = i.run.number
    restart(i)
    assert i.status == st.QUEUED
    assert i.run.number == run_number + 1
    assert i.run.steps == []
    assert i.step_count == 0
    assert i.run.output is None and i.run.error is None
    assert i.resume_to is None
    assert i.event_buffer == {}
    assert event_names(i)[-1] == "InstanceRestarted"
    start(i)
    assert i.status == st.RUNNING


def test_restart_from_a_step_keeps_the_steps_before_it() -> None:
    i = _three_steps()
    complete(i, output="done")
    restart(i, {"name": "c"})
    assert [s.name for s in i.run.steps] == ["a", "b"]
    assert [s.output for s in i.run.steps] == ["A", "B"]
    assert i.status == st.QUEUED
    assert i.run.number == 2
    assert i.run.output is None


def test_restart_from_the_first_step_keeps_nothing() -> None:
    i = _three_steps()
    restart(i, {"name": "a", "count": 1, "type": "step"})
    assert i.run.steps == []


def test_restart_from_a_repeated_step_uses_its_count() -> None:
    i = running()
    for _ in range(3):
        begin_step(i, "loop")
        end_step(i, "loop")
    restart(i, {"name": "loop", "count": 3})
    assert [s.count for s in i.run.steps] == [1, 2]


def test_restart_from_a_sleep_names_its_type() -> None:
    i = running()
    begin_step(i, "a")
    end_step(i, "a")
    begin_step(i, "nap", "sleep", sleep_ms=1)
    restart(i, {"name": "nap", "type": "sleep"})
    assert [s.name for s in i.run.steps] == ["a"]


@pytest.mark.parametrize(
    "from_step",
    [{"name": "zzz"}, {"name": "b", "count": 2}, {"name": "b", "type": "sleep"}],
)
def test_restart_from_a_step_not_in_history_is_rejected(from_step: dict) -> None:
    i = _three_steps()
    assert_rejected(
        i, RestartStepNotFound, "instance.restart_step_not_found", lambda: restart(i, from_step)
    )


def test_restart_from_a_step_of_a_previous_run_is_rejected_after_plain_restart() -> None:
    i = _three_steps()
    restart(i)
    assert_rejected(
        i,
        RestartStepNotFound,
        "instance.restart_step_not_found",
        lambda: restart(i, {"name": "b"}),
    )


def test_repeated_restarts_number_the_runs() -> None:
    i = running()
    for expected in (2, 3, 4):
        restart(i)
        assert i.run.number == expected


# --- codes and event bookkeeping ------------------------------------------------------------


def test_error_codes_are_stable() -> None:
    assert InvalidTransition.code == "instance.invalid_transition"
    assert StepMismatch.code == "step.mismatch"
    assert CannotTerminate.code == "instance.cannot_terminate"
    assert RestartStepNotFound.code == "instance.restart_step_not_found"
    assert InstanceFinished.code == "instance.finished"


def test_invalid_transition_message_names_status_and_allowed_statuses() -> None:
    i = queued()
    error = assert_rejected(i, InvalidTransition, INVALID, lambda: begin_step(i, "x"))
    assert "queued" in error.message
    assert "running" in error.message


def test_every_accepted_command_records_events_with_consecutive_versions() -> None:
    i = running()
    begin_step(i, "s")
    begin_attempt(i, "s")
    end_attempt(i, "s", success=False)
    end_sleep(i)
    pause(i)
    resume(i)
    send(i, "a", 1)
    begin_attempt(i, "s")
    end_attempt(i, "s")
    end_step(i, "s")
    begin_step(i, "w", "waitForEvent", event_type="a")
    complete(i)
    versions = [e.originator_version for e in i.pending_events]
    assert versions == list(range(1, len(versions) + 1))
    assert i.version == versions[-1]
    assert all(e.originator_id == i.id for e in i.pending_events)


# --- events sent while a wait is paused ------------------------------------------------------


def test_event_sent_while_a_wait_is_paused_is_delivered_on_resume() -> None:
    i = waiting_for_event("approval")
    pause(i)
    send(i, "approval", "A")
    assert i.status == st.PAUSED
    assert i.event_buffer == {"approval": ["A"]}
    assert resume(i) is True
    assert event_names(i)[-2:] == ["InstanceResumed", "EventDelivered"]
    assert i.run.steps[-1].output == "A"
    assert i.status == st.RUNNING
    assert i.event_buffer == {}


def test_delivery_to_a_waiting_step_takes_the_oldest_buffered_payload() -> None:
    i = waiting_for_event("approval")
    pause(i)
    send(i, "approval", "A")
    send(i, "approval", "B")
    resume(i)
    assert i.run.steps[-1].output == "A"
    assert i.event_buffer == {"approval": ["B"]}
    begin_step(i, "again", "waitForEvent", event_type="approval")
    assert i.run.steps[-1].output == "B"
    assert i.event_buffer == {}


def test_resume_of_a_paused_wait_without_a_matching_event_keeps_waiting() -> None:
    i = waiting_for_event("approval")
    pause(i)
    send(i, "other", 1)
    resume(i)
    assert i.status == st.WAITING
    assert event_names(i)[-1] == "InstanceResumed"
    assert i.event_buffer == {"other": [1]}


def test_a_non_retryable_failure_backs_off_never_and_is_remembered_for_the_engine() -> None:
    i = attempt_in_flight()
    error = {"name": "NonRetryableError", "message": "declined"}
    i.end_attempt(
        name="s", success=False, output=None, error=error, command_id="c1", at=AT, retryable=False
    )
    assert last_event(i).retry_delay_ms is None and i.status == st.RUNNING
    step = i.run.steps[-1]
    assert (step.last_success, step.last_error, step.retry_due) == (False, error, False)
    end_step(i, "s", success=False, error=error)
    assert (step.ended, step.error, step.ended_at) == (True, error, AT)


def test_the_last_attempt_and_a_pending_retry_are_kept_on_the_step() -> None:
    i = attempt_in_flight()
    end_attempt(i, "s", success=False, error={"name": "E", "message": "no"})
    assert i.run.steps[-1].retry_due
    end_sleep(i)
    assert i.run.steps[-1].retry_due  # due: the back-off ended, the retry has not begun
    begin_attempt(i, "s")
    assert not i.run.steps[-1].retry_due
    end_attempt(i, "s", output={"v": 2})
    step = i.run.steps[-1]
    assert (step.last_success, step.last_output, step.ended) == (True, {"v": 2}, False)
    assert i.created_at == AT
