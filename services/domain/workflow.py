"""The Workflow aggregate: a named workflow of an account and its deployed versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.keys import workflow_global_id


class Workflow(Aggregate):
    @staticmethod
    def create_id(account_id: str, workflow_name: str) -> UUID:  # type: ignore[override]
        return workflow_global_id(account_id, workflow_name)

    @event("WorkflowRegistered")
    def __init__(
        self,
        # Not keyword-only: eventsourcing's @event ignores the defaults of keyword-only
        # parameters, and events stored before it carry none.
        retention: dict[str, Any] | None = None,
        *,
        account_id: str,
        workflow_name: str,
        version_id: UUID,
        class_name: str | None,
        script_name: str | None,
        command_id: str,
        at: datetime,
        schedules: list[str] | None = None,
    ) -> None:
        self.account_id = account_id
        self.schedules = list(schedules or [])
        # The default retention of the instances created from now on (None: kept forever).
        self.retention = retention
        self.workflow_name = workflow_name
        self.versions: list[UUID] = [version_id]
        self.class_name = class_name
        self.script_name = script_name
        self.created_at = at
        self.updated_at = at

    @property
    def current_version_id(self) -> UUID:
        return self.versions[-1]

    @property
    def next_version_number(self) -> int:
        return len(self.versions) + 1

    def deploy(
        self,
        retention: dict[str, Any] | None = None,
        *,
        version_id: UUID,
        class_name: str | None,
        script_name: str | None,
        command_id: str,
        at: datetime,
        schedules: list[str] | None = None,
    ) -> None:
        self._version_deployed(
            retention,
            version_id=version_id,
            class_name=class_name,
            script_name=script_name,
            schedules=list(schedules or []),
            command_id=command_id,
            at=at,
        )

    @event("WorkflowVersionDeployed")
    def _version_deployed(
        self,
        retention: dict[str, Any] | None = None,
        *,
        version_id: UUID,
        class_name: str | None,
        script_name: str | None,
        command_id: str,
        at: datetime,
        schedules: list[str] | None = None,
    ) -> None:
        self.versions.append(version_id)
        self.schedules = list(schedules or [])
        self.retention = retention
        self.class_name = class_name
        self.script_name = script_name
        self.updated_at = at

    def summary(self) -> dict[str, Any]:
        return {"workflow_id": self.id, "version_id": self.current_version_id}
