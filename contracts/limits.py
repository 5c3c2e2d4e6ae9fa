"""Documented limits (Cloudflare Workflows), shared by the contract and the service."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

NAME_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9_-]*$"
# Step names may hold anything printable: no C0/C1 control characters.
STEP_NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"

MAX_JSON_BYTES = 1024 * 1024  # params, event payloads and step outputs: 1 MiB each
MAX_BATCH = 100
MAX_TAGS = 30

AccountId = Annotated[str, Meta(min_length=1, max_length=64, pattern=NAME_PATTERN)]
WorkflowName = Annotated[str, Meta(min_length=1, max_length=64, pattern=NAME_PATTERN)]
InstanceId = Annotated[str, Meta(min_length=1, max_length=100, pattern=NAME_PATTERN)]
EventType = Annotated[str, Meta(min_length=1, max_length=100, pattern=NAME_PATTERN)]
StepName = Annotated[str, Meta(min_length=1, max_length=256, pattern=STEP_NAME_PATTERN)]
CommandId = Annotated[
    str,
    Meta(
        pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
        description="A UUID chosen by the producer; the idempotency key of the command.",
    ),
]
Tag = Annotated[str, Meta(min_length=1, max_length=128)]
