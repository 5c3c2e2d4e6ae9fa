"""Kafka keys and the global ids derived from them.

Every message about one instance is keyed by its instance key, so one instance's commands,
replies and events share a partition and keep their order. The global id (uuid5 of the key)
names the instance in the run, Onfido and staged read models.
"""

from __future__ import annotations

import hashlib
import re
import uuid

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
