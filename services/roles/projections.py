"""The projections role: keeps every read model up to date from the notification log.

Each projection writes its documents and its tracking position in one transaction, so each
event is applied exactly once even across crashes; `rebuild` folds the history beside the
live view and swaps it in, so readers never see a half-built one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking

from contracts.events import InstanceCreated, InstanceDeleted, LifecycleEvent
from contracts.keys import instance_global_id
from projections.instance_status import is_gone
from projections.read_models import READ_MODELS, ReadModel
from services.application.notification_log import Batch, NotificationLog
from services.roles.follower import FollowingRole, follower_for
from services.roles.parking import Parking, parking_for
from services.roles.role import RoleContext
from services.store.document_view import DocumentView, Row, ViewMoved

log = logging.getLogger(__name__)

Apply = Callable[[dict[str, Any] | None, LifecycleEvent], dict[str, Any] | None]
KeyOf = Callable[[LifecycleEvent], str | None]


Translated = list[tuple[int, LifecycleEvent]]  # (notification id, event)
Prepared = tuple[list[Row], int | None, list[str]]  # rows, expected position, deleted keys


class Projection:
    """One read model: folds lifecycle events into its view, recording how far it got."""

    def __init__(
        self,
        view: DocumentView,
        model: ReadModel,
        on_skip: Callable[[int, Exception], None] = lambda _id, _error: None,
    ) -> None:
        self._on_skip = on_skip
        self.view = view
        self._apply: Apply = model.apply
        self._key_of: KeyOf = model.key_of
        # Its long list is written item by item (projections/row_window.py); a model that
        # names none is written whole.
        self._row_field: str | None = getattr(model, "ROW_FIELD", None)
        self._expected: int | None = None
        self._expected_known = False

    @property
    def name(self) -> str:
        return self.view.view_name

    def position(self) -> int | None:
        return self.view.position()

    def prepare(
        self, events: Translated, last_id: int
    ) -> tuple[list[Row], int | None, list[str]] | None:
        """Blocking: the rows this batch changes, the view's expected position and the keys
        of the documents it deletes (a fold returned a tombstone: the instance was deleted);
        None when the view is already past the batch."""
        if not self._expected_known:
            self._expected, self._expected_known = self.view.position(), True
        after = self._expected or 0
        if after >= last_id:
            return None
        keyed = [
            (notification_id, key, event)
            for notification_id, event in events
            if notification_id > after and (key := self._key_of(event)) is not None
        ]
        touched = sorted({key for _, key, _ in keyed})
        # A document whose first event here is its creation cannot exist yet: in a stream of
        # creates that spares the view's read of the whole batch.
        first: dict[str, LifecycleEvent] = {}
        for _, key, event in keyed:
            first.setdefault(key, event)
        docs = self.view.get_for_folding(
            [key for key in touched if not isinstance(first[key], InstanceCreated)]
        )
        loaded = dict(docs)
        for notification_id, key, event in keyed:
            try:
                doc = self._apply(docs.get(key), event)
            except Exception as error:
                # A bug in this fold. Retrying cannot help, and stopping would freeze every
                # read model: the event is skipped for this view only, loudly; once the fold
                # is fixed, `flowledger projections rebuild` applies it.
                log.exception("%s: fold failed on %s; skipped", self.name, type(event).__name__)
                self._on_skip(notification_id, error)
                continue
            if doc is not None:
                docs[key] = doc
        rows = [
            _row(key, docs[key], self._row_field, loaded.get(key))
            for key in touched
            if key in docs and not is_gone(docs[key])
        ]
        gone = [key for key in touched if is_gone(docs.get(key))]
        return rows, self._expected, gone

    def written(self, last_id: int) -> None:
        self._expected = last_id

    def forget_position(self) -> None:
        """After a refused write: the view moved (was rebuilt); re-read it next time."""
        self._expected_known = False

    def process(self, batch: Batch) -> None:
        """Blocking: run it off the event loop."""
        ProjectionGroup([self]).process(batch)

    def catch_up(self, notification_log: NotificationLog) -> int:
        """Blocking: folds everything after the view's position; returns how many it read."""
        return ProjectionGroup([self]).catch_up(notification_log)


