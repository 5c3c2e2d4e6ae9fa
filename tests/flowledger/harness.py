"""Workflows run against an in-memory history: the real application service and aggregate
(the arbiter) with in-memory persistence, and no Kafka, store or scheduler. A test plays the
scheduler with `tick` (time passes at once) and the users with `do`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts import commands as c
from contracts.replies import Reply
from flowledger.replay import InstanceHistory, Outcome, wake
from flowledger.workflows import WorkflowEntrypoint
from services.application.app import FlowledgerApplication
from services.infra.store_env import STORED_FORMAT
from services.worker.history import StoreHistory

ACCOUNT, WORKFLOW = "acc", "wf"


class InMemoryFlowledger:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.app = FlowledgerApplication(env={**STORED_FORMAT, **(env or {})})
        self.history = StoreHistory(self.app)
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.sent: list[c.AnyCommand] = []
        self.replies: list[Reply] = []
        assert self.do("RegisterWorkflow").outcome == "accepted"

    # --- the Progress port -----------------------------------------------------------------------

    async def send(self, command: c.AnyCommand) -> Reply:
        self.sent.append(command)
        reply = self.app.handle_one(command, self.now)
        self.replies.append(reply)
        return reply

    # --- users and the scheduler, by hand ---------------------------------------------

    def do(self, kind: str, instance: str | None = None, **fields: Any) -> Reply:
        body: dict[str, Any] = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": ACCOUNT,
            "workflow_name": WORKFLOW,
            **fields,
        }
        if instance is not None:
            body["instance_id"] = instance
        command: c.AnyCommand = msgspec.convert(body, c.AnyCommand)  # type: ignore[arg-type]
        return self.app.handle_one(command, self.now)

    def create(self, instance: str, params: Any = None) -> None:
        assert self.do("CreateInstance", instance, params=params).outcome == "accepted"

    def tick(self, instance: str, *, time_out_waits: bool = False) -> str | None:
        """What the scheduler would fire for a waiting instance, fired now (its time passed):
        a sleep's or back-off's end, and with `time_out_waits` a wait's timeout."""
        state = self.load(instance)
        if state is None or state.status != "waiting" or state.open_step is None:
            return None
        step = state.open_step
        if step.type == "sleep" or step.backing_off:
            kind = "EndSleep"
        elif step.type == "waitForEvent" and time_out_waits:
            kind = "TimeOutWait"
        else:
            return None
        assert self.do(kind, instance, name=step.name).outcome == "accepted"
        return kind

    # --- the engine -------------------------------------------------------------------

    def load(self, instance: str) -> InstanceHistory | None:
        return self.history.load_blocking(ACCOUNT, WORKFLOW, instance)

    async def wake(self, entry: WorkflowEntrypoint, instance: str) -> Outcome:
        async def load() -> InstanceHistory | None:
            return self.load(instance)

        return await wake(entry, load, self, clock=lambda: self.now)

    async def run(
        self,
        entry: WorkflowEntrypoint,
        instance: str,
        wakes: int = 50,
        *,
        time_out_waits: bool = False,
    ) -> str:
        """Wakes the instance and lets its time pass until it ends or needs someone else (an
        event, a resume); returns its status."""
        for _ in range(wakes):
            await self.wake(entry, instance)
            state = self.load(instance)
            assert state is not None
            if state.status in ("complete", "errored", "terminated", "paused"):
                return state.status
            fired = self.tick(instance, time_out_waits=time_out_waits)
            if fired is None and state.status != "running":
                return state.status
        raise AssertionError(f"{instance} still {state.status} after {wakes} wakes")

    def instance(self, instance: str) -> Any:
        return self.app.get_instance(ACCOUNT, WORKFLOW, instance)

    def sent_types(self) -> list[str]:
        return [type(command).__name__ for command in self.sent]
