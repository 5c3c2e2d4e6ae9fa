"""The replay engine: one wake-up of one instance.

`wake` reads the instance's history, decides whether there is anything for an engine to do
(start the run, acknowledge a pause, run the workflow), and if so replays `run()` from the
top: a step whose outcome the history records returns it (or raises its error) without
running; the first step not yet done runs, reported with the progress commands
(contracts/commands.py) one at a time, each awaited until the service answers. The
aggregate arbitrates: a rejected command ends this wake-up (the instance was paused,
terminated, restarted, or another worker moved it on), and the next event wakes it again.

The engine knows two ports and nothing of Kafka or the store:
- `load()`: the instance's history, read from the event store (never only from what this
  worker happened to consume), or None when it does not exist;
- `Progress.send(command)`: publishes a command and returns its reply.

Exactly-once recording, at-least-once running: an attempt's `BeginAttempt` has a command id
derived from the instance, the run, the step's position and the attempt number. An attempt a
dead worker left in flight is taken over by whoever replays next: its `BeginAttempt` is
answered `duplicate`, the step runs again, and its `EndAttempt` is the one recorded.

Fewer commands: a new step whose config names no timeout runs before anything is recorded;
if its first attempt succeeds, one `RecordStep` reports it (BeginStep, BeginAttempt,
EndAttempt, EndStep in one), sent before whatever the run does next, so it also starts a
queued run (no StartRun) and completes the run when `run()` returns right after it (no
CompleteRun): a one-step run is CreateInstance and RecordStep. Still at least once: a worker
that dies inside such a step has recorded nothing of it, and the next replay runs it again.
A step with a `timeout` in its config keeps the separate commands, so that its attempt is in
flight while it runs and the scheduler can time it out should no worker be left to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from contracts import commands as c
from contracts.keys import new_command_id
from contracts.limits import MAX_JSON_BYTES
from contracts.replies import Reply
from flowledger.off_loop import run_off_loop
from flowledger.workflows import (
    NonRetryableError,
    StepError,
    WorkflowEntrypoint,
    WorkflowStep,
)

log = logging.getLogger("flowledger.worker")

# Names the command ids of attempts (fixed forever: changing it breaks takeovers in flight).
_ATTEMPT_IDS = uuid.UUID("0b7e3f0e-7c1a-5d6e-8f0a-3c9b1d2e4f51")
ATTEMPT_TIMEOUT_ERROR = "WorkflowTimeoutError"
NON_DETERMINISM_ERROR = "NonDeterminismError"
NOT_JSON_ERROR = "NonJsonOutputError"
INVALID_ERROR = "InvalidCommandError"
# Rejections about the command's own content: no retry or later wake-up can change them.
REFUSED_AS_INVALID = frozenset(
    {"command.invalid", "command.too_large", "command.too_deep", "payload.too_large"}
)
# At most this many replays in one wake-up (each `again` reloads the history and replays).
MAX_REPLAYS_PER_WAKE = 20

OutcomeKind = Literal[
    "idle",  # nothing for an engine to do (waiting, paused, finished, not found)
    "suspended",  # a sleep, a wait, a back-off: the scheduler or an event wakes it
    "stopped",  # a command was rejected, a pause acknowledged, or the worker is stopping
    "completed",
    "failed",
    "again",  # the history moved on under the replay (an event delivered at once): reload
    "error",  # the wake-up failed (the store or broker away, run() blocking): tried again
]


@dataclass(frozen=True)
class Outcome:
    """Why a wake-up ended. `detail` names steps, types and statuses, never user content, so
    logs may carry it; `content` holds the messages (errors, rejections) that may be user's."""

    kind: OutcomeKind
    detail: str = ""
    content: str = ""


