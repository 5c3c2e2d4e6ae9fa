"""Flowledger's public Python package: the workflow SDK users import.

`flowledger.workflows` offers Cloudflare's Python Workflows API (`WorkflowEntrypoint`,
`step.do`, `step.sleep`, `step.sleep_until`, `step.wait_for_event`, `NonRetryableError`);
`flowledger worker MODULE:CLASS --workflow NAME` runs such a class against a Flowledger
deployment (README "Workers"). This package never imports the service (`services/`): the
worker's Kafka and store adapters live there and drive the engine in `flowledger.replay`.
"""

from flowledger.workflows import NonRetryableError, StepError, WorkflowEntrypoint, WorkflowStep

__all__ = ["NonRetryableError", "StepError", "WorkflowEntrypoint", "WorkflowStep"]
