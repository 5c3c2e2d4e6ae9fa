"""Erasure holds everywhere the data went (docs/erasure.md), over the real broker, on SQLite and
PostgreSQL: an instance run to complete with a marker in every content field, then deleted,
leaves the marker in no database file or table, no rebuilt view and no event on the topic,
while its history still folds."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

from contracts.erasure import ERASED
from projections import cloudflare_instance
from projections.instance_status import is_gone
from services.application.lifecycle import LifecycleTranslator
from services.application.notification_log import NotificationLog
from services.bootstrap import Service
from services.domain.instance import WorkflowInstance
from services.roles.projections import rebuild
from services.store.document_view import open_view
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.service import KafkaClient


async def _do(kafka: KafkaClient, account: str, instance: str, kind: str, **fields: Any) -> None:
    command = {
        "type": kind,
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": "wf",
        "instance_id": instance,
        **fields,
    }
    await kafka.send(command)
    reply = await kafka.reply(command["command_id"])
    assert reply["outcome"] == "accepted", reply


async def _run_to_complete(kafka: KafkaClient, account: str, instance: str, marker: str) -> None:
    await _do(kafka, account, instance, "RegisterWorkflow")
    steps: list[tuple[str, dict[str, Any]]] = [
        ("CreateInstance", {"params": {"secret": marker}, "user_id": marker}),
        ("SendEvent", {"event_type": "ok", "payload": {"by": marker}}),
        ("StartRun", {}),
        ("BeginStep", {"name": "charge"}),
        ("BeginAttempt", {"name": "charge"}),
        (
            "EndAttempt",
            {"name": "charge", "success": False, "error": {"name": "E", "message": marker}},
        ),
        ("EndSleep", {"name": "charge"}),
        ("BeginAttempt", {"name": "charge"}),
        ("EndAttempt", {"name": "charge", "success": True, "output": {"card": marker}}),
        ("EndStep", {"name": "charge", "output": {"card": marker}}),
        ("BeginStep", {"name": "approval", "step_type": "waitForEvent", "event_type": "ok"}),
        ("CompleteRun", {"output": {"done": marker}}),
    ]
    for kind, fields in steps:
        await _do(kafka, account, instance, kind, **fields)


async def _until(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")
        await asyncio.sleep(0.2)


def _sqlite_files_hold(store_url: str, marker: bytes) -> list[str]:
    db = Path(urlsplit(store_url).path)
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-journal")]
    return [f.name for f in files if f.exists() and marker in f.read_bytes()]


def _postgres_tables_hold(dsn: str, marker: bytes) -> list[str]:
    """Tables (and their TOAST tables) whose raw pages hold the marker: live rows, dead tuples
    and free space alike."""
    found = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT r::regclass::text FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace, LATERAL unnest(ARRAY[c.oid, c.reltoastrelid]) AS r "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' AND r <> 0"
            )
        ]
        for table in tables:
            blocks = conn.execute(
                "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                [table],
            ).fetchone()
            rows = conn.execute(
                "SELECT get_raw_page(%s, b::int) FROM generate_series(0, %s - 1) AS b",
                [table, blocks[0] if blocks else 0],
            )
            if any(marker in bytes(r[0]) for r in rows):
                found.append(table)
    return found


async def _files_clean(service: Service, marker: bytes) -> list[str]:
    store = service.settings.store
    if store.startswith("sqlite"):
        return await asyncio.to_thread(_sqlite_files_hold, store, marker)
    return await asyncio.to_thread(_postgres_tables_hold, store, marker)


async def test_a_deleted_instance_leaves_its_content_nowhere(
    service: Service, kafka: KafkaClient, http: httpx.AsyncClient, new_id: str
) -> None:
    account, instance, marker = f"acc{new_id}", f"gone-{new_id}", f"MARKER{new_id}"
    await _run_to_complete(kafka, account, instance, marker)
    path = f"/client/v4/accounts/{account}/workflows/wf/instances/{instance}"

    async def complete() -> bool:
        response = await http.get(path)
        return response.status_code == 200 and response.json()["result"]["status"] == "complete"

    await _until(complete, "the instance is complete and readable")
    assert marker in (await http.get(path)).text  # the api serves content while it exists

    await _do(kafka, account, instance, "DeleteInstance")

    async def gone() -> bool:
        return (await http.get(path)).status_code == 404

    await _until(gone, "the instance answers 404")
    global_id = WorkflowInstance.create_id(account, "wf", instance)
    app = service.app

    async def key_destroyed() -> bool:
        return not await asyncio.to_thread(app.keyring.store.fetch, [global_id])

    await _until(key_destroyed, "the instance's data key is destroyed")

    async def clean() -> bool:
        return not await _files_clean(service, marker.encode())

    await _until(clean, "no database file or table holds the marker")

    # The history still folds, gap-free, its content erased, to no document.
    app.repository.cache = None  # read from the store, not this process's memory
    stored = await asyncio.to_thread(lambda: list(app.events.get(global_id)))
    assert [e.originator_version for e in stored] == list(range(1, len(stored) + 1))
    assert stored[0].params == ERASED and stored[0].metadata["user_id"] == ERASED
    translator = LifecycleTranslator(app.first_event)
    doc = None
    for domain_event in stored:
        event = translator.translate(domain_event)
        assert event is not None and marker not in repr(event)
        doc = cloudflare_instance.apply(doc, event)
    assert is_gone(doc)

    # A view rebuilt from the whole log has no document for it either.
    name = cloudflare_instance.VIEW_NAME
    live = service.views[name]
    shadow = await asyncio.to_thread(open_view, app.factory, f"{name}__{new_id}")
    await asyncio.to_thread(rebuild, NotificationLog(app), live, shadow, cloudflare_instance)
    assert await asyncio.to_thread(live.get, str(global_id)) is None
    assert (await http.get(path)).status_code == 404

    # Nothing on the events topic can be decoded into the marker, not even before deletion.
    events = await kafka.wait_for(
        kafka.settings.topics.events, lambda m: m.json().get("type") == "InstanceDeleted"
    )
    assert events
    on_topic = [
        m for m in kafka.received[kafka.settings.topics.events] if instance in m.value.decode()
    ]
    assert len(on_topic) == len(stored)
    assert not [m for m in on_topic if marker.encode() in m.value]