@dataclass(frozen=True)
class RecordedStep:
    """One step of the current run as the history records it."""

    name: str
    type: str  # step | sleep | waitForEvent
    count: int
    ended: bool = False
    success: bool | None = None
    output: Any = None
    error: dict[str, str] | None = None
    attempts: int = 0
    attempt_in_flight: bool = False
    backing_off: bool = False
    # How the last attempt ended: a step whose engine stopped between EndAttempt and EndStep
    # is ended from these; `retry_due`: it failed and a retry follows (after its back-off).
    last_success: bool | None = None
    last_output: Any = None
    last_error: dict[str, str] | None = None
    retry_due: bool = False
    event_type: str | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class InstanceHistory:
    account_id: str
    workflow_name: str
    instance_id: str
    status: str
    run: int
    version: int
    params: Any = None
    created_at: datetime | None = None
    steps: list[RecordedStep] = field(default_factory=list)
    settled: int = 0  # how many steps from the first have ended (ended steps never change)

    @property
    def key(self) -> str:
        return f"{self.account_id}/{self.workflow_name}/{self.instance_id}"

    @property
    def open_step(self) -> RecordedStep | None:
        return self.steps[-1] if self.steps and not self.steps[-1].ended else None


class Progress(Protocol):
    async def send(self, command: c.AnyCommand) -> Reply:
        """Publishes `command` and returns its reply (accepted, duplicate or rejected)."""
        ...


class Observer:
    """Hooks for metrics; the default does nothing."""

    def attempt_ended(self, workflow: str, step: str, outcome: str, seconds: float) -> None:
        """`outcome`: success, failure, timeout, non_retryable."""

    def step_ended(self, workflow: str, step: str, success: bool) -> None:
        pass


def attempt_command_id(history: InstanceHistory, position: int, name: str, attempt: int) -> str:
    """The same for every engine that begins this attempt: a second BeginAttempt of it (a
    takeover) is answered `duplicate` instead of being refused as still in flight."""
    return str(uuid.uuid5(_ATTEMPT_IDS, f"{history.key}:{history.run}:{position}:{name}:{attempt}"))


def utc_now() -> datetime:
    return datetime.now(UTC)


async def wake(
    entry: WorkflowEntrypoint,
    load: Callable[[], Awaitable[InstanceHistory | None]],
    progress: Progress,
    *,
    stop_requested: Callable[[], bool] = lambda: False,
    clock: Callable[[], datetime] = utc_now,
    observer: Observer | None = None,
    log_content: bool = False,
) -> Outcome:
    """Does whatever the instance's state asks of an engine, then returns why it stopped.
    `log_content`: log lines may carry error messages (else exception types and step names)."""
    outcome = Outcome("idle")
    for _ in range(MAX_REPLAYS_PER_WAKE):
        history = await load()
        if history is None:
            return Outcome("idle", "no such instance")
        replay = Replay(entry, history, progress, stop_requested, clock, observer, log_content)
        outcome = await _act(replay)
        if outcome.kind != "again":
            return outcome
    log.warning("gave up after %d replays in one wake-up: %s", MAX_REPLAYS_PER_WAKE, outcome.detail)
    return outcome


async def _act(replay: Replay) -> Outcome:
    history, progress = replay.history, replay.progress
    status = history.status
    if replay.stop_requested():
        return Outcome("stopped", "the worker is stopping")
    if status == "waitingForPause":
        open_step = history.open_step
        if open_step is not None and open_step.attempt_in_flight:
            return Outcome("idle", "an attempt is in flight; the pause waits for its end")
        reply = await progress.send(_command(history, c.AcknowledgePause))
        return Outcome("stopped", "pause acknowledged" if reply.outcome != "rejected" else "")
    if status == "rollingBack":
        # Python workflows declare no compensations: nothing to undo.
        await progress.send(_command(history, c.EndRollback, outcome="complete"))
        return Outcome("stopped", "rollback ended (nothing to roll back)")
    if status not in ("running", "queued"):  # a queued run is started by its first command
        return Outcome("idle", f"the instance is {status}")
    open_step = history.open_step
    if open_step is not None and open_step.backing_off:
        return Outcome("idle", "backing off")
    return await replay.execute()


