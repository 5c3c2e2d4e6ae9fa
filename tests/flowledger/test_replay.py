"""Workflows replayed against an in-memory history (no Kafka, no store): the SDK's API, the
replay engine's reports, and what the aggregate makes of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.replies import Reply, ReplyError
from flowledger.replay import attempt_command_id, wake
from flowledger.workflows import NonRetryableError, StepError, WorkflowEntrypoint, WorkflowStep
from tests.flowledger.harness import InMemoryFlowledger

FAST = {"retries": {"limit": 3, "delay": "1 second", "backoff": "constant"}, "timeout": "1 minute"}
# A step whose config names a timeout is reported with the separate commands (BeginStep,
# BeginAttempt, EndAttempt, EndStep): its attempt is in flight while its code runs.
TIMED = {"timeout": "1 minute"}


@pytest.fixture
def fl() -> InMemoryFlowledger:
    return InMemoryFlowledger()


class Checkout(WorkflowEntrypoint):
    """The issue's example, counting how often each step's code runs."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, int] = {}

    async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
        @step.do("charge", config=FAST)
        async def charge() -> Any:
            self.runs["charge"] = self.runs.get("charge", 0) + 1
            return {"charged": event["payload"]["amount"]}

        receipt = await charge()
        await step.sleep("cool down", "1 second")
        approval = await step.wait_for_event("approval", "approved", timeout="1 hour")
        return {"receipt": receipt, "by": approval["payload"]["by"], "type": approval["type"]}


async def test_a_workflow_runs_to_complete_with_recorded_outputs_replayed(
    fl: InMemoryFlowledger,
) -> None:
    flow = Checkout()
    fl.create("o1", {"amount": 42})

    assert await fl.run(flow, "o1") == "waiting"  # slept, then waits for the event
    state = fl.load("o1")
    assert state is not None and [s.name for s in state.steps] == [
        "charge",
        "cool down",
        "approval",
    ]
    assert fl.do("SendEvent", "o1", event_type="approved", payload={"by": "ann"}).outcome == (
        "accepted"
    )
    assert await fl.run(flow, "o1") == "complete"

    instance = fl.instance("o1")
    assert instance.run.output == {"receipt": {"charged": 42}, "by": "ann", "type": "approved"}
    assert flow.runs == {"charge": 1}  # replayed three times, run once
    assert [s.attempts for s in instance.run.steps] == [1, 0, 0]


async def test_event_gives_payload_timestamp_and_instance_id(fl: InMemoryFlowledger) -> None:
    seen: list[dict[str, Any]] = []

    class Echo(WorkflowEntrypoint):
        async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
            seen.append(event)
            return event["payload"]

    fl.create("e1", {"x": [1, 2]})
    assert await fl.run(Echo(), "e1") == "complete"
    assert seen[0] == {"payload": {"x": [1, 2]}, "timestamp": fl.now, "instanceId": "e1"}
    assert fl.instance("e1").run.output == {"x": [1, 2]}


