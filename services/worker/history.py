"""An instance's history for the worker, read from the event store.

The worker replays `run()` with the outputs recorded in the store, never only from the events
it happened to consume: a new worker, or one started after the events topic's retention
dropped old events, resumes the same. The aggregate (services/domain/instance.py) is the
history: the same state the commands role decides on, rebuilt from the stored events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError

from flowledger.replay import InstanceHistory, RecordedStep
from services.application.app import FlowledgerApplication
from services.domain.instance import Step, WorkflowInstance
from services.infra.store_env import eventsourcing_env
from services.store.key_table import open_key_table
from services.store.schema_lock import schema_lock
from services.worker.instance_cache import InstanceCache


def history_of(
    instance: WorkflowInstance, before: InstanceHistory | None = None
) -> InstanceHistory:
    """The engine's view of the aggregate. Outputs are copies: a workflow that changes a
    returned dict must not change the aggregate cached in this process. `before`: an earlier
    view of the same instance, whose leading ended steps are reused when the run is the same
    (a step that ended never changes within its run), so a view costs what is new."""
    run = instance.run
    kept = 0
    if before is not None and before.run == run.number:
        kept = min(before.settled, len(run.steps))
    steps = before.steps[:kept] if before is not None else []
    steps += [_recorded(s) for s in run.steps[kept:]]
    settled = kept
    while settled < len(steps) and steps[settled].ended:
        settled += 1
    return InstanceHistory(
        account_id=instance.account_id,
        workflow_name=instance.workflow_name,
        instance_id=instance.instance_id,
        status=instance.status,
        run=run.number,
        version=instance.version,
        params=before.params if before is not None else _copy(instance.params),
        created_at=instance.created_at,
        steps=steps,
        settled=settled,
    )


def _recorded(s: Step) -> RecordedStep:
    return RecordedStep(
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


def _copy(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return msgspec.json.decode(msgspec.json.encode(value))


class StoreHistory:
    """Reads histories from the event store named by FLOWLEDGER_STORE (read only: the worker
    writes nothing but commands), through a cache of the instances it holds
    (services/worker/instance_cache.py): a wake-up reads the events stored since the last."""

    def __init__(self, app: FlowledgerApplication, cache_size: int = 1_000) -> None:
        self.app = app
        self.cache = InstanceCache(self._read_events, history_of, cache_size)

    @classmethod
    def open(cls, store_url: str, keks: list[bytes], cache_size: int = 1_000) -> StoreHistory:
        env = eventsourcing_env(store_url)
        if env["PERSISTENCE_MODULE"].endswith("sqlite"):
            Path(env["SQLITE_DBNAME"]).parent.mkdir(parents=True, exist_ok=True)
        with schema_lock(store_url):  # the service may be creating the tables right now
            app = FlowledgerApplication(env=env)
            app.use_key_store(open_key_table(app.factory), keks)  # outputs are sealed
            return cls(app, cache_size)

    def _read_events(self, aggregate_id: UUID, after: int | None) -> Iterator[Any]:
        return self.app.events.get(aggregate_id, gt=after)

    def load_blocking(
        self, account_id: str, workflow_name: str, instance_id: str
    ) -> InstanceHistory | None:
        return self.cache.load(account_id, workflow_name, instance_id)

    def forget(self, keys: Iterable[str]) -> None:
        """The worker no longer holds these instances (account/workflow/instance keys)."""
        self.cache.forget(keys)

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
