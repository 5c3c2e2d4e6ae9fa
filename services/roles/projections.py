"""The projections role: keeps every read model up to date from the notification log.

Each projection writes its documents and its tracking position in one transaction, so each
event is applied exactly once even across crashes; `rebuild` clears a view and replays all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import Notification, Tracking

from contracts.events import InstanceEvent, LifecycleEvent
from contracts.keys import instance_global_id
from projections.document_view import DocumentView, Row
from services.application.app import FlowledgerApplication
from services.application.lifecycle import LifecycleTranslator

Apply = Callable[[dict[str, Any] | None, LifecycleEvent], dict[str, Any] | None]


class Projection:
    def __init__(self, app: FlowledgerApplication, view: DocumentView, apply: Apply) -> None:
        self._app = app
        self.view = view
        self._apply = apply
        self._translator = LifecycleTranslator(app.first_event)

    @property
    def name(self) -> str:
        return self.view.view_name

    def position(self) -> int | None:
        return self.view.position()

    def process(self, notifications: Sequence[Notification]) -> None:
        """Blocking: run it off the event loop."""
        events = [
            e
            for e in (
                self._translator.translate(self._app.mapper.to_domain_event(n))
                for n in notifications
            )
            if isinstance(e, InstanceEvent)
        ]
        touched = sorted({_global_id(e) for e in events})
        docs = self.view.get_many(touched)
        for event in events:
            key = _global_id(event)
            doc = self._apply(docs.get(key), event)
            if doc is not None:
                docs[key] = doc
        rows = [_row(key, docs[key]) for key in touched if key in docs]
        self.view.write(rows, Tracking(self.name, notifications[-1].id))

    async def handle(self, notifications: Sequence[Notification]) -> None:
        await asyncio.to_thread(self.process, notifications)


def _global_id(event: InstanceEvent) -> str:
    return str(instance_global_id(event.account_id, event.workflow_name, event.instance_id))


def _row(key: str, doc: dict[str, Any]) -> Row:
    return Row(
        key=key,
        account_id=doc["account_id"],
        workflow_name=doc["workflow_name"],
        status=doc["status"],
        created_at=doc["created_on"],
        doc=doc,
    )
