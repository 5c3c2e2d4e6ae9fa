"""The one-command path of the replay engine: a step whose config names no timeout runs before
anything is recorded and, when its first attempt succeeds, is reported by one RecordStep, which
also starts a queued run and completes the run that returns right after it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from contracts.replies import Reply, ReplyError
from flowledger.replay import wake
from flowledger.workflows import StepError, WorkflowEntrypoint, WorkflowStep
from tests.flowledger.harness import InMemoryFlowledger

RETRY_FAST = {"retries": {"limit": 2, "delay": "1 second", "backoff": "constant"}}
STEP_EVENTS = ["StepBegan", "AttemptBegan", "AttemptEnded", "StepEnded"]


@pytest.fixture
def fl() -> InMemoryFlowledger:
    return InMemoryFlowledger()


def new_id() -> str:
    return f"i-{uuid.uuid4().hex[:8]}"


def stored_events(fl: InMemoryFlowledger, instance: str) -> list[str]:
    aggregate = fl.instance(instance)
    return [type(e).__name__ for e in fl.app.events.get(aggregate.id)]


class Steps(WorkflowEntrypoint):
    """`count` steps (config from the params), each returning its index; counts the runs."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.runs: list[str] = []

    async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
        outputs = []
        for index in range(event["payload"]["count"]):

            @step.do(f"part {index}", config=self.config)
            async def part(index: int = index) -> int:
                self.runs.append(f"part {index}")
                return index

            outputs.append(await part())
        return outputs


async def test_a_one_step_run_is_one_command_after_its_create(fl: InMemoryFlowledger) -> None:
    instance = new_id()
    fl.create(instance, {"count": 1})
    assert await fl.run(Steps(), instance) == "complete"

    assert fl.sent_types() == ["RecordStep"]
    assert stored_events(fl, instance) == [
        "InstanceCreated",
        "RunStarted",
        *STEP_EVENTS,
        "RunCompleted",
    ]
    recorded = fl.instance(instance)
    assert recorded.run.output == [0]
    assert [(s.name, s.attempts, s.output) for s in recorded.run.steps] == [("part 0", 1, 0)]


async def test_the_same_run_with_a_step_timeout_takes_the_separate_commands(
    fl: InMemoryFlowledger,
) -> None:
    fast, timed = new_id(), new_id()
    fl.create(fast, {"count": 1})
    assert await fl.run(Steps(), fast) == "complete"
    sent_fast = len(fl.sent)
    fl.create(timed, {"count": 1})
    assert await fl.run(Steps({"timeout": "1 minute"}), timed) == "complete"

    assert fl.sent_types()[sent_fast:] == [
        "StartRun",
        "BeginStep",
        "BeginAttempt",
        "EndAttempt",
        "EndStep",
        "CompleteRun",
    ]
    assert stored_events(fl, timed) == stored_events(fl, fast)  # the same history either way


async def test_each_step_is_one_command_and_the_last_completes_the_run(
    fl: InMemoryFlowledger,
) -> None:
    instance = new_id()
    fl.create(instance, {"count": 3})
    flow = Steps()
    assert await fl.run(flow, instance) == "complete"
    assert fl.sent_types() == ["RecordStep"] * 3
    first, middle, last = fl.sent
    assert (first.start_run, first.complete_run) == (True, False)  # type: ignore[union-attr]
    assert (middle.start_run, middle.complete_run) == (False, False)  # type: ignore[union-attr]
    assert (last.complete_run, last.run_output) == (True, [0, 1, 2])  # type: ignore[union-attr]
    assert flow.runs == ["part 0", "part 1", "part 2"]


async def test_a_run_without_steps_still_starts_then_completes(fl: InMemoryFlowledger) -> None:
    instance = new_id()
    fl.create(instance, {"count": 0})
    assert await fl.run(Steps(), instance) == "complete"
    assert fl.sent_types() == ["StartRun", "CompleteRun"]


