"""Which aggregates exist, for a whole batch in one query: the SQL behind the application's
`existing_ids` port (`services.application.app.ExistingIds`), one query per backend.

Most commands in a busy batch create things (instances, command records) that do not exist
yet; asking the store for each one separately costs a round trip per command. One query for
the batch tells the unit of work which ids it need not look up at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import AggregateRecorder
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from psycopg.sql import SQL, Identifier

SQLITE_CHUNK = 500  # well under SQLite's limit on bound parameters
# Every aggregate's first event has this version: asking for it is one primary-key probe per
# id, where asking for any event read every event of the id (a long instance's thousands).
FIRST_VERSION = 1


def one_query_per_batch(app: Application[Any]) -> Callable[[Iterable[UUID]], set[UUID]]:
    """The `existing_ids` port of `app`, answered from its event store's table."""
    return functools.partial(existing_ids, app.recorder)


def existing_ids(recorder: AggregateRecorder, ids: Iterable[UUID]) -> set[UUID]:
    """The ids among `ids` with at least one stored event; all of them for unknown stores."""
    ids = list(ids)
    if not ids:
        return set()
    if isinstance(recorder, PostgresAggregateRecorder):
        return _postgres(recorder, ids)
    if isinstance(recorder, SQLiteAggregateRecorder):
        return _sqlite(recorder, [i.hex for i in ids])
    return set(ids)


def _postgres(recorder: PostgresAggregateRecorder, ids: list[UUID]) -> set[UUID]:
    statement = SQL(
        "SELECT originator_id FROM {}.{} WHERE originator_id = ANY(%s) AND originator_version = %s"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
        cursor.execute(statement, [ids, FIRST_VERSION])
        return {UUID(str(row["originator_id"])) for row in cursor.fetchall()}


def _sqlite(recorder: SQLiteAggregateRecorder, hex_ids: list[str]) -> set[UUID]:
    found: set[UUID] = set()
    with recorder.datastore.transaction(commit=False) as cursor:
        for start in range(0, len(hex_ids), SQLITE_CHUNK):
            chunk = hex_ids[start : start + SQLITE_CHUNK]
            marks = ", ".join("?" * len(chunk))
            cursor.execute(
                f"SELECT originator_id FROM {recorder.events_table_name} "
                f"WHERE originator_id IN ({marks}) AND originator_version = ?",
                [*chunk, FIRST_VERSION],
            )
            found |= {UUID(row["originator_id"]) for row in cursor.fetchall()}
    return found
