"""Views whose long list is kept as rows (Cloudflare's steps, the staged stages), on both
stores: a step's event writes that step's row and the summary, not the document; the work per
event is the same at step 3,000 as at step 10 (bytes written, counted by the view); documents
read whole as the fold of their history (lists read summaries only); a rebuild equals the live
view; a deletion takes the rows with the document; a document stored whole before reads the
same and moves to rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from contracts import commands as c
from contracts import events as ev
from contracts.keys import instance_global_id
from projections import cloudflare_instance, staged_instance
from projections.read_models import READ_MODELS
from services.application.app import FlowledgerApplication
from services.application.history import InstanceHistory
from services.application.notification_log import Batch, NotificationLog
from services.bootstrap import build_application
from services.roles.projections import Projection, ProjectionGroup, rebuild
from services.settings import Settings
from services.store.document_view import DocumentView, Query, Row, open_view
from tests.projections.events_factory import Story, fold

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
OUTPUT = {"value": "x" * 120}  # ~330 bytes per Cloudflare step: a 3,000-step document is ~1 MB


@pytest.fixture
def app(store_url: str) -> Iterator[FlowledgerApplication]:
    app = build_application(Settings(store=store_url))
    try:
        yield app
    finally:
        app.close()


class Feed:
    """Lifecycle events handed to a projection group in batches, as the role reads them."""

    def __init__(self, group: ProjectionGroup) -> None:
        self.group = group
        self.position = 0

    def __call__(self, events: list[ev.LifecycleEvent]) -> None:
        numbered = [(self.position + n, e) for n, e in enumerate(events, start=1)]
        self.position += len(events)
        self.group.process(Batch(self.position, numbered))


def _step(story: Story, name: str) -> list[ev.LifecycleEvent]:
    return [
        story.step_began(name),
        story.attempt_began(name),
        story.attempt_ended(name, output=OUTPUT),
        story.step_ended(name, output=OUTPUT),
    ]


def _steps(story: Story, first: int, count: int) -> list[ev.LifecycleEvent]:
    return [e for n in range(first, first + count) for e in _step(story, f"s{n}")]


def _view(app: FlowledgerApplication, model: Any, new_id: str) -> DocumentView:
    return open_view(app.factory, f"{model.VIEW_NAME[:6]}{new_id}")


def _stored_rows(view: DocumentView, key: str) -> dict[int, str]:
    with view.transaction(commit=False) as cursor:
        sql = f"SELECT idx, item FROM {view.rows_table} WHERE key = {view.ph}"
        cursor.execute(sql, [key])
        return {int(row["idx"]): row["item"] for row in cursor.fetchall()}


def test_a_step_event_writes_that_steps_row_and_the_summary_alone(
    app: FlowledgerApplication, new_id: str
) -> None:
    view = _view(app, cloudflare_instance, new_id)
    feed = Feed(ProjectionGroup([Projection(view, cloudflare_instance)]))
    story = Story()
    events = [story.created({"p": 1}), story.started(), *_steps(story, 0, 20)]
    feed(events)
    assert len(_stored_rows(view, story.global_id)) == 20

    for event in _step(story, "s20"):
        rows_before, items_before = _stored_rows(view, story.global_id), view.written_items
        feed([event])
        events.append(event)
        rows_after = _stored_rows(view, story.global_id)
        assert view.written_items - items_before == 1, type(event).__name__
        changed = {i for i in rows_after if rows_before.get(i) != rows_after[i]}
        assert changed == {20}, type(event).__name__
        assert view.get(story.global_id) == fold(cloudflare_instance.apply, events)


def test_one_batch_steps_a_thousand_long_instances_at_once(
    app: FlowledgerApplication, new_id: str
) -> None:
    view = _view(app, cloudflare_instance, new_id)
    feed = Feed(ProjectionGroup([Projection(view, cloudflare_instance)]))
    stories = [Story() for _ in range(1000)]
    feed([e for s in stories for e in (s.created(), s.started(), *_step(s, "a"))])

    feed([s.step_began("b") for s in stories])  # each fold reads its last step's row

    got = view.get_many([s.global_id for s in stories])
    assert {len(doc["steps"]) for doc in got.values()} == {2} and len(got) == 1000


def _bytes_per_step(feed: Feed, views: list[DocumentView], story: Story, n: int) -> int:
    before = sum(v.written_bytes for v in views)
    for event in _step(story, f"s{n}"):
        feed([event])  # one batch per event: each event's write is its own
    return sum(v.written_bytes for v in views) - before


def test_the_bytes_written_per_step_at_step_3000_are_those_at_step_10(
    app: FlowledgerApplication, new_id: str
) -> None:
    views = {name: open_view(app.factory, f"{name[:6]}{new_id}") for name in READ_MODELS}
    feed = Feed(ProjectionGroup([Projection(views[n], m) for n, m in READ_MODELS.items()]))
    story = Story()
    feed([story.created({"p": 1}), story.started(), *_steps(story, 0, 10)])
    at_10 = _bytes_per_step(feed, list(views.values()), story, 10)
    for first in range(11, 3000, 500):
        feed(_steps(story, first, min(500, 3000 - first)))
    at_3000 = _bytes_per_step(feed, list(views.values()), story, 3000)

    steps = views[cloudflare_instance.VIEW_NAME].get(story.global_id) or {}
    stages = views[staged_instance.VIEW_NAME].get(story.global_id) or {}
    assert len(steps["steps"]) == len(stages["stages"]) == 3001
    # The same work, not merely the same order: every digit of the step number is one byte.
    assert at_3000 <= 1.5 * at_10, (at_10, at_3000)


def _command(kind: type, account: str, instance_id: str, **fields: Any) -> Any:
    return kind(
        command_id=str(uuid.uuid4()),
        account_id=account,
        workflow_name="wf",
        instance_id=instance_id,
        **fields,
    )


def _record(account: str, instance_id: str, names: list[str]) -> list[Any]:
    return [_command(c.RecordStep, account, instance_id, name=n, output=OUTPUT) for n in names]


def _history_of_restarts(app: FlowledgerApplication, account: str, instance_id: str) -> None:
    """Steps, a termination with rollback, a restart from the third step, more steps and a
    sleep, a restart from the first, and a completed run; handled in several batches."""
    register = c.RegisterWorkflow(
        command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
    )
    app.handle([register, _command(c.CreateInstance, account, instance_id)], NOW)
    app.handle([_command(c.StartRun, account, instance_id)], NOW)
    app.handle(_record(account, instance_id, ["a", "b", "c", "d"]), NOW)
    app.handle(
        [_command(c.ChangeStatus, account, instance_id, action="terminate", rollback=True)], NOW
    )
    restart = c.RestartFrom(name="c")
    app.handle(
        [_command(c.ChangeStatus, account, instance_id, action="restart", from_=restart)], NOW
    )
    app.handle([_command(c.StartRun, account, instance_id)], NOW)
    app.handle(_record(account, instance_id, ["c", "e"]), NOW)
    sleep = _command(c.BeginStep, account, instance_id, name="nap", step_type="sleep", sleep_ms=9)
    app.handle([sleep, _command(c.EndSleep, account, instance_id)], NOW)
    first = c.RestartFrom(name="b")
    app.handle([_command(c.ChangeStatus, account, instance_id, action="restart", from_=first)], NOW)
    app.handle(
        [_command(c.StartRun, account, instance_id), *_record(account, instance_id, ["b"])], NOW
    )
    app.handle([_command(c.CompleteRun, account, instance_id, output={"done": 1})], NOW)


def _catch_up_in_batches(group: ProjectionGroup, log: NotificationLog, size: int) -> None:
    start = group.position() or 0
    while batch := log.read(start, size):
        group.process(batch)
        start = batch.last_id


@pytest.mark.parametrize("model", [cloudflare_instance, staged_instance], ids=["cf", "staged"])
def test_documents_read_as_their_history_folds_and_a_rebuild_equals_the_live_view(
    app: FlowledgerApplication, new_id: str, model: Any
) -> None:
    account, instance_id = f"acc{new_id}", "long"
    _history_of_restarts(app, account, instance_id)
    view = _view(app, model, new_id)
    log = NotificationLog(app)
    _catch_up_in_batches(ProjectionGroup([Projection(view, model)]), log, size=3)

    key = str(instance_global_id(account, "wf", instance_id))
    history = InstanceHistory(app).events(account, "wf", instance_id)
    live = view.get(key)
    assert live is not None and live == fold(model.apply, history)
    assert len(_stored_rows(view, key)) == len(live[model.ROW_FIELD]) == 2
    assert view.find(Query(account_id=account)) == [live]
    summary = {k: v for k, v in live.items() if k != model.ROW_FIELD}
    assert view.find_summaries(Query(account_id=account)) == [summary]

    live_rows = _stored_rows(view, key)
    rebuild(log, view, _view(app, model, f"{new_id}__rebuild"), model)
    assert view.get(key) == live and _stored_rows(view, key) == live_rows


@pytest.mark.parametrize("model", [cloudflare_instance, staged_instance], ids=["cf", "staged"])
def test_a_deleted_instance_leaves_no_row_behind(
    app: FlowledgerApplication, new_id: str, model: Any
) -> None:
    account = f"acc{new_id}"
    _history_of_restarts(app, account, "gone")
    view = _view(app, model, new_id)
    group = ProjectionGroup([Projection(view, model)])
    log = NotificationLog(app)
    group.catch_up(log)
    key = str(instance_global_id(account, "wf", "gone"))
    assert _stored_rows(view, key)

    app.handle([_command(c.DeleteInstance, account, "gone")], NOW)
    group.catch_up(log)
    assert view.get(key) is None and _stored_rows(view, key) == {}


def test_a_document_stored_whole_reads_the_same_and_moves_to_rows_when_next_written(
    app: FlowledgerApplication, new_id: str
) -> None:
    view = _view(app, cloudflare_instance, new_id)
    story = Story()
    events = [story.created(), story.started(), *_steps(story, 0, 3)]
    doc = fold(cloudflare_instance.apply, events)
    row = Row(doc["global_id"], doc["account_id"], "wf", doc["status"], doc["created_on"], doc)
    feed = Feed(ProjectionGroup([Projection(view, cloudflare_instance)]))
    view.write([row], Tracking(view.view_name, len(events)), expected=None)  # no row_field
    feed.position = len(events)
    assert view.get(story.global_id) == doc and _stored_rows(view, story.global_id) == {}

    events.append(story.step_began("s3"))
    feed(events[-1:])
    assert view.get(story.global_id) == fold(cloudflare_instance.apply, events)
    assert sorted(_stored_rows(view, story.global_id)) == [0, 1, 2, 3]
