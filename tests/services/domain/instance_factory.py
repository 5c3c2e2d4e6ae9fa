"""Builders for WorkflowInstance tests: fresh ids per call, fixed `at`, no I/O."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.domain.errors import DomainError
from services.domain.instance import WorkflowInstance

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def cid() -> str:
    return f"cmd-{uuid4().hex}"


def new_instance(**overrides: Any) -> WorkflowInstance:
    suffix = uuid4().hex[:12]
    kwargs: dict[str, Any] = {
        "account_id": f"acct-{suffix}",
        "workflow_name": f"wf-{suffix}",
        "instance_id": f"inst-{suffix}",
        "workflow_id": uuid4(),
        "version_id": uuid4(),
        "params": {"n": 1},
        "trigger_source": "api",
        "schedule": None,
        "retention": None,
        "timeout": None,
        "metadata": {},
        "command_id": cid(),
        "at": AT,
    }
    kwargs.update(overrides)
    return WorkflowInstance(**kwargs)


# --- one-line commands -------------------------------------------------------------------------


def start(i: WorkflowInstance) -> None:
    i.start_run(command_id=cid(), at=AT)


def begin_step(
    i: WorkflowInstance,
    name: str = "s",
    step_type: str = "step",
    *,
    config: dict[str, Any] | None = None,
    sleep_ms: int | None = None,
    event_type: str | None = None,
    wait_timeout: int | str | None = None,
) -> None:
    i.begin_step(
        name=name,
        step_type=step_type,
        config=config,
        sleep_ms=sleep_ms,
        event_type=event_type,
        wait_timeout=wait_timeout,
        command_id=cid(),
        at=AT,
    )


def begin_attempt(i: WorkflowInstance, name: str = "s") -> None:
    i.begin_attempt(name=name, command_id=cid(), at=AT)


def end_attempt(
    i: WorkflowInstance,
    name: str = "s",
    *,
    success: bool = True,
    output: Any = None,
    error: dict[str, str] | None = None,
) -> None:
    i.end_attempt(name=name, success=success, output=output, error=error, command_id=cid(), at=AT)


def end_step(
    i: WorkflowInstance,
    name: str = "s",
    *,
    success: bool = True,
    output: Any = None,
    error: dict[str, str] | None = None,
) -> None:
    i.end_step(name=name, success=success, output=output, error=error, command_id=cid(), at=AT)


def record_step(i: WorkflowInstance, name: str = "s", **limit: int) -> None:
    """A RecordStep of a running instance, its output naming it (`max_steps=` may be given)."""
    i.record_step(
        name=name,
        config=None,
        output={"name": name},
        start_run=False,
        complete_run=False,
        run_output=None,
        command_id=cid(),
        at=AT,
        **limit,
    )


def end_sleep(i: WorkflowInstance, name: str | None = None) -> None:
    i.end_sleep(name=name, command_id=cid(), at=AT)


def time_out_wait(i: WorkflowInstance, name: str) -> None:
    i.time_out_wait(name=name, command_id=cid(), at=AT)


def acknowledge_pause(i: WorkflowInstance) -> None:
    i.acknowledge_pause(command_id=cid(), at=AT)


def pause(i: WorkflowInstance) -> bool:
    return i.pause(command_id=cid(), at=AT)


def resume(i: WorkflowInstance) -> bool:
    return i.resume(command_id=cid(), at=AT)


def terminate(i: WorkflowInstance, *, rollback: bool = False) -> None:
    i.terminate(rollback=rollback, command_id=cid(), at=AT)


def end_rollback(
    i: WorkflowInstance, *, outcome: str = "success", error: dict[str, str] | None = None
) -> None:
    i.end_rollback(outcome=outcome, error=error, command_id=cid(), at=AT)


def restart(i: WorkflowInstance, from_step: dict[str, Any] | None = None) -> None:
    i.restart(from_step=from_step, command_id=cid(), at=AT)


def send(i: WorkflowInstance, event_type: str, payload: Any = None) -> None:
    i.send_event(event_type=event_type, payload=payload, command_id=cid(), at=AT)


def complete(i: WorkflowInstance, output: Any = None) -> None:
    i.complete_run(output=output, outcome=None, reasons=[], command_id=cid(), at=AT)


def fail(i: WorkflowInstance, *, timed_out: bool = False) -> None:
    i.fail_run(
        error={"name": "Error", "message": "boom"}, timed_out=timed_out, command_id=cid(), at=AT
    )


# --- instances in a given state ----------------------------------------------------------------


def queued() -> WorkflowInstance:
    return new_instance()


def running() -> WorkflowInstance:
    i = new_instance()
    start(i)
    return i


def attempt_in_flight() -> WorkflowInstance:
    i = running()
    begin_step(i, "s")
    begin_attempt(i, "s")
    return i


def sleeping() -> WorkflowInstance:
    i = running()
    begin_step(i, "nap", "sleep", sleep_ms=1_000)
    return i


def waiting_for_event(event_type: str = "approval") -> WorkflowInstance:
    i = running()
    begin_step(i, "wait", "waitForEvent", event_type=event_type)
    return i


def backing_off() -> WorkflowInstance:
    i = attempt_in_flight()
    end_attempt(i, "s", success=False)
    return i


def paused() -> WorkflowInstance:
    i = running()
    pause(i)
    return i


def waiting_for_pause() -> WorkflowInstance:
    i = attempt_in_flight()
    pause(i)
    return i


def rolling_back() -> WorkflowInstance:
    i = running()
    terminate(i, rollback=True)
    return i


def completed() -> WorkflowInstance:
    i = running()
    complete(i, output={"ok": True})
    return i


def errored() -> WorkflowInstance:
    i = running()
    fail(i)
    return i


def terminated() -> WorkflowInstance:
    i = running()
    terminate(i)
    return i


BUILDERS: dict[str, Callable[[], WorkflowInstance]] = {
    "queued": queued,
    "running": running,
    "running_attempt_in_flight": attempt_in_flight,
    "waiting_sleep": sleeping,
    "waiting_event": waiting_for_event,
    "waiting_backoff": backing_off,
    "paused": paused,
    "waitingForPause": waiting_for_pause,
    "rollingBack": rolling_back,
    "complete": completed,
    "errored": errored,
    "terminated": terminated,
}
TERMINAL_BUILDERS = ("complete", "errored", "terminated")
NON_TERMINAL_BUILDERS = tuple(name for name in BUILDERS if name not in TERMINAL_BUILDERS)


# --- assertions --------------------------------------------------------------------------------


def state_of(i: WorkflowInstance) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in vars(i).items() if k != "_pending_events"}


def event_names(i: WorkflowInstance) -> list[str]:
    return [type(e).__name__ for e in i.pending_events]


def assert_rejected(
    i: WorkflowInstance,
    error: type[DomainError],
    code: str,
    action: Callable[[], object],
) -> DomainError:
    """The command raises `error` with `code` and leaves no trace: no event, same state."""
    before_state = state_of(i)
    before_events = list(i.pending_events)
    with pytest.raises(error) as caught:
        action()
    assert caught.value.code == code
    assert caught.value.message
    assert list(i.pending_events) == before_events
    assert state_of(i) == before_state
    return caught.value


def assert_no_op(i: WorkflowInstance, action: Callable[[], bool]) -> None:
    before_state = state_of(i)
    before_events = list(i.pending_events)
    assert action() is False
    assert list(i.pending_events) == before_events
    assert state_of(i) == before_state
