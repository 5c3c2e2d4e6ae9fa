"""A read that meets an instance whose data key no configured KEK opens answers a clear 503 in
the dialect's envelope, never a bare 500; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from contracts import commands as c
from services.api.app import create_api
from services.application.app import FlowledgerApplication
from services.application.history import InstanceHistory
from services.application.sealing import KeyRing, MemoryKeyStore
from services.bootstrap import build_application, open_views
from services.domain.instance import WorkflowInstance
from services.settings import Settings
from services.store.key_table import open_key_table

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
TOKEN = "tok-unknown-key"


def _create(app: FlowledgerApplication, account: str, instance: str) -> None:
    base = {"account_id": account, "workflow_name": "wf", "instance_id": instance}
    replies = app.handle(
        [
            c.RegisterWorkflow(
                command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
            ),
            c.CreateInstance(command_id=str(uuid.uuid4()), params={"p": instance}, **base),
        ],
        NOW,
    )
    assert [r.outcome for r in replies] == ["accepted", "accepted"], replies


def _wrap_with_another_kek(app: FlowledgerApplication, instance_id: uuid.UUID) -> None:
    elsewhere = MemoryKeyStore()
    KeyRing(elsewhere, [b"x" * 32]).prepare([instance_id])
    open_key_table(app.factory).replace(elsewhere.fetch([instance_id]))


@pytest.fixture
async def unreadable(store_url: str, new_id: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An api over a store holding one instance whose key no configured KEK opens; its path."""
    account = f"acc{new_id}"
    writer = build_application(Settings(store=store_url))
    _create(writer, account, "lost")
    _wrap_with_another_kek(writer, WorkflowInstance.create_id(account, "wf", "lost"))
    writer.close()
    reader = build_application(Settings(store=store_url))  # nothing cached
    api = create_api(
        tokens={TOKEN: frozenset({"*"})},
        views=open_views(reader),
        history=InstanceHistory(reader),
        readiness=lambda: {"ready": True},
    )
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://flowledger",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client, f"/client/v4/accounts/{account}/workflows/wf/instances/lost"
    reader.close()


@pytest.mark.parametrize("read", ["/history", "?as_of=1"])
async def test_a_read_of_an_instance_whose_key_cannot_be_unwrapped_is_a_503_envelope(
    unreadable: tuple[httpx.AsyncClient, str], read: str
) -> None:
    client, path = unreadable
    response = await client.get(path + read)

    assert response.status_code == 503, response.text
    body = response.json()
    assert body["success"] is False and body["result"] is None
    (error,) = body["errors"]
    assert error["code"] == 10503
    assert "data key cannot be unwrapped with the configured keys" in error["message"]
    assert response.headers["x-should-retry"] == "false"
