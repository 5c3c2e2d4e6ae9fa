"""Command records are told apart from lifecycle events by their stored topic alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import commands as c
from services.application.lifecycle import is_lifecycle
from services.bootstrap import build_application
from services.settings import Settings


def test_only_command_records_are_left_out_of_the_lifecycle(store_url: str, new_id: str) -> None:
    app = build_application(Settings(store=store_url))
    try:
        account = f"acc{new_id}"
        register = c.RegisterWorkflow(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
        )
        create = c.CreateInstance(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf", instance_id="i"
        )
        before = app.recorder.max_notification_id() or 0
        app.handle([register, create], datetime.now(UTC))
        stored = app.recorder.select_notifications(before, 100, inclusive_of_start=False)

        kept = [n.topic.rsplit(".", 1)[-1] for n in stored if is_lifecycle(n)]
        left_out = [n.topic.rsplit(".", 1)[-1] for n in stored if not is_lifecycle(n)]
        assert sorted(kept) == ["InstanceCreated", "WorkflowRegistered"]
        assert left_out == ["CommandAccepted", "CommandAccepted"]
    finally:
        app.close()
