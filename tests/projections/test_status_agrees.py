"""One source of truth for status: every read model shows the aggregate's status.

The hypothesis state machine over the aggregate (tests/services/domain/test_instance_stateful.py)
runs the commands; here each domain event it records is translated into a lifecycle event as the
relay does (LifecycleTranslator) and folded through every per-instance read model, and after
every command each view's status must be the aggregate's, mapped through that view's own
vocabulary. Earlier events are redelivered at random (the events topic is at-least-once): every
fold must leave its document as it was, and a rebuild from the events, each once, must equal the
view that saw the redeliveries.

The domain machine draws every command in every status, to test refusals, so most of its steps
are refused ones; here one rule draws among the commands the aggregate accepts now (weighted, so
that runs seldom end), and runs reach sleeps, waits, retries, pauses and rollbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as s
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from contracts import events as ev
from contracts import status as cs
from projections import agent_run, cloudflare_instance, onfido_run, staged_instance, workflows
from services.application.lifecycle import LifecycleTranslator
from services.domain import status as st
from services.domain.instance import Step, WorkflowInstance
from tests.projections.events_factory import fold
from tests.services.domain.instance_factory import AT, cid
from tests.services.domain.test_instance_stateful import (
    EVENT_TYPES,
    FROM_STEPS,
    NAMES,
    STEP_TYPES,
    InstanceLifecycle,
)

INSTANCE_MODELS = (cloudflare_instance, agent_run, onfido_run, staged_instance)
# The events that leave the status as it was: every other one has a row in the table.
LEAVE_STATUS = {
    "AttemptBegan",
    "EventReceived",
    "InstanceDeleted",
    "WorkflowRegistered",
    "WorkflowVersionDeployed",
}
OUTCOMES = s.none() | s.sampled_from(["approved", "declined", "review", "escalate"])
# None is the default config (5 retries); the others run out of retries soon.
CONFIGS = s.none() | s.builds(
    lambda limit: {"retries": {"limit": limit, "delay": 1, "backoff": "constant"}, "timeout": 1},
    s.integers(0, 1),
)
FAILABLE = frozenset({cs.QUEUED, cs.RUNNING, cs.WAITING, cs.WAITING_FOR_PAUSE, cs.PAUSED})


def _open_step(m: InstanceLifecycle) -> Step | None:
    steps = m.instance.run.steps
    return steps[-1] if steps and not steps[-1].ended else None


def _open_name(m: InstanceLifecycle) -> str:
    step = _open_step(m)
    assert step is not None
    return step.name


def _is(*statuses: str) -> Callable[[InstanceLifecycle], bool]:
    return lambda m: m.instance.status in statuses


def _open(*statuses: str, **wanted: Any) -> Callable[[InstanceLifecycle], bool]:
    """In one of `statuses`, with an open step that has the `wanted` attributes."""

    def holds(m: InstanceLifecycle) -> bool:
        step = _open_step(m)
        return (
            m.instance.status in statuses
            and step is not None
            and all(getattr(step, k) == v for k, v in wanted.items())
        )

    return holds


def _complete(m: InstanceLifecycle, d: s.DataObject) -> None:
    outcome = d.draw(OUTCOMES, label="outcome")
    m._do(
        lambda i: i.complete_run(
            output="done", outcome=outcome, reasons=["r"], command_id=cid(), at=AT
        )
    )


@dataclass(frozen=True)
class Command:
    when: Callable[[InstanceLifecycle], bool]
    run: Callable[[InstanceLifecycle, s.DataObject], None]
    weight: int


# The domain machine's commands; `when` is (about) the aggregate's guard, `weight` how often
# the command is drawn among those accepted now.
COMMANDS: dict[str, Command] = {
    "start_run": Command(_is(cs.QUEUED), lambda m, d: m.start_run(), 3),
    "begin_step": Command(
        lambda m: m.instance.status == cs.RUNNING and _open_step(m) is None,
        lambda m, d: m.begin_step(
            d.draw(NAMES, label="name"),
            d.draw(STEP_TYPES, label="step_type"),
            d.draw(EVENT_TYPES, label="event_type"),
            d.draw(CONFIGS, label="config"),
        ),
        4,
    ),
    "begin_attempt": Command(
        _open(cs.RUNNING, type="step", attempt_in_flight=False, backing_off=False),
        lambda m, d: m.begin_attempt(_open_name(m)),
        4,
    ),
    "end_attempt": Command(
        _open(cs.RUNNING, cs.WAITING_FOR_PAUSE, attempt_in_flight=True),
        lambda m, d: m.end_attempt(_open_name(m), d.draw(s.booleans(), label="success")),
        4,
    ),
    "end_step": Command(
        _open(cs.RUNNING, cs.WAITING_FOR_PAUSE, type="step", attempt_in_flight=False),
        lambda m, d: m.end_step(_open_name(m), d.draw(s.booleans(), label="success")),
        3,
    ),
    "end_sleep": Command(_is(cs.WAITING), lambda m, d: m.end_sleep(None), 2),
    "time_out_wait": Command(
        _open(cs.WAITING, type="waitForEvent"), lambda m, d: m.time_out_wait(_open_name(m)), 1
    ),
    "send_the_awaited_event": Command(
        _open(*cs.NOT_TERMINAL, type="waitForEvent"), lambda m, d: m.send_the_awaited_event(), 3
    ),
    "send_event": Command(
        _is(*cs.NOT_TERMINAL), lambda m, d: m.send_event(d.draw(EVENT_TYPES, label="type")), 1
    ),
    "pause": Command(_is(*st.PAUSABLE), lambda m, d: m.pause(), 1),
    "acknowledge_pause": Command(
        lambda m: (
            m.instance.status == cs.WAITING_FOR_PAUSE
            and not getattr(_open_step(m), "attempt_in_flight", False)
        ),
        lambda m, d: m.acknowledge_pause(),
        3,
    ),
    "resume": Command(_is(cs.PAUSED, cs.WAITING_FOR_PAUSE), lambda m, d: m.resume(), 2),
    "complete_run": Command(
        lambda m: m.instance.status == cs.RUNNING and _open_step(m) is None, _complete, 2
    ),
    "fail_run": Command(
        _is(*FAILABLE), lambda m, d: m.fail_run(d.draw(s.booleans(), label="timed_out"), 0), 1
    ),
    "terminate": Command(
        _is(*cs.NOT_TERMINAL),
        lambda m, d: m.terminate(d.draw(s.booleans(), label="rollback"), 0),
        1,
    ),
    "end_rollback": Command(
        _is(cs.ROLLING_BACK),
        lambda m, d: m.end_rollback(d.draw(s.sampled_from(["success", "failure"]))),
        3,
    ),
    "restart": Command(
        _is(*cs.TERMINAL), lambda m, d: m.restart(d.draw(FROM_STEPS, label="from_step"), 0), 3
    ),
    "restart_a_live_run": Command(
        lambda m: m.instance.status in cs.NOT_TERMINAL and m.instance.version > 1,
        lambda m, d: m.restart(d.draw(FROM_STEPS, label="from_step"), 0),
        1,
    ),
}


class StatusAgrees(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.domain = InstanceLifecycle()  # runs the commands and checks the aggregate
        self.translator = LifecycleTranslator(load_first=lambda _: self.domain.history[0])
        self.lifecycle: list[ev.LifecycleEvent] = []
        self.docs: dict[str, dict[str, Any] | None] = {m.VIEW_NAME: None for m in INSTANCE_MODELS}
        self._deliver_new_events()

    def _deliver_new_events(self) -> None:
        """What the relay publishes and every projection folds."""
        for domain_event in self.domain.history[len(self.lifecycle) :]:
            lifecycle = self.translator.translate(domain_event)
            assert lifecycle is not None
            assert type(lifecycle).__name__ == type(domain_event).__name__
            self.lifecycle.append(lifecycle)
            for model in INSTANCE_MODELS:
                assert model.key_of(lifecycle) == str(self.domain.instance.id)
                self.docs[model.VIEW_NAME] = model.apply(self.docs[model.VIEW_NAME], lifecycle)
            assert workflows.apply(None, lifecycle) is None  # not a workflow's event

    @initialize(started=s.booleans())
    def maybe_start(self, started: bool) -> None:
        self.domain.maybe_start(started)
        self._deliver_new_events()

    @rule(data=s.data())
    def an_accepted_command(self, data: s.DataObject) -> None:
        accepted = [
            name
            for name, command in COMMANDS.items()
            for _ in range(command.weight)
            if command.when(self.domain)
        ]
        name = data.draw(s.sampled_from(accepted), label="command")
        COMMANDS[name].run(self.domain, data)
        self._deliver_new_events()

    @rule(data=s.data())
    def redeliver_earlier_events(self, data: s.DataObject) -> None:
        start = data.draw(s.integers(0, len(self.lifecycle) - 1), label="from")
        count = data.draw(s.integers(1, len(self.lifecycle) - start), label="count")
        for event in self.lifecycle[start : start + count]:
            for model in INSTANCE_MODELS:
                before = self.docs[model.VIEW_NAME]
                after = model.apply(before, event)
                assert after == before, f"{model.VIEW_NAME} folded {type(event).__name__} twice"
                self.docs[model.VIEW_NAME] = after

    # --- invariants --------------------------------------------------------------------------

    def _last(self, kind: str) -> Any:
        return next(e for e in reversed(self.domain.history) if type(e).__name__ == kind)

    @invariant()
    def every_view_shows_the_aggregates_status(self) -> None:
        status = self.domain.instance.status
        docs = {name: doc for name, doc in self.docs.items() if doc is not None}
        assert docs.keys() == self.docs.keys()

        assert docs[cloudflare_instance.VIEW_NAME]["status"] == status

        run = docs[agent_run.VIEW_NAME]
        timed_out = status == cs.ERRORED and self._last("RunFailed").timed_out
        assert run["domain_status"] == status
        assert run["status"] == agent_run.run_status(status, timed_out)

        onfido = docs[onfido_run.VIEW_NAME]
        outcome = self._last("RunCompleted").outcome if status == cs.COMPLETE else None
        step = _open_step(self.domain)
        assert onfido["domain_status"] == status
        assert onfido["status"] == onfido_run.onfido_status(status, step and step.type, outcome)

        staged = docs[staged_instance.VIEW_NAME]
        assert staged["status"] == status
        assert staged["terminated"] is (status in cs.TERMINAL)

    @invariant()
    def the_aggregate_replays_to_the_same_status(self) -> None:
        self.domain.replaying_the_history_rebuilds_the_same_aggregate()

    def teardown(self) -> None:
        # A rebuild from the topic (each event once) gives what the redelivered view holds.
        for model in INSTANCE_MODELS:
            assert fold(model.apply, self.lifecycle) == self.docs[model.VIEW_NAME]


StatusAgrees.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_every_view_shows_the_aggregates_status = StatusAgrees.TestCase


def test_the_table_covers_every_lifecycle_event_and_names_only_them() -> None:
    names = {cls.__name__ for cls in ev.EVENT_TYPES}
    assert set(cs.TRANSITIONS) | LEAVE_STATUS == names
    assert not set(cs.TRANSITIONS) & LEAVE_STATUS


def test_every_domain_event_is_a_lifecycle_event_of_the_same_name() -> None:
    # The aggregate and the projections share the table because the names and fields agree.
    names = {cls.__name__ for cls in ev.EVENT_TYPES}
    domain = {
        name
        for name, value in vars(WorkflowInstance).items()
        if isinstance(value, type) and issubclass(value, WorkflowInstance.Event)
    }
    assert domain - {"Event", "Created"} <= names  # those two are the library's base classes
    assert {"InstanceCreated", "RunStarted", "InstanceResumed"} <= domain


def test_every_status_has_a_word_in_every_view() -> None:
    for status in cs.ALL_STATUSES:
        assert agent_run.run_status(status)
        assert onfido_run.onfido_status(status, None, None)
