from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from contracts.commands import COMMAND_TYPE_NAMES, AnyCommand
from contracts.events import EVENT_TYPES, AnyEvent
from contracts.keys import (
    instance_global_id,
    instance_key,
    is_minted_shape,
    kafka_key,
    minted_instance_id,
)
from contracts.keys import raw_command_key as command_key


def test_global_id_is_stable_and_distinct_per_instance_key() -> None:
    suffix = uuid.uuid4().hex
    a = instance_global_id("acc", "wf", f"i-{suffix}")
    assert a == instance_global_id("acc", "wf", f"i-{suffix}")
    assert a != instance_global_id("acc", "wf2", f"i-{suffix}")
    assert instance_key("acc", "wf", "i") == "acc/wf/i"


def test_minted_id_is_reserved_shape_and_derived_from_the_command() -> None:
    command_id = str(uuid.uuid4())
    minted = minted_instance_id(command_id)
    assert minted == minted_instance_id(command_id)
    assert minted.startswith("cf_") and len(minted) == 67
    assert all(ch in "0123456789abcdef" for ch in minted[3:])


def test_only_the_exact_minted_shape_counts_as_minted() -> None:
    assert is_minted_shape(minted_instance_id(str(uuid.uuid4())))
    minted = minted_instance_id(str(uuid.uuid4()))
    for near_miss in (minted.upper(), minted[:-1], minted + "0", "cf_order-42", "x" + minted):
        assert not is_minted_shape(near_miss), near_miss


# --- kafka_key: the partitioning of every command and event, as README "Producers" states ---

ACCOUNT, WORKFLOW, INSTANCE = "acc", "wf", "order-42"
COMMAND_ID = "0b7c1a52-6a43-4b2e-9f7e-0f1e7d6c2b11"
BY_INSTANCE, BY_WORKFLOW = f"{ACCOUNT}/{WORKFLOW}/{INSTANCE}", f"{ACCOUNT}/{WORKFLOW}"

ERROR = {"message": "boom"}
WORKFLOW_EVENTS = {"WorkflowRegistered", "WorkflowVersionDeployed"}
# Each command type: its own required fields, and the key it has always been published with.
COMMANDS: dict[str, tuple[dict[str, Any], str]] = {
    "RegisterWorkflow": ({}, BY_WORKFLOW),
    "CreateInstance": ({"instance_id": INSTANCE}, BY_INSTANCE),
    "CreateInstances": ({"instances": [{"instance_id": INSTANCE}]}, BY_WORKFLOW),
    "ChangeStatus": ({"instance_id": INSTANCE, "action": "pause"}, BY_INSTANCE),
    "SendEvent": ({"instance_id": INSTANCE, "event_type": "approved"}, BY_INSTANCE),
    "StartRun": ({"instance_id": INSTANCE}, BY_INSTANCE),
    "BeginStep": ({"instance_id": INSTANCE, "name": "charge"}, BY_INSTANCE),
    "BeginAttempt": ({"instance_id": INSTANCE, "name": "charge"}, BY_INSTANCE),
    "EndAttempt": ({"instance_id": INSTANCE, "name": "charge", "success": True}, BY_INSTANCE),
    "EndStep": ({"instance_id": INSTANCE, "name": "charge"}, BY_INSTANCE),
    "RecordStep": ({"instance_id": INSTANCE, "name": "charge"}, BY_INSTANCE),
    "DeleteInstance": ({"instance_id": INSTANCE}, BY_INSTANCE),
    "EndSleep": ({"instance_id": INSTANCE}, BY_INSTANCE),
    "TimeOutWait": ({"instance_id": INSTANCE, "name": "wait"}, BY_INSTANCE),
    "TimeOutAttempt": ({"instance_id": INSTANCE, "name": "charge", "attempt": 1}, BY_INSTANCE),
    "TimeOutInstance": ({"instance_id": INSTANCE}, BY_INSTANCE),
    "AcknowledgePause": ({"instance_id": INSTANCE}, BY_INSTANCE),
    "CompleteRun": ({"instance_id": INSTANCE}, BY_INSTANCE),
    "FailRun": ({"instance_id": INSTANCE, "error": ERROR}, BY_INSTANCE),
    "EndRollback": ({"instance_id": INSTANCE, "outcome": "complete"}, BY_INSTANCE),
}
# Each event type: its own required fields, and the key it has always been published with.
EVENTS: dict[str, tuple[dict[str, Any], str]] = {
    "WorkflowRegistered": ({"workflow_id": "w", "version_id": "v"}, BY_WORKFLOW),
    "WorkflowVersionDeployed": ({"workflow_id": "w", "version_id": "v"}, BY_WORKFLOW),
    "InstanceCreated": ({"global_id": "g", "workflow_id": "w", "version_id": "v"}, BY_INSTANCE),
    "RunStarted": ({}, BY_INSTANCE),
    "StepBegan": ({"name": "s", "step_type": "step", "count": 1}, BY_INSTANCE),
    "AttemptBegan": ({"name": "s", "attempt": 1}, BY_INSTANCE),
    "AttemptEnded": ({"name": "s", "attempt": 1, "success": True}, BY_INSTANCE),
    "StepEnded": ({"name": "s", "step_type": "step", "success": True}, BY_INSTANCE),
    "BackoffEnded": ({"name": "s"}, BY_INSTANCE),
    "PauseRequested": ({}, BY_INSTANCE),
    "PauseAcknowledged": ({}, BY_INSTANCE),
    "InstancePaused": ({"resume_to": "running"}, BY_INSTANCE),
    "InstanceResumed": ({"status": "running"}, BY_INSTANCE),
    "InstanceTerminated": ({"rollback": False}, BY_INSTANCE),
    "RollbackEnded": ({"outcome": "complete"}, BY_INSTANCE),
    "InstanceRestarted": ({"run": 2, "kept_steps": 0}, BY_INSTANCE),
    "EventReceived": ({"event_type": "approved"}, BY_INSTANCE),
    "EventDelivered": ({"event_type": "approved"}, BY_INSTANCE),
    "RunCompleted": ({}, BY_INSTANCE),
    "InstanceDeleted": ({"reason": "api"}, BY_INSTANCE),
    "RunFailed": ({"error": {"name": "Error", "message": "boom"}}, BY_INSTANCE),
}


