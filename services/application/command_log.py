"""Idempotency by `command_id`: the reply to every accepted command, stored with its events.

A CommandRecord is saved in the same transaction as the events the command caused, so "was this
command applied?" and "what did it change?" can never disagree, even across a crash. It also
keeps a digest of the command, so that a command_id reused for another command is told apart
from a redelivery and never answered with someone else's reply.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import msgspec
from eventsourcing.domain import Aggregate, event

from contracts.commands import AnyCommand
from contracts.keys import FLOWLEDGER_NAMESPACE


def command_record_id(command_id: str) -> uuid.UUID:
    return uuid.uuid5(FLOWLEDGER_NAMESPACE, "command:" + command_id.lower())


def command_digest(command: AnyCommand) -> str:
    """sha256 of the command's canonical JSON. Sorted keys and defaults filled in by decoding,
    so the same command sent with its fields in another order is still the same command; the
    id is lowercased as in `command_record_id`."""
    same_id = msgspec.structs.replace(command, command_id=command.command_id.lower())
    return hashlib.sha256(msgspec.json.encode(same_id, order="sorted")).hexdigest()


class CommandRecord(Aggregate):
    @staticmethod
    def create_id(command_id: str) -> uuid.UUID:  # type: ignore[override]
        return command_record_id(command_id)

    @event("CommandAccepted")
    def __init__(
        self, *, command_id: str, reply: dict[str, Any], digest: str | None = None
    ) -> None:
        self.command_id = command_id
        self.reply = reply
        # None in records stored before digests were kept: they match any command.
        self.digest = digest