class ProjectionGroup:
    """Every read model from one read of the log: each event is decoded and translated once,
    and all views and their positions are written in one transaction (they share the store).
    Each view still keeps its own position, so a rebuilt view simply skips what it has."""

    name = "projections"

    def __init__(
        self, projections: list[Projection], erase: Callable[[list[UUID]], None] = lambda _: None
    ) -> None:
        self.projections = projections
        self._erase = erase

    def position(self) -> int | None:
        positions = [p.position() for p in self.projections]
        return None if None in positions else min(p or 0 for p in positions)

    def process(self, batch: Batch) -> None:
        """Blocking: run it off the event loop."""
        last_id = batch.last_id
        prepared = [(p, p.prepare(batch.events, last_id)) for p in self.projections]
        writes = [(p, work) for p, work in prepared if work is not None]
        if writes:
            self._write(writes, last_id)
        # After the views dropped their documents, so the scrub that follows the keys'
        # destruction takes those rows too; also when the views were already past the batch
        # (a crash after their commit): destroying a key twice changes nothing.
        deleted = [
            instance_global_id(e.account_id, e.workflow_name, e.instance_id)
            for _, e in batch.events
            if isinstance(e, InstanceDeleted)
        ]
        if deleted:
            self._erase(deleted)

    def _write(self, writes: list[tuple[Projection, Prepared]], last_id: int) -> None:
        try:
            with writes[0][0].view.transaction(commit=True) as cursor:
                for projection, (rows, expected, gone) in writes:
                    tracking = Tracking(projection.name, last_id)
                    projection.view.write_in(cursor, rows, tracking, expected, gone)
        except ViewMoved:
            # A view was rebuilt under us: the follower re-reads the positions and goes on.
            for projection in self.projections:
                projection.forget_position()
            raise
        for projection, _ in writes:
            projection.written(last_id)

    async def handle(self, batch: Batch) -> None:
        await asyncio.to_thread(self.process, batch)

    def catch_up(self, notification_log: NotificationLog) -> int:
        """Blocking: folds everything after the group's position; returns how many
        notifications it read."""
        start = applied = self.position() or 0
        while batch := notification_log.read(start, 1000):
            self.process(batch)
            start = batch.last_id
        return start - applied


def _row(
    key: str, doc: dict[str, Any], row_field: str | None, before: dict[str, Any] | None
) -> Row:
    return Row(
        key=key,
        account_id=doc["account_id"],
        workflow_name=doc["workflow_name"],
        status=doc["status"],
        created_at=doc["created_on"],
        doc=doc,
        row_field=row_field,
        before=before,
    )


def rebuild(
    notification_log: NotificationLog, live: DocumentView, shadow: DocumentView, model: ReadModel
) -> int:
    """Blocking: folds the whole history into `shadow`, then swaps it in for `live`.

    Readers keep the old documents until the swap; a live projection writing meanwhile gets
    `ViewMoved` on its next write and carries on from the rebuilt position.
    """
    shadow.clear()
    applied = Projection(shadow, model).catch_up(notification_log)
    live.replace_with(shadow)
    shadow.clear()
    return applied


class ProjectionsRole(FollowingRole):
    """Every read model, kept up to date by one follower of the notification log."""

    def __init__(self, context: RoleContext) -> None:
        parking = parking_for(context, "projections")
        self.projections = [
            Projection(context.views[name], model, on_skip=_skipped(context, parking, name))
            for name, model in READ_MODELS.items()
        ]
        # The projections follower destroys deleted instances' keys: at-least-once, after the
        # InstanceDeleted event is stored, whichever role or process deleted the instance.
        group = ProjectionGroup(self.projections, erase=context.app.erase)
        follower = follower_for(context, "projections", group.position, group.handle)
        super().__init__(follower, context.stopping)


def _skipped(context: RoleContext, parking: Parking, view: str) -> Callable[[int, Exception], None]:
    """Counts a fold skipped by `view` and records it in the store (blocking, in the batch's
    thread: if the store is away the batch fails and is retried, nothing is lost)."""
    skips = context.metrics.projection_skips.labels(view)

    def skipped(notification_id: int, error: Exception) -> None:
        skips.inc()
        parking.record([parking.note(f"notification {notification_id} in {view}", error)])

    return skipped
