"""Cloudflare's Python Workflows API: code written for it ports by changing the import.

```python
from flowledger.workflows import WorkflowEntrypoint, NonRetryableError

class Checkout(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("charge", config={"retries": {"limit": 3, "delay": "1 second"}})
        async def charge():
            return {"charged": event["payload"]["amount"]}

        receipt = await charge()
        await step.sleep("cool down", "1 second")
        approval = await step.wait_for_event("approval", "approved", timeout="1 hour")
        return {"receipt": receipt, "by": approval["payload"]["by"]}
```

`run(event, step)` is replayed from the top on every wake-up (README "Workers"): a step whose
output is recorded returns it without running, so code outside steps must be deterministic
(same steps, same order). Flowledger's own choices where Cloudflare's Python SDK leaves room:

- `event` is `{"payload": params, "timestamp": datetime (UTC, the instance's creation),
  "instanceId": str}`; `step.wait_for_event` returns `{"payload", "timestamp" (UTC datetime,
  when the event reached the wait), "type"}`.
- Durations are strings ("10 seconds", "5 minutes", "1 hour"), `datetime.timedelta`, or
  numbers: **seconds** for `step.sleep` and `wait_for_event(timeout=)`, **milliseconds**
  inside a step's `config` (it is Cloudflare's `WorkflowStepConfig`, whose numbers are ms).
  `step.sleep_until` takes an aware `datetime` (a naive one is local time, as
  `datetime.timestamp()` reads it) or epoch seconds; it sleeps for the time left when the
  sleep begins (the contract's sleep has a length, not an end).
- Steps run one at a time, in the order they are called: the instance has one open step at a
  time. `concurrent=True` and `asyncio.gather` over steps are accepted and run sequentially.
- A failed step raises `StepError` (`.name`, `.message`) into `run()`, live and on replay
  alike, chained from the original exception when it was raised in this process: catch it to
  carry on, as Cloudflare lets a workflow catch a step's error; uncaught, the run fails.
- A step must return JSON (None, bool, int, float, str, lists, dicts): it gets back what JSON
  gives (a tuple comes back a list, dict keys strings), live and on replay alike. Anything
  else fails the step without retries, naming the type.
"""

from __future__ import annotations

import contextvars
import inspect
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from contracts.durations import text_to_milliseconds
from contracts.limits import NAME_PATTERN, STEP_NAME_PATTERN

__all__ = [
    "DEFAULT_STEP_CONFIG",
    "NonRetryableError",
    "StepError",
    "WorkflowEntrypoint",
    "WorkflowStep",
]

# Cloudflare's defaults: 5 retries, 10 s apart, doubling, each attempt within 10 minutes.
DEFAULT_STEP_CONFIG: dict[str, Any] = {
    "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
    "timeout": 600_000,
}
DEFAULT_WAIT_TIMEOUT = "24 hours"
YEAR_MS = 365 * 86_400_000  # the longest sleep, and wait, the contract takes
BACKOFFS = ("constant", "linear", "exponential")


class NonRetryableError(Exception):
    """Raised inside a step: the step fails at once, with no retry left to run."""


class StepError(Exception):
    """A step that failed for good (its retries ran out, it raised NonRetryableError, its
    wait timed out), raised into `run()`. `name` is the error's name (the exception class
    that failed the last attempt, `WorkflowTimeoutError`, `WaitTimeoutError`)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name
        self.message = message


class WorkflowEntrypoint:
    """Subclass it and implement `async def run(self, event, step)`; what `run` returns
    (JSON) is the instance's output."""

    def __init__(self, ctx: Any = None, env: Any = None) -> None:
        self.ctx = ctx
        self.env = env

    async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
        raise NotImplementedError("a workflow implements `async def run(self, event, step)`")


class StepRunner(Protocol):
    """What carries out the steps `WorkflowStep` declares: the replay engine
    (flowledger/replay.py) records them in the instance's history."""

    async def run_step(
        self,
        name: str,
        call: Callable[[dict[str, Any]], Awaitable[Any]],
        config: dict[str, Any],
        *,
        timeout_set: bool = False,
    ) -> Any:
        """`timeout_set`: the step's config names a timeout (not Cloudflare's default)."""
        ...

    async def sleep(self, name: str, milliseconds: int) -> None: ...

    async def wait_for_event(
        self, name: str, event_type: str, timeout_ms: int
    ) -> dict[str, Any]: ...

    def now(self) -> datetime: ...


