"""The projections role: keeps every read model up to date from the notification log.

Each projection writes its documents and its tracking position in one transaction, so each
event is applied exactly once even across crashes; `rebuild` folds the history beside the
live view and swaps it in, so readers never see a half-built one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from eventsourcing.persistence import Notification, Tracking

from contracts.events import LifecycleEvent
from projections.document_view import DocumentView, Row, ViewMoved
from services.application.app import FlowledgerApplication
from services.application.lifecycle import LifecycleTranslator

Apply = Callable[[dict[str, Any] | None, LifecycleEvent], dict[str, Any] | None]
KeyOf = Callable[[LifecycleEvent], str | None]


class ReadModel(Protocol):
    """What a module in `projections/` offers: its view's name, a pure fold and its keys."""

    VIEW_NAME: str

    def apply(self, doc: dict[str, Any] | None, event: LifecycleEvent) -> dict[str, Any] | None: ...

    def key_of(self, event: LifecycleEvent) -> str | None: ...


class Projection:
    def __init__(self, app: FlowledgerApplication, view: DocumentView, model: ReadModel) -> None:
        self._app = app
        self.view = view
        self._apply: Apply = model.apply
        self._key_of: KeyOf = model.key_of
        self._translator = LifecycleTranslator(app.first_event)
        self._expected: int | None = None
        self._expected_known = False

    @property
    def name(self) -> str:
        return self.view.view_name

    def position(self) -> int | None:
        return self.view.position()

    def process(self, notifications: Sequence[Notification]) -> None:
        """Blocking: run it off the event loop."""
        keyed = [
            (key, event)
            for event in (
                self._translator.translate(self._app.mapper.to_domain_event(n))
                for n in notifications
            )
            if event is not None and (key := self._key_of(event)) is not None
        ]
        touched = sorted({key for key, _ in keyed})
        docs = self.view.get_many(touched)
        for key, event in keyed:
            doc = self._apply(docs.get(key), event)
            if doc is not None:
                docs[key] = doc
        rows = [_row(key, docs[key]) for key in touched if key in docs]
        if not self._expected_known:
            self._expected, self._expected_known = self.view.position(), True
        try:
            self.view.write(rows, Tracking(self.name, notifications[-1].id), self._expected)
        except ViewMoved:
            # Rebuilt under us: the follower re-reads the position and folds from there.
            self._expected_known = False
            raise
        self._expected = notifications[-1].id

    async def handle(self, notifications: Sequence[Notification]) -> None:
        await asyncio.to_thread(self.process, notifications)

    def catch_up(self) -> int:
        """Blocking: folds everything after the view's position; returns how many it read."""
        start, applied = self.position() or 0, 0
        while batch := self._app.recorder.select_notifications(
            start, 1000, inclusive_of_start=False
        ):
            self.process(batch)
            start, applied = batch[-1].id, applied + len(batch)
        return applied


def _row(key: str, doc: dict[str, Any]) -> Row:
    return Row(
        key=key,
        account_id=doc["account_id"],
        workflow_name=doc["workflow_name"],
        status=doc["status"],
        created_at=doc["created_on"],
        doc=doc,
    )


def rebuild(
    app: FlowledgerApplication, live: DocumentView, shadow: DocumentView, model: ReadModel
) -> int:
    """Blocking: folds the whole history into `shadow`, then swaps it in for `live`.

    Readers keep the old documents until the swap; a live projection writing meanwhile gets
    `ViewMoved` on its next write and carries on from the rebuilt position.
    """
    shadow.clear()
    applied = Projection(app, shadow, model).catch_up()
    live.replace_with(shadow)
    shadow.clear()
    return applied
