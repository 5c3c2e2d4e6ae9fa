"""Random command sequences against WorkflowInstance: rejections leave no trace, the event
history is gap-free and replays to the same aggregate, and the state machine's invariants hold."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as s
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from services.domain import status as st
from services.domain.errors import DomainError
from services.domain.instance import WorkflowInstance
from tests.services.domain.instance_factory import AT, cid, new_instance

NAMES = s.sampled_from(["a", "b"])
EVENT_TYPES = s.sampled_from(["x", "y"])
STEP_TYPES = s.sampled_from(["step", "step", "sleep", "waitForEvent", "waitForEvent"])
# Ending or restarting a run is drawn as rarely as one time in RARE, so that runs live long
# enough to reach deep states (a paused wait, a back-off, waitingForPause).
RARE = s.integers(0, 4)
FROM_STEPS = s.none() | s.fixed_dictionaries(
    {"name": NAMES, "count": s.integers(1, 3), "type": STEP_TYPES}
)


def _state(i: WorkflowInstance) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in vars(i).items() if k != "_pending_events"}


class InstanceLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.instance = new_instance()
        self.history: list[Any] = list(self.instance.collect_events())
        self.payloads = 0
        self.accepted = 0
        self.rejected = 0
        # what the buffer must hold, rebuilt from the recorded events alone
        self.model_buffer: dict[str, list[Any]] = {}

    @initialize(started=s.booleans() | s.just(True))
    def maybe_start(self, started: bool) -> None:
        if started:
            self.start_run()

    # --- running a command -------------------------------------------------------------------

    def _do(self, action: Callable[[WorkflowInstance], object]) -> None:
        i = self.instance
        before_status = i.status
        before_state = _state(i)
        before_version = i.version
        try:
            result = action(i)
        except DomainError as error:
            assert error.code and error.message
            assert i.pending_events == [], "a rejected command recorded an event"
            assert i.version == before_version
            assert _state(i) == before_state, "a rejected command changed the aggregate"
            self.rejected += 1
            return
        new_events = list(i.collect_events())
        if result is False:
            assert new_events == [], "a no-op recorded an event"
            assert _state(i) == before_state
        self.accepted += 1
        names = [type(e).__name__ for e in new_events]
        if before_status in st.TERMINAL and i.status != before_status:
            assert names == ["InstanceRestarted"], f"{before_status} left by {names}"
        for event in new_events:
            self._follow(event)
        self.history.extend(new_events)

    def _follow(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "EventReceived":
            self.model_buffer.setdefault(event.event_type, []).append(event.payload)
        elif kind == "EventDelivered":
            queue = self.model_buffer.get(event.event_type, [])
            assert queue, "an event was delivered that was never received"
            assert queue[0] == event.payload, "delivery broke FIFO order"
            queue.pop(0)
            if not queue:
                del self.model_buffer[event.event_type]
        elif kind == "InstanceRestarted":
            self.model_buffer = {}

    # --- the engine's commands ---------------------------------------------------------------

    @rule()
    def start_run(self) -> None:
        self._do(lambda i: i.start_run(command_id=cid(), at=AT))

    @rule(
        name=NAMES,
        step_type=STEP_TYPES,
        event_type=EVENT_TYPES | s.none(),
        config=s.none()
        | s.fixed_dictionaries(
            {
                "retries": s.fixed_dictionaries(
                    {
                        "limit": s.integers(0, 2),
                        "delay": s.sampled_from([1, "1 second"]),
                        "backoff": s.sampled_from(["constant", "linear", "exponential"]),
                    }
                ),
                "timeout": s.just(1_000),
            }
        ),
    )
    def begin_step(
        self, name: str, step_type: str, event_type: str | None, config: dict | None
    ) -> None:
        self._do(
            lambda i: i.begin_step(
                name=name,
                step_type=step_type,
                config=config,
                sleep_ms=10 if step_type == "sleep" else None,
                event_type=event_type,
                wait_timeout=None,
                command_id=cid(),
                at=AT,
            )
        )

    @rule(name=NAMES)
    def begin_attempt(self, name: str) -> None:
        self._do(lambda i: i.begin_attempt(name=name, command_id=cid(), at=AT))

    @rule(name=NAMES, success=s.booleans())
    def end_attempt(self, name: str, success: bool) -> None:
        self._do(
            lambda i: i.end_attempt(
                name=name, success=success, output=1, error=None, command_id=cid(), at=AT
            )
        )

    @rule(name=NAMES, success=s.booleans())
    def end_step(self, name: str, success: bool) -> None:
        self._do(
            lambda i: i.end_step(
                name=name, success=success, output=2, error=None, command_id=cid(), at=AT
            )
        )

    @rule(name=s.none() | NAMES)
    def end_sleep(self, name: str | None) -> None:
        self._do(lambda i: i.end_sleep(name=name, command_id=cid(), at=AT))

    @rule(name=NAMES)
    def time_out_wait(self, name: str) -> None:
        self._do(lambda i: i.time_out_wait(name=name, command_id=cid(), at=AT))

    @rule()
    def acknowledge_pause(self) -> None:
        self._do(lambda i: i.acknowledge_pause(command_id=cid(), at=AT))

    @rule(rare=RARE)
    def complete_run(self, rare: int) -> None:
        if rare:
            return
        self._do(
            lambda i: i.complete_run(
                output={"done": True}, outcome=None, reasons=[], command_id=cid(), at=AT
            )
        )

    @rule(timed_out=s.booleans(), rare=RARE)
    def fail_run(self, timed_out: bool, rare: int) -> None:
        if rare:
            return
        self._do(
            lambda i: i.fail_run(
                error={"name": "E", "message": "m"}, timed_out=timed_out, command_id=cid(), at=AT
            )
        )

    @rule(outcome=s.sampled_from(["success", "failure"]))
    def end_rollback(self, outcome: str) -> None:
        self._do(lambda i: i.end_rollback(outcome=outcome, error=None, command_id=cid(), at=AT))

    # --- users' commands ---------------------------------------------------------------------

    @rule(event_type=EVENT_TYPES)
    def send_event(self, event_type: str) -> None:
        self.payloads += 1
        payload = {"n": self.payloads}
        self._do(
            lambda i: i.send_event(event_type=event_type, payload=payload, command_id=cid(), at=AT)
        )

    @precondition(
        lambda self: (
            bool(self.instance.run.steps)
            and self.instance.run.steps[-1].type == "waitForEvent"
            and not self.instance.run.steps[-1].ended
        )
    )
    @rule()
    def send_the_awaited_event(self) -> None:
        self.send_event(self.instance.run.steps[-1].event_type or "x")

    @rule()
    def pause(self) -> None:
        self._do(lambda i: i.pause(command_id=cid(), at=AT))

    @rule()
    def resume(self) -> None:
        self._do(lambda i: i.resume(command_id=cid(), at=AT))

    @rule(rollback=s.booleans(), rare=RARE)
    def terminate(self, rollback: bool, rare: int) -> None:
        if rare:
            return
        self._do(lambda i: i.terminate(rollback=rollback, command_id=cid(), at=AT))

    @precondition(lambda self: self.instance.version > 1)
    @rule(from_step=FROM_STEPS, rare=RARE)
    def restart(self, from_step: dict | None, rare: int) -> None:
        if rare:
            return
        self._do(lambda i: i.restart(from_step=from_step, command_id=cid(), at=AT))

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def status_is_known(self) -> None:
        assert self.instance.status in st.ALL_STATUSES

    @invariant()
    def step_count_is_the_steps_of_the_current_run(self) -> None:
        expected = 0
        for event in self.history:
            kind = type(event).__name__
            if kind == "InstanceRestarted":
                expected = event.kept_steps
            elif kind == "StepBegan":
                expected += 1
        assert self.instance.step_count == len(self.instance.run.steps) == expected

    @invariant()
    def only_the_last_step_can_be_open(self) -> None:
        steps = self.instance.run.steps
        assert all(step.ended for step in steps[:-1])

    @invariant()
    def running_never_has_an_open_wait_sleep_or_back_off(self) -> None:
        i = self.instance
        step = i.run.steps[-1] if i.run.steps and not i.run.steps[-1].ended else None
        if i.status == st.RUNNING and step is not None:
            assert step.type == "step"
            assert not step.backing_off
        if i.status == st.WAITING:
            assert step is not None
            assert step.type in ("sleep", "waitForEvent") or step.backing_off

    @invariant()
    def resume_to_is_set_while_paused_and_cleared_while_live(self) -> None:
        i = self.instance
        if i.status == st.PAUSED:
            assert i.resume_to in (st.QUEUED, st.RUNNING, st.WAITING)
        elif not i.is_terminal:
            assert i.resume_to is None

    @invariant()
    def buffer_matches_the_recorded_events(self) -> None:
        assert self.instance.event_buffer == self.model_buffer
        assert all(self.instance.event_buffer.values())

    @invariant()
    def a_waiting_wait_never_has_its_event_in_the_buffer(self) -> None:
        i = self.instance
        step = i.run.steps[-1] if i.run.steps else None
        if i.status == st.WAITING and step is not None and step.type == "waitForEvent":
            assert not step.ended
            assert step.event_type not in i.event_buffer, "a buffered event is stranded"

    @invariant()
    def versions_are_gap_free(self) -> None:
        versions = [e.originator_version for e in self.history]
        assert versions == list(range(1, len(versions) + 1))
        assert self.instance.version == len(versions)
        assert self.instance.pending_events == []

    @invariant()
    def replaying_the_history_rebuilds_the_same_aggregate(self) -> None:
        replayed = None
        for event in self.history:
            replayed = event.mutate(replayed)
        assert isinstance(replayed, WorkflowInstance)
        assert _state(replayed) == _state(self.instance)


InstanceLifecycle.TestCase.settings = settings(
    max_examples=75,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_instance_lifecycle = InstanceLifecycle.TestCase
