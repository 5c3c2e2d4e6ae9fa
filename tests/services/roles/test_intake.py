"""Every raw record ends as a command, a rejected reply, a dead letter, or reply + dead letter."""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest

from contracts.commands import CreateInstance
from contracts.limits import (
    COMMANDS_TOPIC_MAX_MESSAGE_BYTES,
    MAX_COMMAND_BYTES,
    MAX_COMMAND_DEPTH,
    MAX_ECHO_CHARS,
)
from services.roles import intake as intake_module
from services.roles.intake import Intake, Record, decode_records, json_depth


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


# --- poison records: each ends as a bounded dead letter or reply, never as an exception -------

# A reply or reason that echoes input stays near MAX_ECHO_CHARS; this leaves room for the text
# around the echo, and is far below any Kafka message limit.
BOUNDED = 4 * MAX_ECHO_CHARS


def _assert_bounded(intake: Intake) -> None:
    for dead in intake.dead_letters:
        assert len(dead.reason.encode()) <= BOUNDED
        key, value = dead.key_and_value()
        assert len(key or b"") + len(value) <= COMMANDS_TOPIC_MAX_MESSAGE_BYTES
    for reply, _ in intake.replies:
        assert len(msgspec.json.encode(reply)) <= BOUNDED


def _code(intake: Intake) -> str:
    [(reply, _)] = intake.replies
    assert reply.outcome == "rejected" and reply.error is not None
    return reply.error.code


def _body(command_id: str, **fields: object) -> dict[str, object]:
    return {
        "type": "CreateInstance",
        "command_id": command_id,
        "account_id": "acc",
        "workflow_name": "wf",
        **fields,
    }


def test_params_nested_ten_thousand_deep_is_dead_lettered_and_answered_too_deep() -> None:
    command_id = str(uuid.uuid4())
    head = json.dumps(_body(command_id)).encode()[:-1]
    value = head + b', "params": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    intake = decode_records([_record(value)])
    assert _code(intake) == "command.too_deep" and len(intake.dead_letters) == 1
    assert intake.dead_letters[0].record.value == value
    _assert_bounded(intake)


def test_nesting_too_deep_to_read_even_the_command_id_is_dead_lettered_alone() -> None:
    value = b"[" * 20_000 + b"]" * 20_000
    intake = decode_records([_record(value)])
    [dead] = intake.dead_letters
    assert "nested deeper" in dead.reason and not intake.replies and not intake.commands


def test_nesting_up_to_the_limit_is_a_command_and_brackets_in_strings_do_not_count() -> None:
    params: object = "[[[[{{{{" * 100
    for _ in range(MAX_COMMAND_DEPTH - 1):  # the command object itself is the first level
        params = [params]
    intake = decode_records([_record(_command(params=params))])
    assert len(intake.commands) == 1 and not intake.replies and not intake.dead_letters


def test_depth_counts_unclosed_brackets_but_not_brackets_in_strings() -> None:
    assert json_depth(b"[" * (MAX_COMMAND_DEPTH + 1)) == MAX_COMMAND_DEPTH + 1
    assert json_depth(b'{"a": [[], {}], "b": "]]]", "c": "\\"[[["}') == 3
    assert json_depth(b'"[[[" 1') == 0


def test_bytes_that_are_not_utf8_inside_a_string_are_answered_not_json() -> None:
    command_id = str(uuid.uuid4())
    value = json.dumps(_body(command_id, instance_id="XX")).encode().replace(b"XX", b"\xff\xfe")
    intake = decode_records([_record(value)])
    assert _code(intake) == "command.not_json" and len(intake.dead_letters) == 1
    assert "UTF-8" in intake.dead_letters[0].reason
    _assert_bounded(intake)


def test_a_type_of_700k_characters_is_answered_and_dead_lettered_with_bounded_reasons() -> None:
    command_id = str(uuid.uuid4())
    value = json.dumps({"type": "T" * 700_000, "command_id": command_id}).encode()
    intake = decode_records([_record(value)])
    assert _code(intake) == "command.unknown_type" and len(intake.dead_letters) == 1
    assert "known: " in intake.dead_letters[0].reason  # the list of types survives the cut
    _assert_bounded(intake)


