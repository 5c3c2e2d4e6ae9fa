"""The workflow of the bench's workflow phase: one step that succeeds at its first attempt,
its output the run's (a one-step run: CreateInstance, then the worker's one RecordStep)."""

from __future__ import annotations

from typing import Any

from flowledger.workflows import WorkflowEntrypoint, WorkflowStep


class OneStep(WorkflowEntrypoint):
    async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
        @step.do("work")
        async def work() -> dict[str, Any]:
            return {"order": (event["payload"] or {}).get("order")}

        return await work()