# Set while a step's function runs: a step cannot open another step (the instance has one
# open step at a time), and saying so beats a deadlock.
_inside_step: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "flowledger_inside_step", default=None
)


class WorkflowStep:
    """The `step` argument of `run`: `do`, `sleep`, `sleep_until`, `wait_for_event`."""

    def __init__(self, runner: StepRunner) -> None:
        self._runner = runner
        self._declared: dict[str, StepFunction] = {}

    def do(
        self,
        name: str | Callable[..., Any] | None = None,
        *,
        depends: list[StepFunction] | None = None,
        concurrent: bool = False,
        config: dict[str, Any] | None = None,
    ) -> Any:
        """A decorator: `@step.do("name", config=...)` over an async function makes an
        awaitable step (`await charge()`). The name defaults to the function's. A parameter
        named like a step function declared before it gets that step's result (the step runs
        first if it has not); `depends=[a, b]` passes those steps' results positionally
        instead; a parameter named `ctx` gets `{"attempt", "name", "config"}`."""
        if callable(name):  # `@step.do` without parentheses
            return self.do()(name)
        step_config = normalise_config(config)
        timeout_set = "timeout" in (config or {})

        def declare(fn: Callable[..., Any]) -> StepFunction:
            step_name = check_step_name(name or fn.__name__)
            declared = StepFunction(
                self, step_name, fn, list(depends or []), step_config, concurrent, timeout_set
            )
            self._declared[fn.__name__] = declared
            return declared

        return declare

    async def sleep(self, name: str, duration: str | int | float | timedelta) -> None:
        _not_inside_a_step("step.sleep")
        milliseconds = to_milliseconds(duration, number_unit_ms=1000)
        if milliseconds > YEAR_MS:
            raise ValueError(f"step.sleep {name!r}: at most 365 days, not {duration!r}")
        await self._runner.sleep(check_step_name(name), milliseconds)

    async def sleep_until(self, name: str, timestamp: datetime | int | float) -> None:
        _not_inside_a_step("step.sleep_until")
        if isinstance(timestamp, datetime):
            target = timestamp.timestamp()
        elif isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
            target = float(timestamp)
        else:
            raise TypeError(f"sleep_until takes a datetime or epoch seconds, not {timestamp!r}")
        left_ms = round((target - self._runner.now().timestamp()) * 1000)
        if left_ms > YEAR_MS:
            raise ValueError(f"step.sleep_until {name!r}: at most 365 days ahead")
        await self._runner.sleep(check_step_name(name), max(0, left_ms))

    async def wait_for_event(
        self,
        name: str,
        event_type: str,
        timeout: str | int | float | timedelta = DEFAULT_WAIT_TIMEOUT,
    ) -> dict[str, Any]:
        _not_inside_a_step("step.wait_for_event")
        timeout_ms = to_milliseconds(timeout, number_unit_ms=1000)
        if not 1_000 <= timeout_ms <= YEAR_MS:
            raise ValueError(
                f"wait_for_event {name!r}: the timeout is 1 second to 365 days, not {timeout!r}"
            )
        if not isinstance(event_type, str) or not re.fullmatch(NAME_PATTERN, event_type):
            raise ValueError(
                f"wait_for_event {name!r}: event type {event_type!r} is not 1-100 letters, "
                "digits, '_' or '-'"
            )
        return await self._runner.wait_for_event(check_step_name(name), event_type, timeout_ms)


