"""Every raw record ends as a command, a rejected reply, a dead letter, or reply + dead letter."""

from __future__ import annotations

import json
import uuid

from contracts.commands import CreateInstance
from services.roles.intake import Record, decode_records


def _record(value: bytes, offset: int = 7) -> Record:
    return Record(key=b"k", value=value, topic="p.commands", partition=2, offset=offset)


def _command(**fields: object) -> bytes:
    body = {
        "type": "CreateInstance",
        "command_id": str(uuid.uuid4()),
        "account_id": "acc",
        "workflow_name": "wf",
        "instance_id": "i-1",
        **fields,
    }
    return json.dumps(body).encode()


def test_valid_command_is_decoded_with_its_key() -> None:
    intake = decode_records([_record(_command(params={"a": 1}))])
    [(command, key)] = intake.commands
    assert isinstance(command, CreateInstance) and command.params == {"a": 1} and key == b"k"
    assert not intake.replies and not intake.dead_letters


def test_bytes_that_are_not_json_are_dead_lettered_with_the_reason_and_position() -> None:
    intake = decode_records([_record(b"\x00\xff nope", offset=42)])
    [dead] = intake.dead_letters
    assert dead.reason.startswith("not JSON") and dead.record.offset == 42
    assert dead.record.value == b"\x00\xff nope"
    assert not intake.replies and not intake.commands


def test_json_without_command_id_is_dead_lettered_without_a_reply() -> None:
    intake = decode_records([_record(b'{"type": "CreateInstance"}'), _record(b"[1, 2]")])
    assert [d.reason for d in intake.dead_letters] == ["no command_id", "not a JSON object"]
    assert not intake.replies


def test_unknown_type_gets_a_rejected_reply_and_a_dead_letter() -> None:
    command_id = str(uuid.uuid4())
    intake = decode_records(
        [_record(json.dumps({"type": "Nope", "command_id": command_id}).encode())]
    )
    [(reply, _)] = intake.replies
    assert reply.command_id == command_id and reply.outcome == "rejected"
    assert reply.error is not None and reply.error.code == "command.unknown_type"
    assert len(intake.dead_letters) == 1


def test_invalid_field_is_rejected_with_the_field_named_and_not_dead_lettered() -> None:
    intake = decode_records([_record(_command(instance_id="has spaces"))])
    [(reply, _)] = intake.replies
    assert reply.error is not None and reply.error.code == "command.invalid"
    assert "instance_id" in reply.error.message
    assert not intake.dead_letters and not intake.commands


def test_one_bad_record_does_not_spoil_the_good_ones_around_it() -> None:
    intake = decode_records(
        [_record(_command()), _record(b"oops"), _record(_command(instance_id="i-2"))]
    )
    assert len(intake.commands) == 2 and len(intake.dead_letters) == 1
