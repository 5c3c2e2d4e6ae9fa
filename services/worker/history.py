"""An instance's history for the worker, read from the event store.

The worker replays `run()` with the outputs recorded in the store, never only from the events
it happened to consume: a new worker, or one started after the events topic's retention
dropped old events, resumes the same. The aggregate (services/domain/instance.py) is the
history: the same state the commands role decides on, rebuilt from the stored events.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from eventsourcing.application import AggregateNotFoundError

from flowledger.replay import InstanceHistory, RecordedStep
from services.application.app import FlowledgerApplication
from services.domain.instance import WorkflowInstance
from services.infra.store_env import eventsourcing_env
from services.store.key_table import open_key_table
from services.store.schema_lock import schema_lock


def history_of(instance: WorkflowInstance) -> InstanceHistory:
    """The engine's view of the aggregate. Outputs are copies: a workflow that changes a
    returned dict must not change the aggregate cached in this process."""
    run = instance.run
    steps = [
        RecordedStep(
            name=s.name,
            type=s.type,
            count=s.count,
            ended=s.ended,
            success=s.success,
            output=_copy(s.output),
            error=dict(s.error) if s.error else None,
            attempts=s.attempts,
            attempt_in_flight=s.attempt_in_flight,
            backing_off=s.backing_off,
            last_success=s.last_success,
            last_output=_copy(s.last_output),
            last_error=dict(s.last_error) if s.last_error else None,
            retry_due=s.retry_due,
            event_type=s.event_type,
            ended_at=s.ended_at,
        )
        for s in run.steps
    ]
    return InstanceHistory(
        account_id=instance.account_id,
        workflow_name=instance.workflow_name,
        instance_id=instance.instance_id,
        status=instance.status,
        run=run.number,
        version=instance.version,
        params=_copy(instance.params),
        created_at=instance.created_at,
        steps=steps,
    )


def _copy(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return msgspec.json.decode(msgspec.json.encode(value))


class StoreHistory:
    """Reads histories from the event store named by FLOWLEDGER_STORE (read only: the worker
    writes nothing but commands)."""

    def __init__(self, app: FlowledgerApplication) -> None:
        self.app = app

    @classmethod
    def open(cls, store_url: str, keks: list[bytes], cache_size: int = 1_000) -> StoreHistory:
        env = eventsourcing_env(store_url)
        if env["PERSISTENCE_MODULE"].endswith("sqlite"):
            Path(env["SQLITE_DBNAME"]).parent.mkdir(parents=True, exist_ok=True)
        env["AGGREGATE_CACHE_MAXSIZE"] = str(cache_size)
        with schema_lock(store_url):  # the service may be creating the tables right now
            app = FlowledgerApplication(env=env)
            app.use_key_store(open_key_table(app.factory), keks)  # outputs are sealed
            return cls(app)

    def load_blocking(
        self, account_id: str, workflow_name: str, instance_id: str
    ) -> InstanceHistory | None:
        try:
            instance = self.app.get_instance(account_id, workflow_name, instance_id)
        except AggregateNotFoundError:
            return None
        return None if instance.deleted else history_of(instance)

    async def load(
        self, account_id: str, workflow_name: str, instance_id: str
    ) -> InstanceHistory | None:
        return await asyncio.to_thread(self.load_blocking, account_id, workflow_name, instance_id)

    def workflow_exists(self, account_id: str, workflow_name: str) -> bool:
        try:
            self.app.get_workflow(account_id, workflow_name)
        except AggregateNotFoundError:
            return False
        return True

    def close(self) -> None:
        self.app.close()