def test_an_action_of_400k_quotes_is_answered_invalid_with_the_field_still_named() -> None:
    command_id = str(uuid.uuid4())
    value = json.dumps(
        {
            "type": "ChangeStatus",
            "command_id": command_id,
            "account_id": "acc",
            "workflow_name": "wf",
            "instance_id": "i-1",
            "action": '"' * 400_000,
        }
    ).encode()
    intake = decode_records([_record(value)])
    assert _code(intake) == "command.invalid" and not intake.dead_letters
    [(reply, _)] = intake.replies
    assert reply.error is not None and reply.error.message.endswith("`$.action`")
    _assert_bounded(intake)


def test_a_record_larger_than_the_command_limit_is_answered_too_large() -> None:
    command_id = str(uuid.uuid4())
    value = json.dumps(_body(command_id, params="x" * 1_048_150)).encode()
    intake = decode_records([_record(value)])
    assert _code(intake) == "command.too_large" and len(intake.dead_letters) == 1
    assert intake.dead_letters[0].key_and_value() == (b"k", value)
    _assert_bounded(intake)


def test_a_command_that_grows_when_re_encoded_past_the_limit_is_answered_too_large() -> None:
    # "1e15" is 4 bytes as sent and 18 as the event will carry it.
    count = MAX_COMMAND_BYTES // 8
    value = json.dumps(_body(str(uuid.uuid4()))).encode()[:-1]
    value += b', "params": [' + b",".join([b"1e15"] * count) + b"]}"
    assert len(value) < MAX_COMMAND_BYTES
    intake = decode_records([_record(value)])
    assert _code(intake) == "command.too_large" and not intake.commands


def test_a_command_id_too_long_to_echo_gets_a_dead_letter_and_no_reply() -> None:
    intake = decode_records(
        [_record(json.dumps({"type": "Nope", "command_id": "c" * 5000}).encode())]
    )
    assert [d.reason for d in intake.dead_letters] == ["no command_id"] and not intake.replies


def test_a_dead_letter_of_a_record_beyond_the_topic_limit_is_cut_to_fit() -> None:
    value = b"x" * (COMMANDS_TOPIC_MAX_MESSAGE_BYTES + 10)
    intake = decode_records([_record(value)])
    [dead] = intake.dead_letters
    key, kept = dead.key_and_value()
    assert key == b"k" and value.startswith(kept)
    _assert_bounded(intake)


def test_whatever_the_decoder_raises_ends_as_a_dead_letter_and_a_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken:
        def decode(self, value: bytes) -> object:
            raise MemoryError("x" * 100_000)

    monkeypatch.setattr(intake_module, "_decoder", Broken())
    command_id = str(uuid.uuid4())
    intake = decode_records([_record(json.dumps(_body(command_id)).encode())])
    assert _code(intake) == "command.undecodable" and len(intake.dead_letters) == 1
    _assert_bounded(intake)


def test_poison_records_do_not_spoil_the_batch_around_them() -> None:
    poison = [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"command_id": "\xff\xfe"}',
        json.dumps({"type": "T" * 700_000, "command_id": str(uuid.uuid4())}).encode(),
        b"x" * 1_000_000,
    ]
    records = [_record(_command())]
    records += [_record(value) for value in poison]
    records += [_record(_command(instance_id="i-2"))]
    intake = decode_records(records)
    assert len(intake.commands) == 2 and len(intake.dead_letters) == len(poison)
    _assert_bounded(intake)


@pytest.mark.parametrize("params", [{"x": "a\x00b"}, {"k\x00": 1}, [["\x00"]]])
def test_a_nul_character_in_any_text_is_answered_invalid_and_not_dead_lettered(
    params: object,
) -> None:
    intake = decode_records([_record(_command(params=params))])

    assert not intake.commands and not intake.dead_letters
    [(reply, _)] = intake.replies
    assert reply.outcome == "rejected" and reply.error is not None
    assert reply.error.code == "command.invalid" and "NUL" in reply.error.message


def test_a_backslash_followed_by_u0000_as_text_is_a_command() -> None:
    intake = decode_records([_record(_command(params={"x": "\\u0000"}))])

    [(command, _)] = intake.commands
    assert isinstance(command, CreateInstance) and command.params == {"x": "\\u0000"}
