"""Decoding raw command records: every record ends as a command, a reply, a dead letter, or both.

Pure: no I/O. A record that carries a `command_id` always gets a reply; one that cannot be
decoded into a known command (not JSON, no `command_id`, unknown `type`) also goes to the
dead-letter topic with the original bytes and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.commands import COMMAND_TYPE_NAMES, AnyCommand
from contracts.replies import Reply, ReplyError

_decoder = msgspec.json.Decoder(AnyCommand)


@dataclass
class Record:
    """What the commands role needs of one Kafka record."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass
class DeadLetter:
    record: Record
    reason: str


@dataclass
class Intake:
    commands: list[tuple[AnyCommand, bytes | None]] = field(default_factory=list)
    replies: list[tuple[Reply, bytes | None]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _rejected(command_id: str, code: str, message: str) -> Reply:
    return Reply(
        command_id=command_id, outcome="rejected", error=ReplyError(code=code, message=message)
    )


def decode_records(records: list[Record]) -> Intake:
    intake = Intake()
    for record in records:
        try:
            intake.commands.append((_decoder.decode(record.value or b""), record.key))
        except msgspec.DecodeError as error:
            _classify(intake, record, error)
    return intake


def _classify(intake: Intake, record: Record, error: msgspec.DecodeError) -> None:
    try:
        loose: Any = msgspec.json.decode(record.value or b"")
    except msgspec.DecodeError:
        intake.dead_letters.append(DeadLetter(record, f"not JSON: {error}"))
        return
    if not isinstance(loose, dict):
        intake.dead_letters.append(DeadLetter(record, "not a JSON object"))
        return
    command_id = loose.get("command_id")
    if not isinstance(command_id, str) or not command_id:
        intake.dead_letters.append(DeadLetter(record, "no command_id"))
        return
    kind = loose.get("type")
    if kind not in COMMAND_TYPE_NAMES:
        known = ", ".join(sorted(map(str, COMMAND_TYPE_NAMES)))
        reason = f"unknown command type {kind!r}; known: {known}"
        intake.dead_letters.append(DeadLetter(record, reason))
        intake.replies.append((_rejected(command_id, "command.unknown_type", reason), record.key))
        return
    intake.replies.append((_rejected(command_id, "command.invalid", str(error)), record.key))
