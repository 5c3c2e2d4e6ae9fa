"""What a follower of the log passed over, in a table beside the event store.

An event a fold cannot apply, or a timer whose command cannot be built, fails the same way on
every retry: retried, it would stop its follower (and every tenant behind it) for good. Such an
item is parked instead: recorded here (follower, item, exception type, reason, when), logged
once and counted, and the follower goes on. The table is in the store, so every process's
`/readyz` reports what any follower parked (readiness reads it with the lags).

An item is recorded once (the key is follower + item): a batch handled again after a crash
parks it again without a second row or log line. Reasons hold an exception's message, cut
short; no personal content is put there on purpose (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory

from contracts.limits import bounded

TABLE = "parked_items"
REASON_CHARS = 300
LATEST = 10  # parked items that readiness lists, newest first


@dataclass(frozen=True)
class Parked:
    follower: str  # relay, projections, scheduler
    item: str  # "notification 42", "timer acc/wf/i sleep"
    error_type: str
    reason: str
    parked_at: str  # ISO 8601, UTC


def parked(follower: str, item: str, error_type: str, message: str, at: datetime) -> Parked:
    """The record of `item`, passed over by `follower` because of an `error_type` error."""
    reason = bounded(message.strip().replace("\n", " "), REASON_CHARS)
    return Parked(follower, item, error_type[:100], reason, at.isoformat())


class _Datastore(Protocol):
    def transaction(self, *, commit: bool) -> AbstractContextManager[Any]: ...


class ParkedTable:
    """The same SQL on both backends; `ph` is the driver's placeholder, `table` qualified."""

    def __init__(self, datastore: _Datastore, table: str, ph: str) -> None:
        self._datastore = datastore
        self._table = table
        self._ph = ph

    def create_table(self) -> None:
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} (follower TEXT NOT NULL, "
                "item TEXT NOT NULL, error_type TEXT NOT NULL, reason TEXT NOT NULL, "
                "parked_at TEXT NOT NULL, PRIMARY KEY (follower, item))"
            )

    def park(self, items: Sequence[Parked]) -> list[Parked]:
        """Records `items`; returns those not recorded before (to log each once)."""
        p = self._ph
        added = []
        with self._datastore.transaction(commit=True) as cursor:
            for one in items:
                cursor.execute(
                    f"INSERT INTO {self._table} (follower, item, error_type, reason, parked_at) "
                    f"VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (follower, item) DO NOTHING "
                    "RETURNING item",
                    [one.follower, one.item, one.error_type, one.reason, one.parked_at],
                )
                if cursor.fetchone() is not None:  # None: parked before
                    added.append(one)
        return added

    def items(self, follower: str | None = None) -> list[Parked]:
        """Every parked item (of `follower`), newest first."""
        where, params = (
            ("", []) if follower is None else (f" WHERE follower = {self._ph}", [follower])
        )
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT follower, item, error_type, reason, parked_at "
                f"FROM {self._table}{where} ORDER BY parked_at DESC, item",
                params,
            )
            return [_parked(row) for row in cursor.fetchall()]

    def summary(self) -> dict[str, Any]:
        """How many items each follower parked, and the latest few (without their reasons,
        which stay in the table and the logs: readiness is not authenticated)."""
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT follower, COUNT(*) AS n FROM {self._table} GROUP BY follower")
            counts = {row["follower"]: int(row["n"]) for row in cursor.fetchall()}
            cursor.execute(
                f"SELECT follower, item, error_type, reason, parked_at FROM {self._table} "
                f"ORDER BY parked_at DESC, item LIMIT {LATEST}"
            )
            latest = [_parked(row) for row in cursor.fetchall()]
        return {
            "total": sum(counts.values()),
            "by_follower": counts,
            "latest": [
                {
                    "follower": p.follower,
                    "item": p.item,
                    "error_type": p.error_type,
                    "at": p.parked_at,
                }
                for p in latest
            ],
        }


def _parked(row: Any) -> Parked:
    return Parked(row["follower"], row["item"], row["error_type"], row["reason"], row["parked_at"])


def open_parked_table(factory: InfrastructureFactory[Any]) -> ParkedTable:
    """The parked items' table on the datastore of the event store behind `factory`, created
    if missing (under `schema_lock`, as every creator of tables)."""
    if isinstance(factory, PostgresFactory):
        schema = factory.datastore.schema.replace('"', '""')
        table = ParkedTable(factory.datastore, f'"{schema}".{TABLE}', "%s")
    elif isinstance(factory, SQLiteFactory):
        table = ParkedTable(factory.datastore, TABLE, "?")
    else:
        raise TypeError(f"no parked items' table for the event store of {type(factory).__name__}")
    table.create_table()
    return table