async def test_a_failed_first_attempt_is_recorded_as_the_separate_commands_then_retried(
    fl: InMemoryFlowledger,
) -> None:
    class Flaky(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("flaky", config=RETRY_FAST)
            async def flaky(ctx: dict[str, Any]) -> int:
                if ctx["attempt"] == 1:
                    raise ConnectionError("no answer")
                return ctx["attempt"]

            return await flaky()

    instance = new_id()
    fl.create(instance)
    assert await fl.run(Flaky(), instance) == "complete"
    assert fl.sent_types() == [
        "StartRun",
        "BeginStep",
        "BeginAttempt",
        "EndAttempt",  # failed: backing off, the scheduler (the harness) ends it
        "BeginAttempt",
        "EndAttempt",
        "EndStep",
        "CompleteRun",
    ]
    step = fl.instance(instance).run.steps[0]
    assert (step.attempts, step.output) == (2, 2)


async def test_a_step_failing_for_good_at_its_first_attempt_raises_step_error(
    fl: InMemoryFlowledger,
) -> None:
    class Caught(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("doomed", config={"retries": {"limit": 0}})
            async def doomed() -> None:
                raise ValueError("bad input")

            try:
                await doomed()
            except StepError as error:
                return {"caught": error.name}

    instance = new_id()
    fl.create(instance)
    assert await fl.run(Caught(), instance) == "complete"
    assert fl.instance(instance).run.output == {"caught": "ValueError"}
    assert fl.sent_types()[-2:] == ["EndStep", "CompleteRun"]


async def test_a_worker_dying_inside_an_unrecorded_step_leaves_it_to_run_again(
    fl: InMemoryFlowledger,
) -> None:
    started = asyncio.Event()
    runs: list[str] = []

    class Slow(WorkflowEntrypoint):
        def __init__(self, hang: bool) -> None:
            super().__init__()
            self.hang = hang

        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("slow")
            async def slow() -> str:
                runs.append("slow")
                started.set()
                if self.hang:
                    await asyncio.Event().wait()
                return "done"

            return await slow()

    instance = new_id()
    fl.create(instance)
    dead = asyncio.create_task(fl.wake(Slow(hang=True), instance))
    await started.wait()
    dead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dead
    state = fl.load(instance)
    assert state is not None and state.status == "queued" and state.steps == []  # no trace

    assert await fl.run(Slow(hang=False), instance) == "complete"
    assert runs == ["slow", "slow"]  # at least once: twice here, recorded once
    assert fl.instance(instance).run.steps[0].attempts == 1


async def test_a_pause_while_an_unrecorded_step_runs_pauses_at_once_and_the_step_runs_again(
    fl: InMemoryFlowledger,
) -> None:
    ran: list[str] = []
    instance = new_id()

    class Pausable(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("one")
            async def one() -> str:
                ran.append("one")
                if len(ran) == 1:  # no attempt in flight: nothing to wait for
                    assert fl.do("ChangeStatus", instance, action="pause").status == "paused"
                return "1"

            return await one()

    fl.create(instance)
    assert await fl.run(Pausable(), instance) == "paused"
    assert fl.instance(instance).run.steps == []  # its RecordStep was refused
    assert fl.replies[-1].error is not None
    assert fl.replies[-1].error.code == "instance.invalid_transition"
    assert fl.do("ChangeStatus", instance, action="resume").outcome == "accepted"
    assert await fl.run(Pausable(), instance) == "complete"
    assert ran == ["one", "one"] and fl.instance(instance).run.output == "1"


async def test_a_stopping_worker_reports_the_step_it_finished_before_it_stops(
    fl: InMemoryFlowledger,
) -> None:
    stopping = False
    instance = new_id()

    class TwoSteps(Steps):
        async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
            nonlocal stopping

            @step.do("first")
            async def first() -> int:
                nonlocal stopping
                stopping = True  # e.g. its partition is revoked meanwhile
                return 1

            @step.do("second")
            async def second() -> int:
                raise AssertionError("never begun by a stopping worker")

            return [await first(), await second()]

    fl.create(instance)

    async def load() -> Any:
        return fl.load(instance)

    outcome = await wake(TwoSteps(), load, fl, stop_requested=lambda: stopping)
    assert outcome.kind == "stopped"
    assert fl.sent_types() == ["RecordStep"]
    assert [s.name for s in fl.instance(instance).run.steps] == ["first"]


async def test_outputs_too_large_together_complete_the_run_with_a_second_command(
    fl: InMemoryFlowledger,
) -> None:
    half = "x" * (500 * 1024)

    class Big(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("big")
            async def big() -> str:
                return half

            return [await big()]

    instance = new_id()
    fl.create(instance)
    assert await fl.run(Big(), instance) == "complete"
    assert fl.sent_types() == ["RecordStep", "CompleteRun"]
    assert fl.instance(instance).run.output == [half]


async def test_a_record_step_the_service_refuses_as_invalid_fails_the_run(
    fl: InMemoryFlowledger,
) -> None:
    original = fl.send

    async def refusing(command: Any) -> Any:
        if type(command).__name__ == "RecordStep":
            error = ReplyError(code="payload.too_large", message="output is too large")
            return Reply(command_id=command.command_id, outcome="rejected", error=error)
        return await original(command)

    fl.send = refusing  # type: ignore[method-assign]
    instance = new_id()
    fl.create(instance, {"count": 1})
    assert await fl.run(Steps(), instance) == "errored"
    error = fl.instance(instance).run.error
    assert error["name"] == "InvalidCommandError" and "payload.too_large" in error["message"]
    assert stored_events(fl, instance) == ["InstanceCreated", "RunStarted", "RunFailed"]
