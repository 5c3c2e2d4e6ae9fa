"""Lifecycle events for projection tests: one `Story` per instance, with fresh ids.

Each call returns the next event of the instance: versions count up from 1 and every event
happens one second after the previous one, so durations are easy to predict.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import events as ev
from contracts.keys import instance_global_id
from services.domain.instance import DEFAULT_STEP_CONFIG, DEFAULT_WAIT_TIMEOUT

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STEP = timedelta(seconds=1)

Apply = Callable[[dict[str, Any] | None, ev.LifecycleEvent], dict[str, Any] | None]


def fold(apply: Apply, events: Iterable[ev.LifecycleEvent]) -> dict[str, Any]:
    doc: dict[str, Any] | None = None
    for event in events:
        doc = apply(doc, event)
    assert doc is not None
    return doc


class Story:
    """The events of one fresh instance (account, workflow and instance ids unique per story)."""

    def __init__(self, *, workflow_version: int = 1, **metadata: Any) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.account_id = f"acc-{suffix}"
        self.workflow_name = f"wf-{suffix}"
        self.instance_id = f"i-{suffix}"
        self.workflow_id = str(uuid.uuid4())
        self.version_id = str(uuid.uuid4())
        self.workflow_version = workflow_version
        self.metadata = metadata
        self.version = 0

    @property
    def global_id(self) -> str:
        return str(instance_global_id(self.account_id, self.workflow_name, self.instance_id))

    def at(self, version: int) -> datetime:
        """When the event of this version happened."""
        return T0 + STEP * version

    def _common(self) -> dict[str, Any]:
        self.version += 1
        return {
            "event_id": str(uuid.uuid4()),
            "account_id": self.account_id,
            "workflow_name": self.workflow_name,
            "instance_id": self.instance_id,
            "version": self.version,
            "occurred_at": self.at(self.version),
            "command_id": str(uuid.uuid4()),
        }

    def created(
        self, params: Any = None, *, schedule: dict[str, Any] | None = None
    ) -> ev.InstanceCreated:
        return ev.InstanceCreated(
            **self._common(),
            global_id=self.global_id,
            workflow_id=self.workflow_id,
            version_id=self.version_id,
            workflow_version=self.workflow_version,
            params=params,
            trigger_source="cron" if schedule else "api",
            schedule=schedule,
            metadata=self.metadata,
        )

    def started(self) -> ev.RunStarted:
        return ev.RunStarted(**self._common())

    def step_began(
        self,
        name: str,
        step_type: str = "step",
        *,
        config: dict[str, Any] | None = None,
        sleep_ms: int = 60_000,
        wait_timeout: int | str | None = None,
    ) -> ev.StepBegan:
        """As the aggregate records it: a step has a config, a sleep its length, a wait its
        event type and timeout (the defaults where the command gave none)."""
        return ev.StepBegan(
            **self._common(),
            name=name,
            step_type=step_type,
            count=1,
            config=(config or DEFAULT_STEP_CONFIG) if step_type == "step" else None,
            sleep_ms=sleep_ms if step_type == "sleep" else None,
            event_type="approval" if step_type == "waitForEvent" else None,
            wait_timeout=(wait_timeout or DEFAULT_WAIT_TIMEOUT)
            if step_type == "waitForEvent"
            else None,
        )

    def attempt_began(self, name: str, attempt: int = 1) -> ev.AttemptBegan:
        return ev.AttemptBegan(**self._common(), name=name, attempt=attempt)

    def attempt_ended(
        self,
        name: str,
        *,
        success: bool = True,
        retry_delay_ms: int | None = None,
        attempt: int = 1,
        output: Any = None,
    ) -> ev.AttemptEnded:
        error = None if success else ev.ErrorData(name="Error", message="attempt failed")
        return ev.AttemptEnded(
            **self._common(),
            name=name,
            attempt=attempt,
            success=success,
            output=output if success else None,
            error=error,
            retry_delay_ms=retry_delay_ms,
        )

    def backoff_ended(self, name: str) -> ev.BackoffEnded:
        return ev.BackoffEnded(**self._common(), name=name)

    def step_ended(
        self, name: str, step_type: str = "step", *, error: str | None = None, output: Any = None
    ) -> ev.StepEnded:
        return ev.StepEnded(
            **self._common(),
            name=name,
            step_type=step_type,
            success=error is None,
            output=output if error is None else None,
            error=None if error is None else ev.ErrorData(name="Error", message=error),
        )

    def event_received(self, payload: Any = None) -> ev.EventReceived:
        return ev.EventReceived(**self._common(), event_type="approval", payload=payload)

    def event_delivered(self, payload: Any = None) -> ev.EventDelivered:
        return ev.EventDelivered(**self._common(), event_type="approval", payload=payload)

    def pause_requested(self) -> ev.PauseRequested:
        return ev.PauseRequested(**self._common())

    def paused(self, resume_to: str = "running") -> ev.InstancePaused:
        return ev.InstancePaused(**self._common(), resume_to=resume_to)

    def resumed(self, status: str = "running") -> ev.InstanceResumed:
        return ev.InstanceResumed(**self._common(), status=status)

    def terminated(self, *, rollback: bool = False) -> ev.InstanceTerminated:
        return ev.InstanceTerminated(**self._common(), rollback=rollback)

    def rollback_ended(self, *, error: str | None = None) -> ev.RollbackEnded:
        return ev.RollbackEnded(
            **self._common(),
            outcome="complete" if error is None else "failed",
            error=None if error is None else ev.ErrorData(name="Error", message=error),
        )

    def pause_acknowledged(self) -> ev.PauseAcknowledged:
        return ev.PauseAcknowledged(**self._common())

    def restarted(self, run: int = 2, kept_steps: int = 0) -> ev.InstanceRestarted:
        return ev.InstanceRestarted(**self._common(), run=run, kept_steps=kept_steps)

    def completed(
        self, output: Any = None, outcome: str | None = None, reasons: list[str] | None = None
    ) -> ev.RunCompleted:
        return ev.RunCompleted(
            **self._common(), output=output, outcome=outcome, reasons=reasons or []
        )

    def failed(
        self, message: str = "boom", *, name: str = "Error", timed_out: bool = False
    ) -> ev.RunFailed:
        return ev.RunFailed(
            **self._common(), error=ev.ErrorData(name=name, message=message), timed_out=timed_out
        )

    def deleted(self, reason: str = "api") -> ev.InstanceDeleted:
        return ev.InstanceDeleted(**self._common(), reason=reason)

    def to_status(self, status: str) -> list[ev.LifecycleEvent]:
        """Events that leave a fresh instance in the given domain status (one of the nine)."""
        live: list[ev.LifecycleEvent] = [self.created({"n": 1}), self.started()]
        journeys: dict[str, Callable[[], list[ev.LifecycleEvent]]] = {
            "queued": lambda: live[:1],
            "running": lambda: live,
            "waiting": lambda: [*live, self.step_began("nap", "sleep")],
            "waitingForPause": lambda: [
                *live,
                self.step_began("s"),
                self.attempt_began("s"),
                self.pause_requested(),
            ],
            "paused": lambda: [*live, self.paused()],
            "rollingBack": lambda: [*live, self.terminated(rollback=True)],
            "complete": lambda: [*live, self.completed({"ok": True})],
            "errored": lambda: [*live, self.failed()],
            "terminated": lambda: [*live, self.terminated()],
        }
        return journeys[status]()
