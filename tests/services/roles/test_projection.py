"""A projection on real stores: exactly-once positions and safety against a rebuild under it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import commands as c
from contracts.events import LifecycleEvent
from projections import cloudflare_instance
from services.application.notification_log import NotificationLog
from services.bootstrap import build_application
from services.roles.projections import Projection, rebuild
from services.settings import Settings
from services.store.document_view import Query, ViewMoved, open_view

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _create(account: str, instance_id: str) -> c.CreateInstance:
    return c.CreateInstance(
        command_id=str(uuid.uuid4()),
        account_id=account,
        workflow_name="wf",
        instance_id=instance_id,
    )


def test_a_projection_rebuilt_under_it_refuses_its_stale_write_then_carries_on(
    store_url: str, new_id: str
) -> None:
    app = build_application(Settings(store=store_url))
    name = f"cf{new_id}"
    model = type("Model", (), {})()
    model.VIEW_NAME = name
    model.apply = cloudflare_instance.apply
    model.key_of = cloudflare_instance.key_of
    live = open_view(app.factory, name)
    stale = Projection(live, model)
    notification_log = NotificationLog(app)
    try:
        account = f"acc{new_id}"
        register = c.RegisterWorkflow(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
        )
        app.handle([register, _create(account, "first")], NOW)
        first = notification_log.read(0, 1000)
        assert first is not None
        stale.process(first)
        app.handle([_create(account, "late")], NOW)

        rebuild(notification_log, live, open_view(app.factory, f"{name}__rebuild"), model)
        rebuilt = live.position()
        later = notification_log.read(first.last_id, 1000)
        assert later is not None and rebuilt == later.last_id

        with pytest.raises(ViewMoved):
            stale.process(later)  # it read its documents before the swap: must not write
        assert live.position() == rebuilt
        assert stale.catch_up(notification_log) == 0  # re-reads the position: nothing to fold
    finally:
        app.close()


def test_a_fold_that_fails_on_one_event_skips_it_counts_it_and_keeps_the_rest(
    store_url: str, new_id: str
) -> None:
    app = build_application(Settings(store=store_url))
    name = f"cf{new_id}"

    def apply(doc: dict[str, Any] | None, event: LifecycleEvent) -> dict[str, Any] | None:
        if getattr(event, "instance_id", None) == "poison":
            raise ValueError("a bug in this fold")
        return cloudflare_instance.apply(doc, event)

    model = type("Model", (), {})()
    model.VIEW_NAME = name
    model.apply = apply
    model.key_of = cloudflare_instance.key_of
    skipped: list[int] = []
    view = open_view(app.factory, name)
    projection = Projection(view, model, on_skip=lambda *_: skipped.append(1))
    try:
        account = f"acc{new_id}"
        register = c.RegisterWorkflow(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
        )
        app.handle([register, _create(account, "poison"), _create(account, "fine")], NOW)

        projection.catch_up(NotificationLog(app))

        assert skipped == [1]
        assert view.position() == app.recorder.max_notification_id()
        found = {d["id"] for d in view.find(Query(account_id=account))}
        assert found == {"fine"}
    finally:
        app.close()
