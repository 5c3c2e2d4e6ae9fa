"""Followers fetch only lifecycle rows of the log, and their position still reaches its head."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from contracts import commands as c
from contracts.events import EVENT_TYPES
from services.application.command_log import CommandRecord
from services.application.lifecycle import lifecycle_topics
from services.application.notification_log import NotificationLog
from services.bootstrap import build_application
from services.settings import Settings


def test_every_wire_event_has_a_topic_and_command_records_have_none() -> None:
    topics = lifecycle_topics()
    named = {topic.rsplit(".", 1)[-1] for topic in topics}
    assert {cls.__name__ for cls in EVENT_TYPES} <= named
    assert not [t for t in topics if CommandRecord.__qualname__ in t]


def test_reads_skip_command_records_and_reach_the_head(store_url: str, new_id: str) -> None:
    app = build_application(Settings(store=store_url))
    try:
        account = f"acc{new_id}"

        def command(kind: type[c.AnyCommand], **fields: str) -> c.AnyCommand:
            return kind(  # type: ignore[call-arg]
                command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf", **fields
            )

        log = NotificationLog(app)
        before = log.head()
        creates = [command(c.CreateInstance, instance_id=f"i{n}") for n in range(5)]
        app.handle([command(c.RegisterWorkflow), *creates], datetime.now(UTC))
        head = log.head()
        assert head - before == 12  # six events, six command records

        seen: list[str] = []
        positions = []
        position = before
        while (batch := log.read(position, 2)) is not None:
            seen += [type(event).__name__ for _, event in batch.events]
            assert all(before < n <= batch.last_id for n, _ in batch.events)
            position = batch.last_id
            positions.append(position)
        assert sorted(seen) == ["InstanceCreated"] * 5 + ["WorkflowRegistered"]
        assert positions[-1] == head  # past the trailing command record
        assert positions == sorted(positions)
        assert log.read(head, 2) is None

        # One read of the rest, then nothing new: the position moves to the head at once.
        last = log.read(before, 100)
        assert last is not None and last.last_id == head and len(last.events) == 6
    finally:
        app.close()


def test_a_follower_reads_the_data_keys_of_a_batch_at_once(store_url: str, new_id: str) -> None:
    """Another process's follower has none of the new instances' keys cached: one read of the
    key table per batch, not one per instance, and the content opens."""
    writer = build_application(Settings(store=store_url))
    reader = build_application(Settings(store=store_url))
    try:
        account = f"acc{new_id}"
        ids = dict(command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf")
        creates = [
            c.CreateInstance(
                command_id=str(uuid.uuid4()),
                account_id=account,
                workflow_name="wf",
                instance_id=f"i{n}",
                params={"n": n},
            )
            for n in range(5)
        ]
        log = NotificationLog(reader)
        before = log.head()
        writer.handle([c.RegisterWorkflow(**ids), *creates], datetime.now(UTC))

        store = reader.keyring.store
        fetched: list[int] = []
        fetch = store.fetch

        def counted(wanted: Collection[uuid.UUID]) -> dict[uuid.UUID, bytes]:
            fetched.append(len(wanted))
            return fetch(wanted)

        store.fetch = counted  # type: ignore[method-assign]
        batch = log.read(before, 100)
        assert batch is not None
        assert fetched == [5]
        params = sorted(e.params["n"] for _, e in batch.events if hasattr(e, "params"))
        assert params == [0, 1, 2, 3, 4]
    finally:
        writer.close()
        reader.close()