async def test_a_step_failing_twice_then_succeeding_shows_three_attempts(
    fl: InMemoryFlowledger,
) -> None:
    calls: list[int] = []

    class Flaky(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do(config=FAST)
            async def flaky(ctx: dict[str, Any]) -> int:
                calls.append(ctx["attempt"])
                if ctx["attempt"] < 3:
                    raise ConnectionError("card network down")
                return ctx["attempt"]

            return await flaky()

    fl.create("f1")
    assert await fl.run(Flaky(), "f1") == "complete"
    instance = fl.instance("f1")
    assert calls == [1, 2, 3]
    assert instance.run.steps[0].name == "flaky" and instance.run.steps[0].attempts == 3
    assert instance.run.output == 3
    ended = [c for c in fl.sent if type(c).__name__ == "EndAttempt"]
    assert [(e.success, e.error.name if e.error else None) for e in ended] == [  # type: ignore[attr-defined]
        (False, "ConnectionError"),
        (False, "ConnectionError"),
        (True, None),
    ]


async def test_non_retryable_error_ends_the_run_errored_after_one_attempt(
    fl: InMemoryFlowledger,
) -> None:
    class Refuse(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("validate", config=FAST)
            async def validate() -> None:
                raise NonRetryableError("order 7 is fraudulent")

            await validate()

    fl.create("n1")
    assert await fl.run(Refuse(), "n1") == "errored"
    instance = fl.instance("n1")
    assert instance.run.steps[0].attempts == 1
    assert instance.run.error == {
        "name": "NonRetryableError",
        "message": "order 7 is fraudulent",
    }


async def test_exhausted_retries_raise_step_error_into_run_which_may_catch_it(
    fl: InMemoryFlowledger,
) -> None:
    class Fallback(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("primary", config={"retries": {"limit": 1, "delay": 10}})
            async def primary() -> None:
                raise ValueError("primary down")

            @step.do("secondary")
            async def secondary() -> str:
                return "secondary"

            try:
                return await primary()
            except StepError as error:
                assert (error.name, error.message) == ("ValueError", "primary down")
                return await secondary()

    fl.create("x1")
    assert await fl.run(Fallback(), "x1") == "complete"
    instance = fl.instance("x1")
    assert [(s.name, s.attempts, s.success) for s in instance.run.steps] == [
        ("primary", 2, False),
        ("secondary", 1, True),
    ]
    assert instance.run.output == "secondary"


async def test_wait_for_event_gets_an_event_sent_before_the_wait_and_times_out(
    fl: InMemoryFlowledger,
) -> None:
    class Waiter(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            try:
                got = await step.wait_for_event("go", "go", timeout=5)
            except StepError as error:
                return {"timed_out": error.name}
            return {"payload": got["payload"], "at": got["timestamp"].isoformat()}

    fl.create("early")
    fl.do("SendEvent", "early", event_type="go", payload=[1])
    assert await fl.run(Waiter(), "early") == "complete"
    assert fl.instance("early").run.output == {"payload": [1], "at": fl.now.isoformat()}

    fl.create("late")
    assert await fl.run(Waiter(), "late", time_out_waits=True) == "complete"
    assert fl.instance("late").run.output == {"timed_out": "WaitTimeoutError"}


async def test_sleep_until_sleeps_for_the_time_left(fl: InMemoryFlowledger) -> None:
    class Until(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            await step.sleep_until("past", datetime(2020, 1, 1, tzinfo=UTC))
            await step.sleep_until("soon", fl.now.timestamp() + 90)
            await step.sleep("short", timedelta(seconds=2))

    fl.create("u1")
    await fl.wake(Until(), "u1")
    begun = [c for c in fl.sent if type(c).__name__ == "BeginStep"]
    assert [b.sleep_ms for b in begun] == [0]  # type: ignore[attr-defined]
    assert await fl.run(Until(), "u1") == "complete"
    begun = [c for c in fl.sent if type(c).__name__ == "BeginStep"]
    assert [b.sleep_ms for b in begun] == [0, 90_000, 2_000]  # type: ignore[attr-defined]


async def test_a_different_step_on_replay_fails_the_run_naming_both(
    fl: InMemoryFlowledger,
) -> None:
    class Before(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("charge")
            async def charge() -> int:
                return 1

            await charge()
            await step.sleep("nap", 1)

    class After(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("refund")
            async def refund() -> int:
                return 1

            await refund()

    fl.create("d1")
    await fl.wake(Before(), "d1")  # charged, then asleep
    assert fl.tick("d1") == "EndSleep"
    assert await fl.run(After(), "d1") == "errored"
    error = fl.instance("d1").run.error
    assert error["name"] == "NonDeterminismError"
    assert "'charge'" in error["message"] and "'refund'" in error["message"]


async def test_a_step_returning_something_json_cannot_carry_fails_without_retries(
    fl: InMemoryFlowledger,
) -> None:
    class Bad(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("when", config=FAST)
            async def when() -> Any:
                return {"at": datetime.now(UTC)}

            return await when()

    fl.create("j1")
    assert await fl.run(Bad(), "j1") == "errored"
    instance = fl.instance("j1")
    assert instance.run.steps[0].attempts == 1
    assert instance.run.error["name"] == "NonJsonOutputError"
    assert "'when'" in instance.run.error["message"]
    assert "datetime" in instance.run.error["message"]


async def test_outputs_come_back_as_json_gives_them_live_and_on_replay(
    fl: InMemoryFlowledger,
) -> None:
    seen: list[Any] = []

    class Shapes(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("shape")
            async def shape() -> Any:
                return {"pair": (1, 2), 3: "three"}

            seen.append(await shape())
            await step.sleep("nap", 1)

    fl.create("s1")
    assert await fl.run(Shapes(), "s1") == "complete"
    assert seen == [{"pair": [1, 2], "3": "three"}] * 2


async def test_pause_takes_effect_at_the_next_step_boundary(fl: InMemoryFlowledger) -> None:
    ran: list[str] = []

    class Pausable(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("one", config=TIMED)
            async def one() -> str:
                ran.append("one")
                if len(ran) == 1:  # a user pauses while the attempt is in flight
                    assert fl.do("ChangeStatus", "p1", action="pause").status == "waitingForPause"
                return "1"

            @step.do("two")
            async def two() -> str:
                ran.append("two")
                return "2"

            return [await one(), await two()]

    fl.create("p1")
    assert await fl.run(Pausable(), "p1") == "paused"
    assert ran == ["one"]
    assert fl.instance("p1").run.steps[0].ended  # the step's output was recorded first
    assert fl.do("ChangeStatus", "p1", action="resume").outcome == "accepted"
    assert await fl.run(Pausable(), "p1") == "complete"
    assert ran == ["one", "two"] and fl.instance("p1").run.output == ["1", "2"]


async def test_terminate_stops_the_run_before_its_next_step(fl: InMemoryFlowledger) -> None:
    ran: list[str] = []

    class Doomed(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("one", config=TIMED)
            async def one() -> None:
                ran.append("one")
                fl.do("ChangeStatus", "t1", action="terminate")

            @step.do("two")
            async def two() -> None:
                ran.append("two")

            await one()
            await two()

    fl.create("t1")
    assert await fl.run(Doomed(), "t1") == "terminated"
    assert ran == ["one"]
    assert fl.sent_types()[-1] == "EndAttempt"  # refused: the run had ended


async def test_restart_from_a_step_replays_the_outputs_recorded_before_it(
    fl: InMemoryFlowledger,
) -> None:
    flow = Checkout()
    fl.create("r1", {"amount": 5})
    await fl.run(flow, "r1")
    fl.do("SendEvent", "r1", event_type="approved", payload={"by": "bo"})
    assert await fl.run(flow, "r1") == "complete"
    restart = {"action": "restart", "from": {"name": "cool down", "type": "sleep"}}
    assert fl.do("ChangeStatus", "r1", **restart).outcome == "accepted"
    fl.do("SendEvent", "r1", event_type="approved", payload={"by": "cy"})
    assert await fl.run(flow, "r1") == "complete"
    assert flow.runs == {"charge": 1}  # kept by the restart: not run again
    assert fl.instance("r1").run.output["by"] == "cy"
    assert fl.instance("r1").run.number == 2


async def test_an_attempt_left_in_flight_is_taken_over_by_the_next_replay(
    fl: InMemoryFlowledger,
) -> None:
    started = threading.Event()  # set by step code, which runs on a thread of its own
    runs: list[str] = []

    class Slow(WorkflowEntrypoint):
        def __init__(self, hang: bool) -> None:
            super().__init__()
            self.hang = hang

        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("slow", config=TIMED)
            async def slow() -> str:
                runs.append("slow")
                started.set()
                if self.hang:
                    await asyncio.Event().wait()
                return "done"

            return await slow()

    fl.create("k1")
    dead = asyncio.create_task(fl.wake(Slow(hang=True), "k1"))
    await asyncio.to_thread(started.wait)
    dead.cancel()  # the worker dies mid-step: its attempt stays in flight
    with pytest.raises(asyncio.CancelledError):
        await dead
    state = fl.load("k1")
    assert state is not None and state.steps[0].attempt_in_flight

    assert await fl.run(Slow(hang=False), "k1") == "complete"
    assert runs == ["slow", "slow"]  # at least once: twice here, recorded once
    assert fl.instance("k1").run.steps[0].attempts == 1
    begins = [c for c in fl.sent if type(c).__name__ == "BeginAttempt"]
    assert len({b.command_id for b in begins}) == 1
    assert begins[0].command_id == attempt_command_id(state, 0, "slow", 1)
    outcomes = [r.outcome for c, r in zip(fl.sent, fl.replies, strict=True) if c in begins]
    assert outcomes == ["accepted", "duplicate"]


async def test_an_engine_that_stopped_between_attempt_and_step_end_is_finished_without_rerun(
    fl: InMemoryFlowledger,
) -> None:
    runs: list[int] = []

    class Once(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("once", config=TIMED)
            async def once() -> int:
                runs.append(1)
                return 7

            return await once()

    fl.create("h1")
    original = fl.send

    async def dying(command: Any) -> Any:
        reply = await original(command)
        if type(command).__name__ == "EndAttempt":
            raise asyncio.CancelledError
        return reply

    fl.send = dying  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await fl.wake(Once(), "h1")
    fl.send = original  # type: ignore[method-assign]
    assert await fl.run(Once(), "h1") == "complete"
    assert runs == [1] and fl.instance("h1").run.output == 7


async def test_an_attempt_that_outlives_its_timeout_fails_and_is_retried(
    fl: InMemoryFlowledger,
) -> None:
    calls: list[int] = []

    class Slow(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            config = {"retries": {"limit": 1, "delay": 1}, "timeout": 50}

            @step.do("slow", config=config)
            async def slow(ctx: dict[str, Any]) -> int:
                calls.append(ctx["attempt"])
                if ctx["attempt"] == 1:
                    await asyncio.sleep(5)
                return ctx["attempt"]

            return await slow()

    fl.create("to1")
    assert await fl.run(Slow(), "to1") == "complete"
    ended = [c for c in fl.sent if type(c).__name__ == "EndAttempt"]
    assert ended[0].error.name == "WorkflowTimeoutError"  # type: ignore[attr-defined]
    assert calls == [1, 2] and fl.instance("to1").run.output == 2


async def test_dependencies_are_injected_by_parameter_name_and_run_once(
    fl: InMemoryFlowledger,
) -> None:
    runs: list[str] = []

    class Diamond(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do()
            async def dep_1() -> str:
                runs.append("dep_1")
                return "a"

            @step.do()
            async def dep_2() -> str:
                runs.append("dep_2")
                return "b"

            @step.do(concurrent=True)
            async def final_step(dep_1: str, dep_2: str) -> str:
                return dep_1 + dep_2

            @step.do("explicit", depends=[dep_2, dep_1])
            async def explicit(first: str, second: str) -> str:
                return first + second

            first = await dep_1()
            return [first, await final_step(), await explicit()]

    fl.create("g1")
    assert await fl.run(Diamond(), "g1") == "complete"
    instance = fl.instance("g1")
    assert instance.run.output == ["a", "ab", "ba"]
    assert [s.name for s in instance.run.steps] == ["dep_1", "dep_2", "final_step", "explicit"]
    assert runs == ["dep_1", "dep_2"]


async def test_steps_gathered_run_one_at_a_time_in_call_order(fl: InMemoryFlowledger) -> None:
    class Gather(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("a")
            async def a() -> str:
                await asyncio.sleep(0.01)
                return "a"

            @step.do("b")
            async def b() -> str:
                return "b"

            return list(await asyncio.gather(a(), b()))

    fl.create("c1")
    assert await fl.run(Gather(), "c1") == "complete"
    assert fl.instance("c1").run.output == ["a", "b"]


async def test_a_step_inside_a_step_fails_the_run_clearly(fl: InMemoryFlowledger) -> None:
    class Nested(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("outer", config={"retries": {"limit": 0}})
            async def outer() -> None:
                await step.sleep("inner", 1)

            await outer()

    fl.create("nest")
    assert await fl.run(Nested(), "nest") == "errored"
    assert "cannot be nested" in fl.instance("nest").run.error["message"]


async def test_bad_config_and_non_json_run_output_fail_the_run(fl: InMemoryFlowledger) -> None:
    class BadConfig(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("x", config={"retries": {"limit": 1, "delay": "soon"}})
            async def x() -> None:
                return None

    class BadOutput(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            return {1, 2}

    fl.create("bc")
    assert await fl.run(BadConfig(), "bc") == "errored"
    assert "soon" in fl.instance("bc").run.error["message"]
    fl.create("bo")
    assert await fl.run(BadOutput(), "bo") == "errored"
    assert fl.instance("bo").run.error["name"] == "NonJsonOutputError"


async def test_a_workflow_swallowing_the_engines_halt_does_not_complete(
    fl: InMemoryFlowledger,
) -> None:
    class Greedy(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            with contextlib.suppress(BaseException):  # what the test is about
                await step.sleep("nap", 60)
            return "too early"

    fl.create("sw")
    await fl.wake(Greedy(), "sw")
    assert fl.load("sw").status == "waiting"  # type: ignore[union-attr]
    assert "CompleteRun" not in fl.sent_types()


async def test_what_the_contract_would_refuse_fails_the_run_before_it_is_sent(
    fl: InMemoryFlowledger,
) -> None:
    class Refused(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            kind = event["payload"]
            if kind == "name":
                await step.sleep("tab\there", 1)
            if kind == "timeout":
                await step.wait_for_event("w", "go", timeout="100 ms")
            if kind == "event type":
                await step.wait_for_event("w", "not ok!", timeout=5)
            await step.sleep("long", timedelta(days=400))

    for kind, expected in [
        ("name", "a step name is"),
        ("timeout", "1 second to 365 days"),
        ("event type", "event type 'not ok!'"),
        ("sleep", "at most 365 days"),
    ]:
        fl.create(kind.replace(" ", "-"), kind)
        assert await fl.run(Refused(), kind.replace(" ", "-")) == "errored"
        error = fl.instance(kind.replace(" ", "-")).run.error
        assert error["name"] == "ValueError" and expected in error["message"], error
    assert "BeginStep" not in fl.sent_types()


async def test_a_command_the_service_refuses_as_invalid_fails_the_run(
    fl: InMemoryFlowledger,
) -> None:
    class Huge(WorkflowEntrypoint):
        async def run(self, event: Any, step: WorkflowStep) -> Any:
            @step.do("huge", config=TIMED)
            async def huge() -> str:
                return "x"

            return await huge()

    original = fl.send

    async def refusing(command: Any) -> Any:
        if type(command).__name__ == "EndAttempt":
            error = ReplyError(code="payload.too_large", message="output is too large")
            return Reply(command_id=command.command_id, outcome="rejected", error=error)
        return await original(command)

    fl.send = refusing  # type: ignore[method-assign]
    fl.create("big")
    assert await fl.run(Huge(), "big") == "errored"
    error = fl.instance("big").run.error
    assert error["name"] == "InvalidCommandError" and "payload.too_large" in error["message"]


class _FailsWithASecret(WorkflowEntrypoint):
    async def run(self, event: Any, step: WorkflowStep) -> Any:
        @step.do("charge", config={"retries": {"limit": 0, "delay": 0}})
        async def charge() -> None:
            raise ValueError(f"card {event['payload']['card']} declined")

        return await charge()


@pytest.mark.parametrize("log_content", [False, True])
async def test_logs_name_the_error_type_and_step_and_carry_its_message_only_if_asked(
    fl: InMemoryFlowledger, caplog: pytest.LogCaptureFixture, new_id: str, log_content: bool
) -> None:
    secret = f"4111-{new_id}"
    fl.create(new_id, {"card": secret})

    async def load() -> Any:
        return fl.load(new_id)

    with caplog.at_level(logging.INFO, logger="flowledger.worker"):
        outcome = await wake(_FailsWithASecret(), load, fl, log_content=log_content)
    assert (outcome.kind, outcome.detail) == ("failed", "ValueError")
    assert secret in outcome.content  # for the worker to log when asked, never in `detail`
    assert "attempt 1 of 'charge' failed: ValueError" in caplog.text
    assert (secret in caplog.text) is log_content
