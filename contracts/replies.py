"""The answer to every command, on `{prefix}.replies`, keyed like the command."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct

Outcome = Literal["accepted", "duplicate", "rejected"]


class ReplyError(Struct, kw_only=True):
    code: str
    message: str


class BulkItem(Struct, kw_only=True, omit_defaults=True):
    instance_id: str
    status: str
    version: int
    skipped: bool = False


class Reply(Struct, kw_only=True, omit_defaults=True):
    command_id: str
    outcome: Outcome
    error: ReplyError | None = None
    account_id: str | None = None
    workflow_name: str | None = None
    instance_id: str | None = None
    status: str | None = None
    version: int | None = None
    workflow_id: str | None = None
    version_id: str | None = None
    instances: list[BulkItem] | None = None

    def as_duplicate(self) -> Reply:
        """The same answer again, for a redelivered command."""
        return msgspec.structs.replace(self, outcome="duplicate")
