"""Decoding raw command records: every record ends as a command, a reply, a dead letter, or both.

Pure: no I/O, and it never raises, whatever the bytes: one record that fails would fail its
whole batch, which Kafka would redeliver forever. A record that carries a readable
`command_id` gets a rejected reply; one that cannot be decoded into a known command also goes
to the dead-letter topic with the original bytes and a bounded reason. Sizes and nesting are
checked on the raw bytes first, so that nothing large or deep reaches the decoder.

Codes: `command.too_large`, `command.too_deep`, `command.not_json` (not JSON, not UTF-8, not
an object), `command.unknown_type`, `command.invalid` (a known type with an invalid field:
answered, not dead-lettered) and `command.undecodable` (anything else the decoder raised).
"""

from __future__ import annotations

import itertools
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.commands import COMMAND_TYPE_NAMES, AnyCommand
from contracts.limits import (
    COMMANDS_TOPIC_MAX_MESSAGE_BYTES,
    MAX_COMMAND_BYTES,
    MAX_COMMAND_DEPTH,
    MAX_REASON_CHARS,
    bounded,
)
from contracts.replies import Reply, ReplyError
from contracts.text import NUL_MESSAGE, json_has_nul

_decoder = msgspec.json.Decoder(AnyCommand)

# A command_id is a UUID; anything much longer is not echoed into a reply.
_MAX_COMMAND_ID_CHARS = 128
# Unknown type names are echoed shorter, so that the list of known ones still fits.
_MAX_TYPE_ECHO_CHARS = 200


class _Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """The two fields needed to answer a record that is not a valid command. Decoding into it
    skips every other field without building it."""

    command_id: Any = None
    type: Any = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)


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

    def key_and_value(self) -> tuple[bytes | None, bytes]:
        """The original key and bytes, cut only if the commands topic allowed a record larger
        than Flowledger declares for it, so that the dead letter still fits its own topic."""
        key, value = self.record.key, self.record.value or b""
        if key is not None and len(key) > COMMANDS_TOPIC_MAX_MESSAGE_BYTES:
            key = None
        room = COMMANDS_TOPIC_MAX_MESSAGE_BYTES - len(key or b"")
        return key, value[:room]


