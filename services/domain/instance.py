"""The WorkflowInstance aggregate: the authoritative lifecycle of one workflow instance.

Pure Python: no Kafka, HTTP, SQL or clock. Every public method is one command; it checks its
guards first (raising a named DomainError, so a rejected command records nothing) and then
records one or more past-tense events. Ids and timestamps are passed in by the application.
What an event means for the status is not written here: every event takes it from the
transition table in contracts/status.py, the one the projections fold with.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.keys import instance_global_id
from contracts.limits import DEFAULT_MAX_STEPS_PER_INSTANCE
from services.domain import status as st
from services.domain.durations import backoff_delay_ms
from services.domain.errors import (
    AttemptTimedOut,
    CannotTerminate,
    InstanceFinished,
    InstanceNotFound,
    InstanceStillRunning,
    InvalidTransition,
    RestartStepNotFound,
    StepLimitReached,
    StepMismatch,
)

DEFAULT_STEP_CONFIG: dict[str, Any] = {
    "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
    "timeout": 600_000,
}
DEFAULT_WAIT_TIMEOUT = "24 hours"
# The error names of what the scheduler times out (Cloudflare names a step timeout so too).
ATTEMPT_TIMEOUT_ERROR = "WorkflowTimeoutError"
INSTANCE_TIMEOUT_ERROR = "WorkflowTimeoutError"


@dataclass
class Step:
    name: str
    type: str  # step | sleep | waitForEvent
    count: int  # 1-based among steps of the same name
    config: dict[str, Any] | None = None
    event_type: str | None = None
    attempts: int = 0
    attempt_in_flight: bool = False
    backing_off: bool = False
    ended: bool = False
    success: bool | None = None
    output: Any = None
    timed_out_attempt: int | None = None  # the last attempt the scheduler timed out
    error: dict[str, str] | None = None  # why it failed, once ended unsuccessfully
    # The last attempt's end, for an engine that takes over between EndAttempt and EndStep.
    last_success: bool | None = None
    last_output: Any = None
    last_error: dict[str, str] | None = None
    retry_due: bool = False  # the last attempt failed and a retry follows its back-off
    ended_at: datetime | None = None  # when it ended (a wait: when its event was delivered)


@dataclass
class Run:
    """What the current run has done; `restart` begins a new one.

    Only the last step ever changes: a step is appended open, changed until it ends, and then
    only read (a restart keeps a prefix of the list). `copy_for_command` relies on that.
    """

    number: int = 1
    steps: list[Step] = field(default_factory=list)
    output: Any = None
    error: dict[str, str] | None = None
    # Steps begun so far by (type, name): each new step's `count` without a scan of the run.
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def restarted(cls, number: int, kept: list[Step]) -> Run:
        counts: dict[tuple[str, str], int] = {}
        for step in kept:
            counts[(step.type, step.name)] = step.count
        return cls(number=number, steps=kept, counts=counts)

    def next_count(self, name: str, step_type: str) -> int:
        return self.counts.get((step_type, name), 0) + 1

    def copy_for_command(self, memo: dict[int, Any]) -> Run:
        """A copy a command may change without changing this one, in time independent of the
        run's length but for a list of references: the ended steps (never changed again) and
        their outputs are shared, the last step is copied."""
        steps = self.steps[:-1]
        if self.steps:
            steps.append(deepcopy(self.steps[-1], memo))
        return Run(
            number=self.number,
            steps=steps,
            output=deepcopy(self.output, memo),
            error=deepcopy(self.error, memo),
            counts=dict(self.counts),
        )


class WorkflowInstance(Aggregate):
    # Never assigned by a method: after every event, recorded or replayed, `Event.apply` takes
    # it from the transition table in contracts/status.py, the one the projections fold with.
    status: str
    # Set by InstanceDeleted (the class default serves instances that never were deleted).
    deleted: bool = False

    class Event(Aggregate.Event):
        def apply(self, aggregate: Any) -> None:
            # Called after the event's own method, which so still sees the status before it.
            aggregate.status = st.status_after(getattr(aggregate, "status", ""), self)

    @staticmethod
    def create_id(account_id: str, workflow_name: str, instance_id: str) -> UUID:  # type: ignore[override]
        return instance_global_id(account_id, workflow_name, instance_id)

    def __deepcopy__(self, memo: dict[int, Any]) -> WorkflowInstance:
        """The repository copies a cached aggregate for every command (so a command that fails
        halfway leaves the cache as it was): the run is copied in near-constant time (see
        `Run.copy_for_command`) instead of every step of the history, which made a step at
        step 3,000 cost 30 times one at step 100 (bench/README.md, long instance)."""
        copied = object.__new__(type(self))
        memo[id(self)] = copied
        copied.__dict__.update(
            {
                name: value.copy_for_command(memo) if name == "run" else deepcopy(value, memo)
                for name, value in self.__dict__.items()
            }
        )
        return copied

    @event("InstanceCreated")
    def __init__(
        self,
        # Not keyword-only: eventsourcing's @event ignores the defaults of keyword-only
        # parameters. The default serves callers that predate it and events stored before it.
        workflow_version: int = 1,
        *,
        account_id: str,
        workflow_name: str,
        instance_id: str,
        workflow_id: UUID,
        version_id: UUID,
        params: Any,
        trigger_source: str,
        schedule: dict[str, Any] | None,
        retention: dict[str, Any] | None,
        timeout: int | str | None,
        metadata: dict[str, Any],
        command_id: str,
        at: datetime,
    ) -> None:
        self.account_id = account_id
        self.workflow_name = workflow_name
        self.instance_id = instance_id
        self.workflow_id = workflow_id
        self.version_id = version_id
        self.workflow_version = workflow_version  # the ordinal of version_id, 1-based
        self.params = params
        self.trigger_source = trigger_source
        self.created_at = at  # the `event.timestamp` a workflow's run() is given
        self.resume_to: str | None = None
        self.run = Run()
        # Events sent before anyone waits for them, FIFO per event type.
        self.event_buffer: dict[str, list[Any]] = {}

    # --- helpers -----------------------------------------------------------------------------

    @property
    def is_terminal(self) -> bool:
        return self.status in st.TERMINAL

    @property
    def step_count(self) -> int:
        return len(self.run.steps)

    def _open_step(self) -> Step | None:
        steps = self.run.steps
        return steps[-1] if steps and not steps[-1].ended else None

    def _require(self, allowed: frozenset[str] | set[str], action: str) -> None:
        if self.status not in allowed:
            raise InvalidTransition(
                f"cannot {action} while the instance is {self.status}; "
                f"allowed when {', '.join(sorted(allowed))}"
            )

    def _require_room_for_a_step(self, max_steps: int) -> None:
        if len(self.run.steps) >= max_steps:
            raise StepLimitReached(
                f"the run already has {len(self.run.steps)} steps, the most an instance may "
                f"have ({max_steps}); FLOWLEDGER_MAX_STEPS_PER_INSTANCE sets the limit"
            )

    def _require_open_step(self, name: str, kinds: tuple[str, ...]) -> Step:
        step = self._open_step()
        if step is None or step.name != name or step.type not in kinds:
            current = f"{step.type} {step.name!r}" if step else "no open step"
            raise StepMismatch(f"no open {'/'.join(kinds)} named {name!r} (current: {current})")
        return step

    # --- the engine's progress -----------------------------------------------------------------

    def start_run(self, *, command_id: str, at: datetime) -> None:
        self._require({st.QUEUED}, "start the run")
        self._run_started(command_id=command_id, at=at)

    @event("RunStarted")
    def _run_started(self, *, command_id: str, at: datetime) -> None:
        pass

    def begin_step(
        self,
        *,
        name: str,
        step_type: str,
        config: dict[str, Any] | None,
        sleep_ms: int | None,
        event_type: str | None,
        wait_timeout: int | str | None,
        command_id: str,
        at: datetime,
        max_steps: int = DEFAULT_MAX_STEPS_PER_INSTANCE,
    ) -> None:
        """`max_steps`: the most steps a run may have (a setting the application passes in)."""
        self._require({st.RUNNING}, f"begin {step_type} {name!r}")
        if self._open_step() is not None:
            raise StepMismatch(f"step {self.run.steps[-1].name!r} is still open; end it first")
        if step_type == "waitForEvent" and not event_type:
            raise StepMismatch("a waitForEvent step needs an event_type")
        self._require_room_for_a_step(max_steps)
        self._step_began(
            name=name,
            step_type=step_type,
            count=self.run.next_count(name, step_type),
            config=(config or DEFAULT_STEP_CONFIG) if step_type == "step" else None,
            sleep_ms=sleep_ms if step_type == "sleep" else None,
            event_type=event_type if step_type == "waitForEvent" else None,
            wait_timeout=(wait_timeout or DEFAULT_WAIT_TIMEOUT)
            if step_type == "waitForEvent"
            else None,
            command_id=command_id,
            at=at,
        )
        if step_type == "waitForEvent" and self.event_buffer.get(event_type or ""):
            self._event_delivered(
                event_type=event_type,
                payload=self.event_buffer[event_type or ""][0],
                from_buffer=True,
                command_id=command_id,
                at=at,
            )

    @event("StepBegan")
    def _step_began(
        self,
        *,
        name: str,
        step_type: str,
        count: int,
        config: dict[str, Any] | None,
        sleep_ms: int | None,
        event_type: str | None,
        wait_timeout: int | str | None,
        command_id: str,
        at: datetime,
    ) -> None:
        self.run.steps.append(
            Step(name=name, type=step_type, count=count, config=config, event_type=event_type)
        )
        self.run.counts[(step_type, name)] = count

    def begin_attempt(self, *, name: str, command_id: str, at: datetime) -> None:
        self._require({st.RUNNING}, f"begin an attempt of {name!r}")
        step = self._require_open_step(name, ("step",))
        if step.attempt_in_flight:
            raise StepMismatch(f"attempt {step.attempts} of {name!r} is still in flight")
        self._attempt_began(name=name, attempt=step.attempts + 1, command_id=command_id, at=at)

    @event("AttemptBegan")
    def _attempt_began(self, *, name: str, attempt: int, command_id: str, at: datetime) -> None:
        step = self.run.steps[-1]
        step.attempts = attempt
        step.attempt_in_flight = True
        step.backing_off = False
        step.retry_due = False

    def end_attempt(
        self,
        *,
        name: str,
        success: bool,
        output: Any,
        error: dict[str, str] | None,
        command_id: str,
        at: datetime,
        retryable: bool = True,
    ) -> None:
        """`retryable=False` (the engine's non-retryable error) ends the attempt without a
        back-off whatever retries are left: the step is then the engine's to end as failed."""
        step = self._open_step()
        late = step is not None and step.name == name and not step.attempt_in_flight
        if late and step is not None and step.timed_out_attempt == step.attempts:
            raise AttemptTimedOut(
                f"attempt {step.attempts} of {name!r} already ended: it outlived its timeout"
            )
        self._require({st.RUNNING, st.WAITING_FOR_PAUSE}, f"end an attempt of {name!r}")
        step = self._require_open_step(name, ("step",))
        if not step.attempt_in_flight:
            raise StepMismatch(f"no attempt of {name!r} is in flight")
        self._end_attempt(step, success, output, error, command_id, at, retryable=retryable)

    def time_out_attempt(self, *, name: str, attempt: int, command_id: str, at: datetime) -> None:
        """A no-op unless that very attempt is still in flight: the timer that fires it may be
        late (the attempt ended meanwhile) or fired twice."""
        step = self._open_step()
        if self.is_terminal or step is None or step.name != name or step.type != "step":
            return
        if not step.attempt_in_flight or step.attempts != attempt:
            return
        timeout = (step.config or DEFAULT_STEP_CONFIG).get("timeout")
        error = {
            "name": ATTEMPT_TIMEOUT_ERROR,
            "message": f"attempt {attempt} of {name!r} did not end within {timeout}",
        }
        self._end_attempt(step, False, None, error, command_id, at)

    def _end_attempt(
        self,
        step: Step,
        success: bool,
        output: Any,
        error: dict[str, str] | None,
        command_id: str,
        at: datetime,
        *,
        retryable: bool = True,
    ) -> None:
        name = step.name
        retries = (step.config or DEFAULT_STEP_CONFIG)["retries"]
        retry_delay_ms: int | None = None
        if not success and retryable and step.attempts <= int(retries["limit"]):
            retry_delay_ms = backoff_delay_ms(
                retries["delay"], retries.get("backoff", "exponential"), step.attempts
            )
        self._attempt_ended(
            name=name,
            attempt=step.attempts,
            success=success,
            output=output if success else None,
            error=None if success else (error or {"name": "Error", "message": "attempt failed"}),
            retry_delay_ms=retry_delay_ms,
            command_id=command_id,
            at=at,
        )

    @event("AttemptEnded")
    def _attempt_ended(
        self,
        *,
        name: str,
        attempt: int,
        success: bool,
        output: Any,
        error: dict[str, str] | None,
        retry_delay_ms: int | None,
        command_id: str,
        at: datetime,
    ) -> None:
        step = self.run.steps[-1]
        step.attempt_in_flight = False
        step.last_success, step.last_output, step.last_error = success, output, error
        step.retry_due = retry_delay_ms is not None
        if error is not None and error.get("name") == ATTEMPT_TIMEOUT_ERROR:
            step.timed_out_attempt = attempt
        if retry_delay_ms is not None:
            # Also while a pause is pending: the back-off is waited out after the pause.
            step.backing_off = True

    def end_step(
        self,
        *,
        name: str,
        success: bool,
        output: Any,
        error: dict[str, str] | None,
        command_id: str,
        at: datetime,
    ) -> None:
        self._require({st.RUNNING, st.WAITING_FOR_PAUSE}, f"end step {name!r}")
        step = self._require_open_step(name, ("step",))
        if step.attempt_in_flight:
            raise StepMismatch(f"attempt {step.attempts} of {name!r} is still in flight")
        self._step_ended(
            name=name,
            step_type="step",
            success=success,
            output=output if success else None,
            error=None if success else (error or {"name": "Error", "message": "step failed"}),
            command_id=command_id,
            at=at,
        )

    @event("StepEnded")
    def _step_ended(
        self,
        *,
        name: str,
        step_type: str,
        success: bool,
        output: Any,
        error: dict[str, str] | None,
        command_id: str,
        at: datetime,
    ) -> None:
        step = self.run.steps[-1]
        step.ended = True
        step.success = success
        step.output = output
        step.error = error
        step.ended_at = at

    def record_step(
        self,
        *,
        name: str,
        config: dict[str, Any] | None,
        output: Any,
        start_run: bool,
        complete_run: bool,
        run_output: Any,
        command_id: str,
        at: datetime,
        max_steps: int = DEFAULT_MAX_STEPS_PER_INSTANCE,
    ) -> None:
        """A step that succeeded at its first attempt, reported after it ran: the events of
        begin_step, begin_attempt, end_attempt (success) and end_step, in that order, after
        `start_run`'s RunStarted and before `complete_run`'s RunCompleted. Every guard is
        checked before anything is recorded, raising what the separate commands would."""
        self._require_recordable(name, start_run, max_steps)
        if start_run:
            self._run_started(command_id=command_id, at=at)
        self._step_began(
            name=name,
            step_type="step",
            count=self.run.next_count(name, "step"),
            config=config or DEFAULT_STEP_CONFIG,
            sleep_ms=None,
            event_type=None,
            wait_timeout=None,
            command_id=command_id,
            at=at,
        )
        step = self.run.steps[-1]
        self._attempt_began(name=name, attempt=1, command_id=command_id, at=at)
        self._end_attempt(step, True, output, None, command_id, at)
        self._step_ended(
            name=name,
            step_type="step",
            success=True,
            output=output,
            error=None,
            command_id=command_id,
            at=at,
        )
        if complete_run:
            self._run_completed(
                output=run_output, outcome=None, reasons=[], command_id=command_id, at=at
            )

    def _require_recordable(self, name: str, start_run: bool, max_steps: int) -> None:
        self._require({st.QUEUED} if start_run else {st.RUNNING}, f"record step {name!r}")
        open_step = self._open_step()
        if open_step is not None:
            raise StepMismatch(f"step {open_step.name!r} is still open; end it first")
        self._require_room_for_a_step(max_steps)

    def end_sleep(self, *, name: str | None, command_id: str, at: datetime) -> None:
        self._require({st.WAITING}, "end a sleep")
        step = self._open_step()
        if step is None or not (step.type == "sleep" or step.backing_off):
            raise StepMismatch("the instance is not sleeping nor backing off")
        if name is not None and name != step.name:
            raise StepMismatch(f"the sleep in progress is {step.name!r}, not {name!r}")
        if step.type == "sleep":
            self._step_ended(
                name=step.name,
                step_type="sleep",
                success=True,
                output=None,
                error=None,
                command_id=command_id,
                at=at,
            )
        else:
            self._backoff_ended(name=step.name, command_id=command_id, at=at)

    @event("BackoffEnded")
    def _backoff_ended(self, *, name: str, command_id: str, at: datetime) -> None:
        self.run.steps[-1].backing_off = False

    def time_out_wait(self, *, name: str, command_id: str, at: datetime) -> None:
        self._require({st.WAITING}, f"time out the wait {name!r}")
        self._require_open_step(name, ("waitForEvent",))
        self._step_ended(
            name=name,
            step_type="waitForEvent",
            success=False,
            output=None,
            error={"name": "WaitTimeoutError", "message": f"waitForEvent {name!r} timed out"},
            command_id=command_id,
            at=at,
        )

    def acknowledge_pause(self, *, command_id: str, at: datetime) -> None:
        self._require({st.WAITING_FOR_PAUSE}, "acknowledge a pause")
        step = self._open_step()
        if step is not None and step.attempt_in_flight:
            raise StepMismatch(
                f"attempt {step.attempts} of {step.name!r} is still in flight: "
                "acknowledge the pause at the step boundary, after EndAttempt"
            )
        self._pause_acknowledged(command_id=command_id, at=at)

    @event("PauseAcknowledged")
    def _pause_acknowledged(self, *, command_id: str, at: datetime) -> None:
        self.resume_to = self._running_or_backing_off()

    def _running_or_backing_off(self) -> str:
        """Where a withdrawn or acknowledged pause returns to: a retry back-off that began
        while the pause was pending is still to be waited out."""
        step = self._open_step()
        return st.WAITING if step is not None and step.backing_off else st.RUNNING

    def complete_run(
        self,
        *,
        output: Any,
        outcome: str | None,
        reasons: list[str],
        command_id: str,
        at: datetime,
    ) -> None:
        self._require({st.RUNNING}, "complete the run")
        open_step = self._open_step()
        if open_step is not None:
            raise StepMismatch(f"{open_step.type} {open_step.name!r} is still open")
        self._run_completed(
            output=output, outcome=outcome, reasons=reasons, command_id=command_id, at=at
        )

    @event("RunCompleted")
    def _run_completed(
        self,
        *,
        output: Any,
        outcome: str | None,
        reasons: list[str],
        command_id: str,
        at: datetime,
    ) -> None:
        self.run.output = output

    def fail_run(
        self, *, error: dict[str, str], timed_out: bool, command_id: str, at: datetime
    ) -> None:
        self._require(
            {st.QUEUED, st.RUNNING, st.WAITING, st.WAITING_FOR_PAUSE, st.PAUSED}, "fail the run"
        )
        self._run_failed(error=error, timed_out=timed_out, command_id=command_id, at=at)

    def time_out(self, *, command_id: str, at: datetime) -> None:
        """The instance's own timeout passed: the run fails, timed out. A no-op once the run
        has ended or while a terminate's rollback is under way (it ends the run itself)."""
        if self.is_terminal or self.status == st.ROLLING_BACK:
            return
        error = {"name": INSTANCE_TIMEOUT_ERROR, "message": "the instance outlived its timeout"}
        self._run_failed(error=error, timed_out=True, command_id=command_id, at=at)

    @event("RunFailed")
    def _run_failed(
        self, *, error: dict[str, str], timed_out: bool, command_id: str, at: datetime
    ) -> None:
        self.run.error = error

    # --- events sent to the instance -------------------------------------------------------

    def send_event(self, *, event_type: str, payload: Any, command_id: str, at: datetime) -> None:
        if self.is_terminal:
            raise InstanceFinished(
                f"the instance is {self.status}; events can only be sent to a live instance"
            )
        self._event_received(event_type=event_type, payload=payload, command_id=command_id, at=at)
        step = self._open_step()
        if (
            step is not None
            and step.type == "waitForEvent"
            and step.event_type == event_type
            and self.status == st.WAITING
        ):
            # FIFO: the oldest buffered payload of this type (one may be left from a pause).
            self._event_delivered(
                event_type=event_type,
                payload=self.event_buffer[event_type][0],
                from_buffer=True,
                command_id=command_id,
                at=at,
            )

    @event("EventReceived")
    def _event_received(
        self, *, event_type: str, payload: Any, command_id: str, at: datetime
    ) -> None:
        self.event_buffer.setdefault(event_type, []).append(payload)

    @event("EventDelivered")
    def _event_delivered(
        self,
        *,
        event_type: str | None,
        payload: Any,
        from_buffer: bool,
        command_id: str,
        at: datetime,
    ) -> None:
        queue = self.event_buffer.get(event_type or "", [])
        if queue:
            queue.pop(0)
            if not queue:
                del self.event_buffer[event_type or ""]
        step = self.run.steps[-1]
        step.ended = True
        step.success = True
        step.output = payload
        step.ended_at = at

    # --- status changes asked for by users --------------------------------------------------

    def pause(self, *, command_id: str, at: datetime) -> bool:
        """False when there was nothing to do (already paused, or finished): a documented no-op."""
        if self.status in st.TERMINAL or self.status in (st.PAUSED, st.WAITING_FOR_PAUSE):
            return False
        self._require(st.PAUSABLE, "pause")
        step = self._open_step()
        if step is not None and step.attempt_in_flight:
            self._pause_requested(command_id=command_id, at=at)
        else:
            self._instance_paused(resume_to=self.status, command_id=command_id, at=at)
        return True

    @event("PauseRequested")
    def _pause_requested(self, *, command_id: str, at: datetime) -> None:
        pass

    @event("InstancePaused")
    def _instance_paused(self, *, resume_to: str, command_id: str, at: datetime) -> None:
        self.resume_to = resume_to

    def resume(self, *, command_id: str, at: datetime) -> bool:
        """False when the instance is not paused: a no-op, as documented."""
        if self.status == st.PAUSED:
            self._instance_resumed(
                status=self.resume_to or st.RUNNING, command_id=command_id, at=at
            )
            # An event sent while a waitForEvent was paused is delivered now.
            step = self._open_step()
            if (
                self.status == st.WAITING
                and step is not None
                and step.type == "waitForEvent"
                and self.event_buffer.get(step.event_type or "")
            ):
                self._event_delivered(
                    event_type=step.event_type,
                    payload=self.event_buffer[step.event_type or ""][0],
                    from_buffer=True,
                    command_id=command_id,
                    at=at,
                )
            return True
        if self.status == st.WAITING_FOR_PAUSE:
            self._instance_resumed(
                status=self._running_or_backing_off(), command_id=command_id, at=at
            )
            return True
        return False

    @event("InstanceResumed")
    def _instance_resumed(self, *, status: str, command_id: str, at: datetime) -> None:
        self.resume_to = None

    def terminate(self, *, rollback: bool, command_id: str, at: datetime) -> None:
        if self.is_terminal:
            raise CannotTerminate(f"the instance is already {self.status}; only restart leaves it")
        if self.status == st.ROLLING_BACK and rollback:
            raise CannotTerminate(
                "the instance is already rolling back; terminate without rollback to stop it"
            )
        self._instance_terminated(rollback=rollback, command_id=command_id, at=at)

    @event("InstanceTerminated")
    def _instance_terminated(self, *, rollback: bool, command_id: str, at: datetime) -> None:
        self.resume_to = None

    def end_rollback(
        self, *, outcome: str, error: dict[str, str] | None, command_id: str, at: datetime
    ) -> None:
        self._require({st.ROLLING_BACK}, "end a rollback")
        self._rollback_ended(outcome=outcome, error=error, command_id=command_id, at=at)

    @event("RollbackEnded")
    def _rollback_ended(
        self, *, outcome: str, error: dict[str, str] | None, command_id: str, at: datetime
    ) -> None:
        pass

    def restart(self, *, from_step: dict[str, Any] | None, command_id: str, at: datetime) -> None:
        kept = 0
        if from_step is not None:
            position = next(
                (
                    i
                    for i, s in enumerate(self.run.steps)
                    if s.name == from_step["name"]
                    and s.count == from_step.get("count", 1)
                    and s.type == from_step.get("type", "step")
                ),
                None,
            )
            if position is None:
                raise RestartStepNotFound(
                    f"no {from_step.get('type', 'step')} named {from_step['name']!r} "
                    f"(count {from_step.get('count', 1)}) in this run's history"
                )
            kept = position
        self._instance_restarted(
            run=self.run.number + 1,
            kept_steps=kept,
            from_step=from_step,
            command_id=command_id,
            at=at,
        )

    # --- deletion ------------------------------------------------------------------------------

    def delete(self, *, reason: str, command_id: str, at: datetime) -> None:
        """Only a finished instance (complete, errored, terminated) may be deleted."""
        if self.deleted:
            raise InstanceNotFound(f"instance {self.instance_id!r} was deleted")
        if not self.is_terminal:
            raise InstanceStillRunning(
                f"the instance is {self.status}; only a finished instance (complete, errored, "
                "terminated) can be deleted: terminate it first"
            )
        self._instance_deleted(reason=reason, command_id=command_id, at=at)

    @event("InstanceDeleted")
    def _instance_deleted(self, *, reason: str, command_id: str, at: datetime) -> None:
        # The status stays as it was (the event is not in the transition table); every content
        # field goes: params, the steps' outputs and errors, payloads, the run's output.
        self.deleted = True
        self.params = None
        self.run = Run(number=self.run.number)
        self.event_buffer = {}
        self.resume_to = None

    @event("InstanceRestarted")
    def _instance_restarted(
        self,
        *,
        run: int,
        kept_steps: int,
        from_step: dict[str, Any] | None,
        command_id: str,
        at: datetime,
    ) -> None:
        self.run = Run.restarted(run, self.run.steps[:kept_steps])
        self.resume_to = None
        self.event_buffer = {}
