"""The commands role's pure part: a decided batch becomes replies and dead letters."""

from __future__ import annotations

import json
import uuid

import msgspec

from contracts import topics as t
from contracts.replies import Reply
from services.roles.commands import answer
from services.roles.intake import Record, decode_records

TOPICS = t.Topics(prefix=f"p{uuid.uuid4().hex[:6]}")


def _record(value: bytes, key: bytes, offset: int) -> Record:
    return Record(key=key, value=value, topic=TOPICS.commands, partition=1, offset=offset)


def _create(command_id: str) -> bytes:
    return json.dumps(
        {
            "type": "CreateInstance",
            "command_id": command_id,
            "account_id": "acc",
            "workflow_name": "wf",
            "instance_id": f"i-{command_id[:8]}",
        }
    ).encode()


def test_each_decided_command_is_answered_under_its_own_key_in_order_then_the_refusals() -> None:
    first, second, bad = (str(uuid.uuid4()) for _ in range(3))
    intake = decode_records(
        [
            _record(_create(first), b"k1", 1),
            _record(b'{"type": "Nope", "command_id": "%s"}' % bad.encode(), b"k2", 2),
            _record(_create(second), b"k3", 3),
        ]
    )
    decided = [
        Reply(command_id=first, outcome="accepted", version=1),
        Reply(command_id=second, outcome="duplicate", version=1),
    ]

    answers = answer(intake, decided, TOPICS)

    assert [(r.command_id, r.outcome, k) for r, k in answers.replies] == [
        (first, "accepted", b"k1"),
        (second, "duplicate", b"k3"),
        (bad, "rejected", b"k2"),
    ]
    replies = [m for m in answers.messages if m.topic == TOPICS.replies]
    decoded = [msgspec.json.decode(m.value, type=Reply) for m in replies]
    assert [(r.command_id, m.key) for r, m in zip(decoded, replies, strict=True)] == [
        (first, b"k1"),
        (second, b"k3"),
        (bad, b"k2"),
    ]


def test_a_dead_letter_carries_the_original_bytes_and_where_they_came_from() -> None:
    raw = b"not json at all"
    intake = decode_records([_record(raw, b"key", 42)])

    answers = answer(intake, [], TOPICS)

    [dead] = [m for m in answers.messages if m.topic == TOPICS.dead_letters]
    headers = dict(dead.headers)
    assert dead.value == raw and dead.key == b"key"
    assert headers[t.DLQ_SOURCE_TOPIC] == TOPICS.commands.encode()
    assert headers[t.DLQ_SOURCE_OFFSET] == b"42" and headers[t.DLQ_SOURCE_PARTITION] == b"1"
    assert b"not JSON" in headers[t.DLQ_REASON]
    assert answers.replies == []  # no command_id could be read: nobody to answer
