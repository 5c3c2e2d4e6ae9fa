"""One query per batch tells which aggregates exist, on both stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import commands as c
from services.application.command_log import command_record_id
from services.application.existing import existing_ids
from services.bootstrap import build_application
from services.domain.instance import WorkflowInstance
from services.domain.workflow import Workflow
from services.settings import Settings


def test_only_aggregates_with_stored_events_are_reported_as_existing(
    store_url: str, new_id: str
) -> None:
    app = build_application(Settings(store=store_url))
    try:
        account = f"acc{new_id}"
        register = c.RegisterWorkflow(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf"
        )
        create = c.CreateInstance(
            command_id=str(uuid.uuid4()), account_id=account, workflow_name="wf", instance_id="a"
        )
        app.handle([register, create], datetime.now(UTC))
        instance = WorkflowInstance.create_id(account, "wf", "a")
        workflow = Workflow.create_id(account, "wf")
        record = command_record_id(create.command_id)
        absent = [WorkflowInstance.create_id(account, "wf", "b"), uuid.uuid4()]

        assert existing_ids(app.recorder, [instance, workflow, record, *absent]) == {
            instance,
            workflow,
            record,
        }
        assert existing_ids(app.recorder, []) == set()
    finally:
        app.close()
