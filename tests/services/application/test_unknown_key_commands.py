"""A command for an instance whose data key no configured KEK opens is refused as such
(`instance.key_unavailable`, which the api answers 503), not as a handler bug; both stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import commands as c
from services.api.writes import STATUS_BY_CODE
from services.application.sealing import KeyRing, MemoryKeyStore
from services.bootstrap import build_application
from services.domain.instance import WorkflowInstance
from services.settings import Settings
from services.store.key_table import open_key_table

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_a_command_for_an_instance_whose_key_cannot_be_unwrapped_is_key_unavailable(
    store_url: str, new_id: str
) -> None:
    account, base = f"acc{new_id}", {"workflow_name": "wf", "instance_id": "lost"}
    writer = build_application(Settings(store=store_url))
    register = c.RegisterWorkflow(
        command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
    )
    create = c.CreateInstance(command_id=str(uuid.uuid4()), account_id=account, **base)
    assert [r.outcome for r in writer.handle([register, create], NOW)] == ["accepted"] * 2
    instance = WorkflowInstance.create_id(account, "wf", "lost")
    elsewhere = MemoryKeyStore()  # the instance's key, as if wrapped by a KEK not configured
    KeyRing(elsewhere, [b"x" * 32]).prepare([instance])
    open_key_table(writer.factory).replace(elsewhere.fetch([instance]))
    writer.close()

    reader = build_application(Settings(store=store_url))  # nothing cached
    try:
        pause = c.ChangeStatus(
            command_id=str(uuid.uuid4()), account_id=account, action="pause", **base
        )
        [reply] = reader.handle([pause], NOW)
    finally:
        reader.close()

    assert reply.outcome == "rejected" and reply.error is not None
    assert reply.error.code == "instance.key_unavailable"
    assert "key-encryption key" in reply.error.message
    assert STATUS_BY_CODE[reply.error.code] == 503
