"""Idempotency by `command_id`: the reply to every accepted command, stored with its events.

A CommandRecord is saved in the same transaction as the events the command caused, so "was this
command applied?" and "what did it change?" can never disagree, even across a crash.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

from contracts.keys import FLOWLEDGER_NAMESPACE


def command_record_id(command_id: str) -> uuid.UUID:
    return uuid.uuid5(FLOWLEDGER_NAMESPACE, "command:" + command_id.lower())


class CommandRecord(Aggregate):
    @staticmethod
    def create_id(command_id: str) -> uuid.UUID:  # type: ignore[override]
        return command_record_id(command_id)

    @event("CommandAccepted")
    def __init__(self, *, command_id: str, reply: dict[str, Any]) -> None:
        self.command_id = command_id
        self.reply = reply