class _Halt(BaseException):
    """Ends a replay from inside `run()`: a BaseException, so that a workflow's
    `except Exception` cannot swallow it (a swallowed one is noticed anyway: `halted`)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


class Replay:
    """One replay of `run()` against one history: the `StepRunner` of its `WorkflowStep`."""

    def __init__(
        self,
        entry: WorkflowEntrypoint,
        history: InstanceHistory,
        progress: Progress,
        stop_requested: Callable[[], bool] = lambda: False,
        clock: Callable[[], datetime] = utc_now,
        observer: Observer | None = None,
        log_content: bool = False,
    ) -> None:
        self.entry = entry
        self.log_content = log_content
        self.history = history
        self.progress = progress
        self.stop_requested = stop_requested
        self.clock = clock
        self.observer = observer or Observer()
        self.status = history.status
        self.position = 0
        self.halted: Outcome | None = None
        self.failure: c.ErrorInfo | None = None
        self._failing = False
        self._one_at_a_time = asyncio.Lock()
        # A step that succeeded at its first attempt, not yet reported: its RecordStep is
        # sent before whatever comes next (completing the run with it when that is the end).
        self._pending: c.RecordStep | None = None

    # --- the run ------------------------------------------------------------------------------

    async def execute(self) -> Outcome:
        event = {
            "payload": self.history.params,
            "timestamp": self.history.created_at,
            "instanceId": self.history.instance_id,
        }
        try:
            try:
                output = await self.entry.run(event, WorkflowStep(self))
            except _Halt as halt:
                self.halted = self.halted or halt.outcome
            except Exception as error:  # the workflow failed: uncaught, the run fails
                if self.halted is None:
                    return await self._fail(_error_info(error))
            else:
                if self.halted is None:
                    return await self._complete(output)
            assert self.halted is not None
            if self.failure is not None:
                return await self._fail(self.failure)
            return self.halted
        except _Halt as halt:  # a command sent after the run itself was rejected
            if self.failure is not None and not self._failing:
                return await self._fail(self.failure)  # e.g. an output the service refused
            return halt.outcome

    async def _complete(self, output: Any) -> Outcome:
        if self.position < len(self.history.steps):
            recorded = self.history.steps[self.position]
            return await self._fail(
                c.ErrorInfo(
                    name=NON_DETERMINISM_ERROR,
                    message=(
                        f"run() returned after {self.position} steps, but the history records "
                        f"{len(self.history.steps)}: step {self.position + 1} was "
                        f"{recorded.type} {recorded.name!r}; workflow code must call the same "
                        "steps in the same order on every replay"
                    ),
                )
            )
        try:
            output = as_json(output)
        except (TypeError, ValueError) as error:
            return await self._fail(
                c.ErrorInfo(name=NOT_JSON_ERROR, message=f"run() returned {error}")
            )
        pending, self._pending = self._pending, None
        if pending is not None and _fits_beside(pending.output, output):
            pending.complete_run, pending.run_output = True, output
            await self._send_record(pending)
            return Outcome("completed")
        if pending is not None:
            await self._send_record(pending)
        await self._boundary()
        await self._send(self._make(c.CompleteRun, output=output))
        return Outcome("completed")

    async def _fail(self, error: c.ErrorInfo) -> Outcome:
        self._failing = True
        try:
            await self._flush_and_start()
            await self._send(self._make(c.FailRun, error=error))
        except _Halt as halt:
            return halt.outcome
        return Outcome("failed", error.name, content=error.message)

    # --- the steps ------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock()

    async def run_step(
        self,
        name: str,
        call: Callable[[dict[str, Any]], Awaitable[Any]],
        config: dict[str, Any],
        *,
        timeout_set: bool = False,
    ) -> Any:
        async with self._one_at_a_time:
            position, recorded = self._next(name, "step")
            if recorded is not None and recorded.ended:
                return self._settled(recorded)
            if recorded is None and not timeout_set:
                return await self._first_attempt_unrecorded(position, name, call, config)
            if recorded is None:
                await self._boundary()
                await self._send(
                    self._make(
                        c.BeginStep,
                        name=name,
                        step_type="step",
                        config=_step_config(config),
                    )
                )
                attempts, in_flight = 0, False
            else:
                if recorded.backing_off:
                    self._halt("suspended", f"step {name!r} is backing off")
                attempts, in_flight = recorded.attempts, recorded.attempt_in_flight
                if attempts and not in_flight and recorded.last_success:
                    # The last attempt succeeded; its engine stopped before ending the step.
                    return await self._end_step(name, _fresh(recorded.last_output))
                if attempts and not in_flight and not recorded.retry_due:
                    # Failed for good (a timed-out last attempt, a non-retryable error).
                    error = recorded.last_error or {"name": "Error", "message": "attempt failed"}
                    info = c.ErrorInfo(name=error.get("name", "Error"), message=error["message"])
                    await self._end_step_failed(name, info)
            attempt = attempts if in_flight else attempts + 1
            return await self._attempt(position, name, attempt, call, config)

    async def _attempt(
        self,
        position: int,
        name: str,
        attempt: int,
        call: Callable[[dict[str, Any]], Awaitable[Any]],
        config: dict[str, Any],
    ) -> Any:
        command_id = attempt_command_id(self.history, position, name, attempt)
        await self._send(self._make(c.BeginAttempt, command_id=command_id, name=name))
        ran = await self._run_attempt(name, attempt, call, config)
        if ran.failure is None:
            ended = self._make(c.EndAttempt, name=name, success=True, output=ran.output)
            await self._send(ended)
            return await self._end_step(name, ran.output)
        return await self._attempt_failed(name, attempt, config, ran)

    async def _first_attempt_unrecorded(
        self,
        position: int,
        name: str,
        call: Callable[[dict[str, Any]], Awaitable[Any]],
        config: dict[str, Any],
    ) -> Any:
        """A new step without a timeout of its own runs before anything is recorded: when its
        first attempt succeeds, one RecordStep (sent before whatever the run does next) says
        so. Nothing is in flight meanwhile, so a worker that dies here leaves no trace and the
        next replay runs the step again (at least once, as always); the scheduler cannot time
        such an attempt out (this worker still cancels it at the step's timeout). A failed
        first attempt is recorded as the separate commands record it, once it has failed."""
        await self._boundary(unrecorded_step=True)
        ran = await self._run_attempt(name, 1, call, config)
        if ran.failure is None:
            self._pending = self._make(
                c.RecordStep,
                name=name,
                config=_step_config(config),
                output=ran.output,
                start_run=self.status == "queued",
            )
            return ran.output
        await self._flush_and_start()
        await self._send(
            self._make(c.BeginStep, name=name, step_type="step", config=_step_config(config))
        )
        command_id = attempt_command_id(self.history, position, name, 1)
        await self._send(self._make(c.BeginAttempt, command_id=command_id, name=name))
        return await self._attempt_failed(name, 1, config, ran)

    async def _run_attempt(
        self,
        name: str,
        attempt: int,
        call: Callable[[dict[str, Any]], Awaitable[Any]],
        config: dict[str, Any],
    ) -> _Ran:
        ctx = {"attempt": attempt, "name": name, "config": config}
        timeout_s = config["timeout"] / 1000
        started = time.monotonic()
        retryable = True
        workflow = self.history.workflow_name
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                output = await run_off_loop(lambda: call(ctx), _task_name())
            output = as_json(output)
        except _Halt:
            raise
        except NonRetryableError as error:
            failure, retryable, kind = _error_info(error), False, "non_retryable"
        except TimeoutError as error:
            if deadline.expired():
                message = f"attempt {attempt} of {name!r} did not end within {timeout_s:g} s"
                failure, kind = c.ErrorInfo(name=ATTEMPT_TIMEOUT_ERROR, message=message), "timeout"
            else:
                failure, kind = _error_info(error), "failure"
        except NotJson as error:
            message = f"step {name!r} returned {error}"
            failure = c.ErrorInfo(name=NOT_JSON_ERROR, message=message)
            retryable, kind = False, "non_retryable"
        except Exception as error:
            failure, kind = _error_info(error), "failure"
            log.info(
                "attempt %d of %r failed: %s%s",
                attempt,
                name,
                failure.name,
                f": {failure.message}" if self.log_content else "",
                extra={"instance_key": self.history.key},
            )
        else:
            self.observer.attempt_ended(workflow, name, "success", time.monotonic() - started)
            return _Ran(output=output)
        self.observer.attempt_ended(workflow, name, kind, time.monotonic() - started)
        return _Ran(failure=failure, retryable=retryable)

    async def _attempt_failed(
        self, name: str, attempt: int, config: dict[str, Any], ran: _Ran
    ) -> Any:
        assert ran.failure is not None
        failure, retryable = ran.failure, ran.retryable
        await self._send(
            self._make(
                c.EndAttempt,
                name=name,
                success=False,
                error=failure,
                retryable=retryable,
            )
        )
        # The aggregate's rule (services/domain/instance.py): a retry follows while attempts
        # do not exceed the limit. `waiting` says so too, unless a pause is pending.
        retried = retryable and attempt <= config["retries"]["limit"]
        if self.status == "waiting":
            self._halt("suspended", f"step {name!r} retries after a back-off")
        if retried and self.status == "waitingForPause":
            await self._acknowledge_pause()
        await self._end_step_failed(name, failure)
        raise AssertionError("unreachable")

    async def _end_step(self, name: str, output: Any) -> Any:
        await self._send(self._make(c.EndStep, name=name, success=True, output=output))
        self.observer.step_ended(self.history.workflow_name, name, True)
        return output

    async def _end_step_failed(self, name: str, failure: c.ErrorInfo) -> None:
        await self._send(self._make(c.EndStep, name=name, success=False, error=failure))
        self.observer.step_ended(self.history.workflow_name, name, False)
        raise StepError(failure.name, failure.message)

    async def sleep(self, name: str, milliseconds: int) -> None:
        async with self._one_at_a_time:
            _, recorded = self._next(name, "sleep")
            if recorded is not None:
                if recorded.ended:
                    return None
                self._halt("suspended", f"sleeping in {name!r}")
            await self._boundary()
            await self._send(
                self._make(
                    c.BeginStep,
                    name=name,
                    step_type="sleep",
                    sleep_ms=milliseconds,
                )
            )
            self._halt("suspended", f"sleeping in {name!r}")

    async def wait_for_event(self, name: str, event_type: str, timeout_ms: int) -> dict[str, Any]:
        async with self._one_at_a_time:
            _, recorded = self._next(name, "waitForEvent")
            if recorded is not None:
                if recorded.ended:
                    return self._settled(recorded)  # type: ignore[no-any-return]
                self._halt("suspended", f"waiting for {event_type!r} in {name!r}")
            await self._boundary()
            await self._send(
                self._make(
                    c.BeginStep,
                    name=name,
                    step_type="waitForEvent",
                    event_type=event_type,
                    wait_timeout=timeout_ms,
                )
            )
            if self.status == "running":  # an event sent earlier was delivered at once
                self._halt("again", f"{event_type!r} was already there")
            self._halt("suspended", f"waiting for {event_type!r} in {name!r}")
        raise AssertionError("unreachable")

    # --- helpers --------------------------------------------------------------------------------

    def _next(self, name: str, step_type: str) -> tuple[int, RecordedStep | None]:
        """The position of the step the workflow asks for, and what the history holds there;
        a different step there is non-determinism, and fails the run."""
        if self.halted is not None:  # the workflow swallowed a halt and went on
            raise _Halt(self.halted)
        position = self.position
        self.position += 1
        if position >= len(self.history.steps):
            return position, None
        recorded = self.history.steps[position]
        if (recorded.name, recorded.type) != (name, step_type):
            self.failure = c.ErrorInfo(
                name=NON_DETERMINISM_ERROR,
                message=(
                    f"step {position + 1} of the run is {recorded.type} {recorded.name!r} in "
                    f"the history, but this replay asked for {step_type} {name!r}; workflow "
                    "code must call the same steps in the same order on every replay"
                ),
            )
            self._halt("failed", NON_DETERMINISM_ERROR, content=self.failure.message)
        return position, recorded

    def _settled(self, recorded: RecordedStep) -> Any:
        if not recorded.success:
            error = recorded.error or {"name": "Error", "message": "the step failed"}
            raise StepError(error.get("name", "Error"), error.get("message", ""))
        if recorded.type == "waitForEvent":
            return {
                "payload": _fresh(recorded.output),
                "timestamp": recorded.ended_at,
                "type": recorded.event_type,
            }
        return None if recorded.type == "sleep" else _fresh(recorded.output)

    async def _boundary(self, *, unrecorded_step: bool = False) -> None:
        """Before a new step (and before completing): the step that ended before is reported,
        a pending pause is acknowledged here, a stopping worker stops here, a queued run starts
        here (unless `unrecorded_step`: its RecordStep starts it), and nothing starts unless
        the instance is running."""
        await self._flush()
        if self.stop_requested():
            self._halt("stopped", "the worker is stopping")
        if self.status == "waitingForPause":
            await self._acknowledge_pause()
        if self.status == "queued" and not unrecorded_step:
            await self._send(self._make(c.StartRun))
        if self.status != "running" and not (unrecorded_step and self.status == "queued"):
            self._halt("stopped", f"the instance is {self.status}")

    async def _flush(self) -> None:
        """Sends the RecordStep of the step that succeeded last, if not sent yet."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await self._send_record(pending)

    async def _flush_and_start(self) -> None:
        """Before a command that needs the run started (FailRun, a failed first attempt)."""
        await self._flush()
        if self.status == "queued":
            await self._send(self._make(c.StartRun))

    async def _send_record(self, record: c.RecordStep) -> None:
        await self._send(record)
        self.observer.step_ended(self.history.workflow_name, record.name, True)

    async def _acknowledge_pause(self) -> None:
        await self._send(self._make(c.AcknowledgePause))
        self._halt("stopped", "pause acknowledged at a step boundary")

    async def _send(self, command: c.AnyCommand) -> Reply:
        reply = await self.progress.send(command)
        if reply.outcome == "rejected":
            what = f"{type(command).__name__} {_why(reply)}"
            code = reply.error.code if reply.error is not None else ""
            rejected = f"{type(command).__name__} rejected ({code})"
            if code in REFUSED_AS_INVALID:
                # What the workflow produced can never be sent (an output nested too deep, a
                # name the contract refuses): sending it again would fail again. The run fails.
                self.failure = self.failure or c.ErrorInfo(name=INVALID_ERROR, message=what)
                self._halt("failed", rejected, content=what)
            self._halt("stopped", rejected, content=what)
        if reply.outcome == "accepted" and reply.status is not None:
            self.status = reply.status
        return reply

    def _make(self, kind: type[_C], **fields: Any) -> _C:
        return _command(self.history, kind, **fields)

    def _halt(self, kind: OutcomeKind, detail: str, content: str = "") -> None:
        self.halted = self.halted or Outcome(kind, detail, content)
        raise _Halt(self.halted)


@dataclass(frozen=True)
class _Ran:
    """How one run of a step's code ended: its output, or why it failed."""

    output: Any = None
    failure: c.ErrorInfo | None = None
    retryable: bool = True


def _task_name() -> str:
    """The wake-up's task name, given to its steps' tasks (it names the worker first)."""
    task = asyncio.current_task()
    return task.get_name() if task is not None else "step"


def _fits_beside(step_output: Any, run_output: Any) -> bool:
    """Whether a step's output and the run's fit in one command (each fits alone)."""
    size = len(json.dumps([step_output, run_output], separators=(",", ":")).encode())
    return size <= MAX_JSON_BYTES


class NotJson(TypeError):
    """A step's output (or the run's) that JSON cannot carry."""


def as_json(value: Any) -> Any:
    """`value` as it comes back from JSON; raises NotJson naming what is not JSON."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise NotJson(f"a value that is not JSON ({error})") from None
    if len(text.encode()) > MAX_JSON_BYTES:
        raise NotJson(f"{len(text.encode())} bytes of JSON; the limit is {MAX_JSON_BYTES}")
    return json.loads(text)


def _fresh(value: Any) -> Any:
    """A copy of a recorded JSON value: the history is kept between wake-ups, and a workflow
    that changes what a step returned must not change what the next replay is given."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.loads(json.dumps(value))


def _step_config(config: dict[str, Any]) -> c.StepConfig:
    retries = config["retries"]
    return c.StepConfig(
        retries=c.RetryConfig(
            limit=retries["limit"], delay=retries["delay"], backoff=retries["backoff"]
        ),
        timeout=config["timeout"],
    )


def _error_info(error: BaseException) -> c.ErrorInfo:
    if isinstance(error, StepError):
        return c.ErrorInfo(name=error.name, message=error.message)
    name = type(error).__name__
    message = str(error) or name
    return c.ErrorInfo(name=name, message=message[:1000])


def _why(reply: Reply) -> str:
    if reply.error is None:
        return reply.outcome
    return f"rejected ({reply.error.code}): {reply.error.message}"


_C = TypeVar("_C", bound=c.InstanceCommand)


def _command(history: InstanceHistory, kind: type[_C], **fields: Any) -> _C:
    """A command about the instance; a new command id unless `fields` names one."""
    fields.setdefault("command_id", new_command_id())
    return kind(
        account_id=history.account_id,
        workflow_name=history.workflow_name,
        instance_id=history.instance_id,
        **fields,
    )
