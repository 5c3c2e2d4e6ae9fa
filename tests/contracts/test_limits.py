"""The size limits fit together: whatever Flowledger accepts, what it produces from it fits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from contracts.commands import CreateInstance
from contracts.events import InstanceCreated
from contracts.limits import (
    COMMANDS_TOPIC_MAX_MESSAGE_BYTES,
    MAX_COMMAND_BYTES,
    MAX_JSON_BYTES,
    MAX_MESSAGE_BYTES,
    bounded,
)
from contracts.topics import Topics


def test_topics_declare_room_for_a_dead_letter_of_any_command_record() -> None:
    configs = Topics("p").configs()
    assert configs["p.commands"] == {"max.message.bytes": str(COMMANDS_TOPIC_MAX_MESSAGE_BYTES)}
    for topic in ("p.replies", "p.events", "p.commands.dlq"):
        assert int(configs[topic]["max.message.bytes"]) == MAX_MESSAGE_BYTES
    assert MAX_JSON_BYTES < MAX_COMMAND_BYTES < COMMANDS_TOPIC_MAX_MESSAGE_BYTES
    assert MAX_MESSAGE_BYTES - COMMANDS_TOPIC_MAX_MESSAGE_BYTES >= 16 * 1024  # dead-letter headers


def test_the_event_of_the_largest_command_fits_the_events_topic() -> None:
    # Every field the event copies from the command at its longest, and params filling the rest.
    longest = {"instance_id": "i" * 100, "account_id": "a" * 64, "workflow_name": "w" * 64}
    command = CreateInstance(command_id=str(uuid.uuid4()), params="", **longest)
    room = MAX_COMMAND_BYTES - len(msgspec.json.encode(command))
    command = msgspec.structs.replace(command, params="p" * room)
    assert len(msgspec.json.encode(command)) == MAX_COMMAND_BYTES
    event = InstanceCreated(
        event_id=str(uuid.uuid4()),
        version=1,
        occurred_at=datetime.now(UTC),
        command_id=command.command_id,
        global_id=str(uuid.uuid4()),
        workflow_id=str(uuid.uuid4()),
        version_id=str(uuid.uuid4()),
        params=command.params,
        metadata={"tags": [], "mode": "async", "triggered_by": "user"},
        **longest,
    )
    key = f"{'a' * 64}/{'w' * 64}/{'i' * 100}".encode()
    assert len(msgspec.json.encode(event)) + len(key) < MAX_MESSAGE_BYTES


def test_bounded_text_is_cut_and_says_how_much_was_cut() -> None:
    assert bounded("short") == "short"
    cut = bounded("x" * 5000, 10)
    assert cut.startswith("x" * 10) and cut.endswith("[4990 more characters]")