@dataclass
class Intake:
    commands: list[tuple[AnyCommand, bytes | None]] = field(default_factory=list)
    replies: list[tuple[Reply, bytes | None]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Refused(Exception):
    """Why a record is not a command. `dead_letter` False: answering it is enough (its bytes
    are a well-formed command of a known type, only a field is wrong)."""

    def __init__(self, code: str, reason: str, *, dead_letter: bool = True) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = bounded(reason, MAX_REASON_CHARS)
        self.dead_letter = dead_letter


def decode_records(records: list[Record]) -> Intake:
    intake = Intake()
    for record in records:
        try:
            intake.commands.append((decode_command(record), record.key))
        except Refused as refused:
            _refuse(intake, record, refused)
        except Exception as error:  # noqa: BLE001 - whatever it is, it must not fail the batch
            reason = f"undecodable: {type(error).__name__}: {error}"
            _refuse(intake, record, Refused("command.undecodable", reason))
    return intake


def decode_command(record: Record) -> AnyCommand:
    """The record's command; raises Refused (or, for a decoder bug, anything else)."""
    value = record.value or b""
    size = len(value) + len(record.key or b"")
    if size > MAX_COMMAND_BYTES:
        raise Refused("command.too_large", _too_large(size, "the record is"))
    if json_depth(value) > MAX_COMMAND_DEPTH:
        raise Refused(
            "command.too_deep", f"JSON nested deeper than {MAX_COMMAND_DEPTH} levels of [ and {{"
        )
    try:
        command = _decoder.decode(value)
    except msgspec.ValidationError as error:
        raise _invalid(value, error) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise _not_json(error) from None
    # Events carry the re-encoded data, which can be longer than what was sent (1e15 is
    # 1000000000000000.0): that is what has to fit.
    encoded = msgspec.json.encode(command)
    size = len(encoded) + len(record.key or b"")
    if size > MAX_COMMAND_BYTES:
        raise Refused("command.too_large", _too_large(size, "re-encoded, the command is"))
    if json_has_nul(encoded):
        raise Refused("command.invalid", NUL_MESSAGE, dead_letter=False)
    return command


def _too_large(size: int, what: str) -> str:
    limit = MAX_COMMAND_BYTES
    return f"{what} {size} bytes; the limit is {limit} ({limit // 1024} KiB)"


def _invalid(value: bytes, error: msgspec.ValidationError) -> Refused:
    """Valid JSON, but not a valid command: which of the reasons, from its envelope."""
    envelope = _read_envelope(value)
    if envelope is None:
        return Refused("command.not_json", "not a JSON object")
    if _usable_id(envelope.command_id) is None:
        return Refused("command.invalid", "no command_id")
    if envelope.type not in COMMAND_TYPE_NAMES:
        known = ", ".join(sorted(map(str, COMMAND_TYPE_NAMES)))
        kind = bounded(repr(envelope.type), _MAX_TYPE_ECHO_CHARS)
        return Refused("command.unknown_type", f"unknown command type {kind}; known: {known}")
    return Refused("command.invalid", _field_error(error), dead_letter=False)


def _field_error(error: msgspec.ValidationError) -> str:
    """msgspec's message, whose echo of the value is cut but whose field path (at the end:
    "... - at `$.action`") is kept, as it names the field to fix."""
    text = str(error)
    head, marker, path = text.rpartition(" - at `")
    if not marker:
        return bounded(text)
    return f"{bounded(head)}{marker}{bounded(path, _MAX_TYPE_ECHO_CHARS)}"


def _not_json(error: Exception) -> Refused:
    if isinstance(error, UnicodeDecodeError):
        return Refused("command.not_json", f"not JSON: not valid UTF-8 ({error.reason})")
    return Refused("command.not_json", f"not JSON: {error}")


def _read_envelope(value: bytes) -> _Envelope | None:
    """The record's command_id and type, when it is a JSON object; None otherwise."""
    try:
        return _envelope_decoder.decode(value)
    except Exception:  # noqa: BLE001 - not an object, not JSON, too deep: nothing to read
        return None


def _read_command_id(value: bytes) -> str | None:
    """The record's command_id, if it can be echoed: by decoding the envelope or, when that
    fails (e.g. nesting too deep even to skip), from the bytes."""
    envelope = _read_envelope(value)
    if envelope is not None:
        return _usable_id(envelope.command_id)
    return _scan_command_id(value)


_COMMAND_ID_FIELD = re.compile(rb'"command_id"\s*:\s*("[^"\\]*(?:\\.[^"\\]*)*")')
_SCANNED_CANDIDATES = 8


def _scan_command_id(value: bytes) -> str | None:
    """A `"command_id": "..."` member of the top-level object: one whose prefix closes every
    string it opens (so it is not inside one) and is one level deep."""
    for found in itertools.islice(_COMMAND_ID_FIELD.finditer(value), _SCANNED_CANDIDATES):
        prefix = _STRING.sub(b"", value[: found.start()])
        opened = prefix.count(b"{") + prefix.count(b"[")
        if b'"' in prefix or opened - prefix.count(b"}") - prefix.count(b"]") != 1:
            continue
        try:
            return _usable_id(msgspec.json.decode(found.group(1), type=str))
        except Exception:  # noqa: BLE001 - not valid text: no id to echo
            return None
    return None


def _usable_id(command_id: Any) -> str | None:
    """A command_id that can be echoed in a reply: short, printable text."""
    if not isinstance(command_id, str) or not 0 < len(command_id) <= _MAX_COMMAND_ID_CHARS:
        return None
    return command_id if command_id.isprintable() else None


def _refuse(intake: Intake, record: Record, refused: Refused) -> None:
    command_id = _read_command_id(record.value or b"")
    if refused.dead_letter or command_id is None:
        intake.dead_letters.append(DeadLetter(record, refused.reason))
    if command_id is not None:
        reply = _rejected(command_id, refused.code, refused.reason)  # reasons are bounded
        intake.replies.append((reply, _reply_key(record.key)))


def _reply_key(key: bytes | None) -> bytes | None:
    """The command's key, unless it alone is larger than the commands topic should allow."""
    return None if key is not None and len(key) > COMMANDS_TOPIC_MAX_MESSAGE_BYTES else key


def _rejected(command_id: str, code: str, message: str) -> Reply:
    return Reply(
        command_id=command_id,
        outcome="rejected",
        error=ReplyError(code=code, message=message),
    )


# --- nesting, from the raw bytes --------------------------------------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
# An opener steps one level in, a closer one out: as bytes 2 and 0, less 1 at each position.
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def json_depth(value: bytes) -> int:
    """How deep [ and { nest outside strings; unclosed ones count, as a decoder would descend
    into them before finding out. Runs in C (regular expressions, accumulate, map), so it
    costs tens of milliseconds even for a whole command record of brackets."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", value))
    if not brackets:
        return 0
    reached = itertools.accumulate(brackets.translate(_STEPS))
    return max(map(operator.sub, reached, range(1, len(brackets) + 1)))