class StepFunction:
    """A declared step: awaiting a call runs it once per replay (later calls, as a
    dependency or directly, return the same result, or raise the same error)."""

    def __init__(
        self,
        owner: WorkflowStep,
        name: str,
        fn: Callable[..., Any],
        depends: list[StepFunction],
        config: dict[str, Any],
        concurrent: bool,
        timeout_set: bool = False,
    ) -> None:
        self.name = name
        self.fn = fn
        self.config = config
        self.timeout_set = timeout_set  # the config names a timeout: attempts are timed
        self.concurrent = concurrent  # dependencies resolve one after the other regardless
        self._owner = owner
        self._depends = depends
        self._settled = False
        self._result: Any = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<step {self.name!r}>"

    async def __call__(self) -> Any:
        if self._settled:
            if self._error is not None:
                raise self._error
            return self._result
        _not_inside_a_step(f"step {self.name!r}")
        args, kwargs, wants_ctx = await self._arguments()

        async def call(ctx: dict[str, Any]) -> Any:
            token = _inside_step.set(self.name)
            try:
                result = self.fn(*args, **({**kwargs, "ctx": ctx} if wants_ctx else kwargs))
                return await result if inspect.isawaitable(result) else result
            finally:
                _inside_step.reset(token)

        try:
            self._result = await self._owner._runner.run_step(
                self.name, call, self.config, timeout_set=self.timeout_set
            )
        except StepError as error:
            self._settled, self._error = True, error
            raise
        self._settled = True
        return self._result

    async def _arguments(self) -> tuple[list[Any], dict[str, Any], bool]:
        """Dependencies first, each run (or reused) before this step begins."""
        parameters = inspect.signature(self.fn).parameters
        wants_ctx = "ctx" in parameters
        if self._depends:
            return [await dependency() for dependency in self._depends], {}, wants_ctx
        kwargs: dict[str, Any] = {}
        for parameter in parameters.values():
            if parameter.name == "ctx":
                continue
            dependency = self._owner._declared.get(parameter.name)
            if dependency is not None and dependency is not self:
                kwargs[parameter.name] = await dependency()
            elif parameter.default is inspect.Parameter.empty and parameter.kind not in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            ):
                raise TypeError(
                    f"step {self.name!r}: parameter {parameter.name!r} names no step function "
                    "declared before it (dependencies are injected by parameter name)"
                )
        return [], kwargs, wants_ctx


def check_step_name(name: object) -> str:
    """The contract's step names: 1-256 characters, no control characters."""
    if not isinstance(name, str) or not re.fullmatch(STEP_NAME_PATTERN, name) or len(name) > 256:
        raise ValueError(f"a step name is 1-256 printable characters, not {name!r}")
    return name


def _not_inside_a_step(what: str) -> None:
    outer = _inside_step.get()
    if outer is not None:
        raise RuntimeError(f"{what} was called inside step {outer!r}: steps cannot be nested")


# --- durations and step config --------------------------------------------------------------

def to_milliseconds(value: str | int | float | timedelta, *, number_unit_ms: int) -> int:
    """A duration in milliseconds; a bare number counts `number_unit_ms` each."""
    if isinstance(value, timedelta):
        ms = round(value.total_seconds() * 1000)
    elif isinstance(value, bool):
        raise TypeError(f"a duration is a string, a number or a timedelta, not {value!r}")
    elif isinstance(value, int | float):
        ms = round(value * number_unit_ms)
    elif isinstance(value, str):
        ms = text_to_milliseconds(value)  # the one grammar the service reads too
    else:
        raise TypeError(f"a duration is a string, a number or a timedelta, not {value!r}")
    if ms < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return ms


def normalise_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """A step's config with Cloudflare's defaults filled in and durations in milliseconds:
    `{"retries": {"limit", "delay", "backoff"}, "timeout"}`."""
    config = dict(config or {})
    unknown = set(config) - {"retries", "timeout"}
    if unknown:
        raise ValueError(f"unknown step config keys {sorted(unknown)}: use retries, timeout")
    retries = {**DEFAULT_STEP_CONFIG["retries"], **dict(config.get("retries") or {})}
    unknown = set(retries) - {"limit", "delay", "backoff"}
    if unknown:
        raise ValueError(f"unknown retries keys {sorted(unknown)}: use limit, delay, backoff")
    limit = retries["limit"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"retries.limit is a whole number of retries (0 or more), not {limit!r}")
    if retries["backoff"] not in BACKOFFS:
        raise ValueError(f"retries.backoff is one of {', '.join(BACKOFFS)}")
    return {
        "retries": {
            "limit": limit,
            "delay": to_milliseconds(retries["delay"], number_unit_ms=1),
            "backoff": retries["backoff"],
        },
        "timeout": to_milliseconds(
            config.get("timeout", DEFAULT_STEP_CONFIG["timeout"]), number_unit_ms=1
        ),
    }