def _command(type_name: str, fields: dict[str, Any]) -> AnyCommand:
    common = {"command_id": COMMAND_ID, "account_id": ACCOUNT, "workflow_name": WORKFLOW}
    return msgspec.convert({"type": type_name, **common, **fields}, type=AnyCommand)


def _event(type_name: str, fields: dict[str, Any]) -> AnyEvent:
    common = {
        "event_id": "e-1",
        "account_id": ACCOUNT,
        "workflow_name": WORKFLOW,
        "version": 1,
        "occurred_at": "2025-01-01T00:00:00Z",
        "command_id": COMMAND_ID,
    }
    if type_name not in WORKFLOW_EVENTS:
        common["instance_id"] = INSTANCE
    return msgspec.convert({"type": type_name, **common, **fields}, type=AnyEvent)


def test_the_tables_cover_every_command_and_event_type() -> None:
    assert set(COMMANDS) == COMMAND_TYPE_NAMES
    assert set(EVENTS) == {t.__struct_config__.tag for t in EVENT_TYPES}


@pytest.mark.parametrize("type_name", sorted(COMMANDS))
def test_every_command_is_keyed_as_before(type_name: str) -> None:
    fields, expected = COMMANDS[type_name]
    command = _command(type_name, fields)

    assert kafka_key(command) == expected
    # The raw-JSON variant gives a valid command's fields the same key.
    assert command_key(msgspec.to_builtins(command)) == expected


def test_a_create_without_instance_id_is_keyed_by_its_command_id() -> None:
    command = _command("CreateInstance", {})

    assert kafka_key(command) == COMMAND_ID
    assert command_key(msgspec.to_builtins(command)) == COMMAND_ID


@pytest.mark.parametrize("type_name", sorted(EVENTS))
def test_every_event_is_keyed_as_before(type_name: str) -> None:
    fields, expected = EVENTS[type_name]

    assert kafka_key(_event(type_name, fields)) == expected


def test_raw_commands_that_are_not_valid_ones_still_get_a_key() -> None:
    assert command_key({"type": "Nope", "command_id": "c-1"}) == "c-1"
    assert command_key({"type": "CreateInstance", "instance_id": "", "command_id": "c-1"}) == "c-1"
    batch = {"type": "CreateInstances", "account_id": "a", "workflow_name": "w", "instance_id": "i"}
    assert command_key(batch) == "a/w"
    assert command_key({"instance_id": "i"}) == "None/None/i"
