"""A deleted instance's document leaves every per-instance view, live and rebuilt."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts import commands as c
from contracts.keys import instance_global_id
from projections import agent_run, cloudflare_instance, onfido_run, staged_instance
from services.application.notification_log import NotificationLog
from services.bootstrap import build_application
from services.roles.projections import Projection, ProjectionGroup, rebuild
from services.settings import Settings
from services.store.document_view import Query, open_view

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
MODELS = [cloudflare_instance, agent_run, onfido_run, staged_instance]


def _model(module: Any, name: str) -> Any:
    model = type("Model", (), {})()
    model.VIEW_NAME = name
    model.apply = module.apply
    model.key_of = module.key_of
    return model


def _commands(account: str, instance_id: str, *kinds: type) -> list[Any]:
    return [
        kind(
            command_id=str(uuid.uuid4()),
            account_id=account,
            workflow_name="wf",
            instance_id=instance_id,
        )
        for kind in kinds
    ]


def test_deleting_removes_the_row_from_every_view_and_a_rebuild_omits_it(
    store_url: str, new_id: str
) -> None:
    app = build_application(Settings(store=store_url))
    account = f"acc{new_id}"
    names = [f"{m.VIEW_NAME[:6]}{new_id}" for m in MODELS]
    models = {name: _model(m, name) for name, m in zip(names, MODELS, strict=True)}
    views = {name: open_view(app.factory, name) for name in models}
    group = ProjectionGroup([Projection(views[name], models[name]) for name in models])
    log = NotificationLog(app)
    finish = (c.CreateInstance, c.StartRun, c.CompleteRun)
    try:
        register = c.RegisterWorkflow(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
        )
        app.handle([register, *_commands(account, "kept", *finish)], NOW)
        app.handle(_commands(account, "gone", *finish), NOW)
        group.catch_up(log)  # "gone" is in the views ...
        app.handle(_commands(account, "gone", c.DeleteInstance), NOW)
        # ... and one created and deleted within the same batch never gets a row.
        app.handle(_commands(account, "brief", *finish, c.DeleteInstance), NOW)
        group.catch_up(log)

        for name, view in views.items():
            assert view.count(Query(account_id=account)) == 1, name
            gone_key = str(instance_global_id(account, "wf", "gone"))
            assert view.get(gone_key) is None, name

            rebuild(log, view, open_view(app.factory, f"{name}__rebuild"), models[name])
            assert view.count(Query(account_id=account)) == 1, name
            assert view.get(gone_key) is None, name
            kept_key = str(instance_global_id(account, "wf", "kept"))
            assert view.get(kept_key) is not None, name
    finally:
        app.close()
