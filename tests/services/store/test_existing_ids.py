"""One query per batch tells which aggregates exist, on both stores; the application's default
port (no SQL, one read per id) gives the same answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from contracts import commands as c
from services.application.app import FlowledgerApplication
from services.application.command_log import command_record_id
from services.bootstrap import build_application
from services.domain.instance import WorkflowInstance
from services.domain.workflow import Workflow
from services.infra.store_env import eventsourcing_env
from services.settings import DEV_KEK, Settings
from services.store.existing_ids import SQLITE_CHUNK, existing_ids
from services.store.key_table import open_key_table


@pytest.fixture
def app(store_url: str) -> Iterator[FlowledgerApplication]:
    application = build_application(Settings(store=store_url))
    try:
        yield application
    finally:
        application.close()


def _stored(app: FlowledgerApplication, account: str) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Registers a workflow and creates instance "a": (ids with events, ids without)."""
    register = c.RegisterWorkflow(
        command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
    )
    create = c.CreateInstance(
        command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf", instance_id="a"
    )
    app.handle([register, create], datetime.now(UTC))
    present = [
        WorkflowInstance.create_id(account, "wf", "a"),
        Workflow.create_id(account, "wf"),
        command_record_id(create.command_id),
    ]
    absent = [WorkflowInstance.create_id(account, "wf", "b"), uuid.uuid4()]
    return present, absent


def test_only_aggregates_with_stored_events_are_reported_as_existing(
    app: FlowledgerApplication, new_id: str
) -> None:
    present, absent = _stored(app, f"acc{new_id}")

    assert existing_ids(app.recorder, [*present, *absent]) == set(present)
    assert existing_ids(app.recorder, []) == set()


def test_batches_larger_than_one_sqlite_statement_are_answered_whole(
    app: FlowledgerApplication, new_id: str
) -> None:
    present, absent = _stored(app, f"acc{new_id}")
    many = [uuid.uuid4() for _ in range(SQLITE_CHUNK)] + present + absent

    assert existing_ids(app.recorder, iter(many)) == set(present)


def test_the_application_is_wired_with_the_one_query_port(app: FlowledgerApplication) -> None:
    assert app.existing_ids != app.existing_ids_one_by_one


def test_the_default_port_without_sql_gives_the_same_answer(store_url: str, new_id: str) -> None:
    plain = FlowledgerApplication(env=eventsourcing_env(store_url))
    plain.use_key_store(open_key_table(plain.factory), [DEV_KEK])
    try:
        assert plain.existing_ids == plain.existing_ids_one_by_one  # nothing plugged in
        present, absent = _stored(plain, f"acc{new_id}")
        asked = [*present, *absent]

        assert plain.existing_ids(asked) == set(present)
        assert plain.existing_ids(asked) == existing_ids(plain.recorder, asked)
        assert plain.existing_ids([]) == set()
    finally:
        plain.close()
