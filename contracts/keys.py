"""Kafka keys and the global ids derived from them.

Every message about one instance is keyed by its instance key, so one instance's commands,
replies and events share a partition and keep their order. The global id (uuid5 of the key)
names the instance in the run, Onfido and staged read models.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from contracts.commands import AnyCommand
from contracts.events import InstanceEvent, LifecycleEvent

# Fixed forever: changing it would rename every instance.
FLOWLEDGER_NAMESPACE = uuid.UUID("6f0c1d0e-6a43-5b2e-9f7e-0f1e7d6c2b11")
MINTED_PREFIX = "cf_"
_MINTED_SHAPE = re.compile(r"cf_[0-9a-f]{64}")


def workflow_key(account_id: str, workflow_name: str) -> str:
    return f"{account_id}/{workflow_name}"


def instance_key(account_id: str, workflow_name: str, instance_id: str) -> str:
    return f"{account_id}/{workflow_name}/{instance_id}"


def instance_global_id(account_id: str, workflow_name: str, instance_id: str) -> uuid.UUID:
    return uuid.uuid5(FLOWLEDGER_NAMESPACE, instance_key(account_id, workflow_name, instance_id))


def workflow_global_id(account_id: str, workflow_name: str) -> uuid.UUID:
    return uuid.uuid5(FLOWLEDGER_NAMESPACE, "workflow:" + workflow_key(account_id, workflow_name))


def workflow_version_id(workflow_id: uuid.UUID, version_number: int) -> uuid.UUID:
    return uuid.uuid5(workflow_id, f"version:{version_number}")


def minted_instance_id(command_id: str) -> str:
    """The id of an instance created without one: `cf_` + 64 hex, derived from the command.

    Derived rather than random so that a redelivered CreateInstance mints the same id.
    """
    return MINTED_PREFIX + hashlib.sha256(command_id.encode()).hexdigest()


def is_minted_shape(instance_id: str) -> bool:
    """True for an id the service could mint: such ids are reserved, never chosen by a client,
    or a client could take the id that another command's create will mint."""
    return _MINTED_SHAPE.fullmatch(instance_id) is not None


# Commands about a whole workflow or about several instances: keyed by workflow.
WORKFLOW_KEYED_COMMANDS = frozenset({"RegisterWorkflow", "CreateInstances"})


def kafka_key(message: AnyCommand | LifecycleEvent) -> str:
    """The Kafka key of a command or a lifecycle event (README "Producers", "Subscribers").

    An instance's messages share its instance key; a workflow's (RegisterWorkflow,
    CreateInstances, the workflow events) its workflow key; a CreateInstance without an
    `instance_id` (its id is minted from the command) is keyed by its `command_id`.
    """
    if isinstance(message, LifecycleEvent):
        if isinstance(message, InstanceEvent):
            return instance_key(message.account_id, message.workflow_name, message.instance_id)
        return workflow_key(message.account_id, message.workflow_name)
    return command_fields_key(
        str(message.__struct_config__.tag),
        message.account_id,
        message.workflow_name,
        getattr(message, "instance_id", None),
        message.command_id,
    )


def command_fields_key(
    type_name: str, account_id: str, workflow_name: str, instance_id: str | None, command_id: str
) -> str:
    """`kafka_key`'s rule for a command, from its fields alone: also for raw JSON commands,
    which may not be valid ones (`raw_command_key`)."""
    if type_name in WORKFLOW_KEYED_COMMANDS:
        return workflow_key(account_id, workflow_name)
    if instance_id:
        return instance_key(account_id, workflow_name, instance_id)
    return command_id


def raw_command_key(command: dict[str, Any]) -> str:
    """The Kafka key of a command given as JSON fields (which need not make a valid command:
    the service answers or dead-letters it): the key a valid command of these fields has."""
    instance_id = command.get("instance_id")
    return command_fields_key(
        str(command.get("type")),
        str(command.get("account_id")),
        str(command.get("workflow_name")),
        str(instance_id) if instance_id else None,
        str(command.get("command_id")),
    )


def new_command_id() -> str:
    """A new command's id. Any unique text serves; a producer that may send a command again
    (after a timeout, a restart) must send it with the id it chose the first time."""
    return str(uuid.uuid4())
