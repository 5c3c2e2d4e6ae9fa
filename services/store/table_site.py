"""Where a small table of Flowledger's own lives beside the event store: the datastore, the
table's name as SQL (schema-qualified on PostgreSQL) and the driver's placeholder, so that one
class holds the same SQL for both backends."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory


class Datastore(Protocol):
    def transaction(self, *, commit: bool) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True)
class TableSite:
    datastore: Datastore
    table: str  # ready to splice into SQL
    ph: str  # "?" or "%s"


def table_site(factory: InfrastructureFactory[Any], name: str) -> TableSite:
    """The table `name` on the datastore of the event store behind `factory`."""
    if isinstance(factory, PostgresFactory):
        schema = factory.datastore.schema.replace('"', '""')
        return TableSite(factory.datastore, f'"{schema}".{name}', "%s")
    if isinstance(factory, SQLiteFactory):
        return TableSite(factory.datastore, name, "?")
    raise TypeError(f"no table {name} for the event store of {type(factory).__name__}")
