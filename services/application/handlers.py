"""One function per command: load the aggregate, call one method, describe the outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from contracts import commands as c
from contracts.keys import minted_instance_id, workflow_version_id
from contracts.replies import BulkItem, Reply
from services.application.validation import (
    InvalidCommand,
    check_chosen_instance_id,
    check_cron,
    check_duration,
    check_json_size,
    check_sleep,
    check_wait_timeout,
)
from services.domain.errors import InstanceAlreadyExists, InstanceNotFound, WorkflowNotFound
from services.domain.instance import WorkflowInstance
from services.domain.workflow import Workflow

if TYPE_CHECKING:
    from services.application.app import UnitOfWork


@dataclass
class Decision:
    """What an accepted command did, enough to answer it."""

    instance: WorkflowInstance | None = None
    workflow: Workflow | None = None
    bulk: list[BulkItem] = field(default_factory=list)

    def reply(self, command: Any) -> Reply:
        reply = Reply(
            command_id=command.command_id,
            outcome="accepted",
            account_id=command.account_id,
            workflow_name=command.workflow_name,
        )
        if self.instance is not None:
            reply.instance_id = self.instance.instance_id
            reply.status = self.instance.status
            reply.version = self.instance.version
            reply.workflow_id = str(self.instance.workflow_id)
            reply.version_id = str(self.instance.version_id)
        if self.workflow is not None:
            reply.version = self.workflow.version
            reply.workflow_id = str(self.workflow.id)
            reply.version_id = str(self.workflow.current_version_id)
        if self.bulk:
            reply.instances = self.bulk
        return reply


Handler = Callable[["UnitOfWork", Any, datetime], Decision]


def _instance(unit: UnitOfWork, command: c.InstanceCommand) -> WorkflowInstance:
    instance = unit.get(
        WorkflowInstance.create_id(command.account_id, command.workflow_name, command.instance_id)
    )
    if instance is None or instance.deleted:
        raise InstanceNotFound(
            f"instance {command.instance_id!r} of workflow {command.workflow_name!r} does not exist"
        )
    return instance  # type: ignore[no-any-return]


def _error(value: c.ErrorInfo | None) -> dict[str, str] | None:
    return None if value is None else {"name": value.name, "message": value.message}


def _check_retention(what: str, retention: c.Retention | None) -> None:
    if retention is not None:
        check_duration(f"{what}.success_retention", retention.success_retention)
        check_duration(f"{what}.error_retention", retention.error_retention)


def register_workflow(unit: UnitOfWork, cmd: c.RegisterWorkflow, now: datetime) -> Decision:
    for expression in cmd.schedules:
        check_cron(expression, now)
    _check_retention("retention", cmd.retention)
    retention = msgspec.to_builtins(cmd.retention)
    workflow_id = Workflow.create_id(cmd.account_id, cmd.workflow_name)
    workflow: Workflow | None = unit.get(workflow_id)
    if workflow is None:
        workflow = Workflow(
            retention,
            account_id=cmd.account_id,
            workflow_name=cmd.workflow_name,
            version_id=workflow_version_id(workflow_id, 1),
            class_name=cmd.class_name,
            script_name=cmd.script_name,
            schedules=cmd.schedules,
            command_id=cmd.command_id,
            at=now,
        )
        unit.add(workflow)
    else:
        workflow.deploy(
            retention,
            version_id=workflow_version_id(workflow_id, workflow.next_version_number),
            class_name=cmd.class_name,
            script_name=cmd.script_name,
            schedules=cmd.schedules,
            command_id=cmd.command_id,
            at=now,
        )
    return Decision(workflow=workflow)


def _check_body(body: c.InstanceBody) -> None:
    check_chosen_instance_id(body.instance_id)
    check_json_size("params", body.params)
    check_duration("timeout", body.timeout)
    _check_retention("retention", body.retention)


def _retention(body: c.InstanceBody, workflow: Workflow) -> dict[str, Any] | None:
    """The instance's own retention, each field it leaves unset taken from the workflow's
    default as it is now (a changed default applies to instances created afterwards)."""
    own = msgspec.to_builtins(body.retention) or {}
    default = workflow.retention or {}
    merged = {
        name: own.get(name) if own.get(name) is not None else default.get(name)
        for name in ("success_retention", "error_retention")
    }
    return merged if any(v is not None for v in merged.values()) else None


def _new_instance(
    unit: UnitOfWork,
    cmd: Any,
    body: c.InstanceBody,
    instance_id: str,
    workflow: Workflow,
    now: datetime,
) -> WorkflowInstance:
    metadata_fields = (
        "parent_instance_id",
        "mode",
        "triggered_by",
        "user_id",
        "workspace_id",
        "subject_id",
        "applicant_id",
        "customer_user_id",
        "tags",
        "link",
    )
    instance = WorkflowInstance(
        account_id=cmd.account_id,
        workflow_name=cmd.workflow_name,
        instance_id=instance_id,
        workflow_id=workflow.id,
        version_id=workflow.current_version_id,
        workflow_version=len(workflow.versions),
        params=body.params,
        trigger_source=body.trigger_source,
        schedule=msgspec.to_builtins(body.schedule),
        retention=_retention(body, workflow),
        timeout=body.timeout,
        metadata={name: msgspec.to_builtins(getattr(body, name)) for name in metadata_fields},
        command_id=cmd.command_id,
        at=now,
    )
    unit.add(instance)
    return instance


def _workflow(unit: UnitOfWork, cmd: Any) -> Workflow:
    workflow: Workflow | None = unit.get(Workflow.create_id(cmd.account_id, cmd.workflow_name))
    if workflow is None:
        raise WorkflowNotFound(
            f"workflow {cmd.workflow_name!r} is not registered in account {cmd.account_id!r}; "
            "send RegisterWorkflow first"
        )
    return workflow


def create_instance(unit: UnitOfWork, cmd: c.CreateInstance, now: datetime) -> Decision:
    _check_body(cmd)
    workflow = _workflow(unit, cmd)
    instance_id = cmd.instance_id or minted_instance_id(cmd.command_id)
    existing = unit.get(WorkflowInstance.create_id(cmd.account_id, cmd.workflow_name, instance_id))
    if existing is not None and existing.deleted:
        raise InstanceAlreadyExists(
            f"instance {instance_id!r} of workflow {cmd.workflow_name!r} was deleted; "
            "ids are not reused: choose another id"
        )
    if existing is not None:
        raise InstanceAlreadyExists(
            f"instance {instance_id!r} already exists in workflow {cmd.workflow_name!r}; "
            "choose another id or restart it"
        )
    return Decision(instance=_new_instance(unit, cmd, cmd, instance_id, workflow, now))


def create_instances(unit: UnitOfWork, cmd: c.CreateInstances, now: datetime) -> Decision:
    for body in cmd.instances:
        _check_body(body)
    workflow = _workflow(unit, cmd)
    ids = [
        body.instance_id or minted_instance_id(f"{cmd.command_id}:{index}")
        for index, body in enumerate(cmd.instances)
    ]
    if len(set(ids)) != len(ids):
        raise InvalidCommand("instance ids repeat within the batch")
    items = []
    for body, instance_id in zip(cmd.instances, ids, strict=True):
        existing = unit.get(
            WorkflowInstance.create_id(cmd.account_id, cmd.workflow_name, instance_id)
        )
        instance = existing or _new_instance(unit, cmd, body, instance_id, workflow, now)
        items.append(
            BulkItem(
                instance_id=instance_id,
                status=instance.status,
                version=instance.version,
                skipped=existing is not None,
            )
        )
    return Decision(bulk=items)


def change_status(unit: UnitOfWork, cmd: c.ChangeStatus, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    if cmd.action == "pause":
        instance.pause(command_id=cmd.command_id, at=now)
    elif cmd.action == "resume":
        instance.resume(command_id=cmd.command_id, at=now)
    elif cmd.action == "terminate":
        instance.terminate(rollback=cmd.rollback, command_id=cmd.command_id, at=now)
    else:
        instance.restart(
            from_step=msgspec.to_builtins(cmd.from_), command_id=cmd.command_id, at=now
        )
    return Decision(instance=instance)


def delete_instance(unit: UnitOfWork, cmd: c.DeleteInstance, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.delete(reason=cmd.reason, command_id=cmd.command_id, at=now)
    return Decision(instance=instance)


def send_event(unit: UnitOfWork, cmd: c.SendEvent, now: datetime) -> Decision:
    check_json_size("payload", cmd.payload)
    instance = _instance(unit, cmd)
    instance.send_event(
        event_type=cmd.event_type, payload=cmd.payload, command_id=cmd.command_id, at=now
    )
    return Decision(instance=instance)


def start_run(unit: UnitOfWork, cmd: c.StartRun, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.start_run(command_id=cmd.command_id, at=now)
    return Decision(instance=instance)


def begin_step(unit: UnitOfWork, cmd: c.BeginStep, now: datetime) -> Decision:
    check_wait_timeout(cmd.wait_timeout)
    check_sleep(cmd.step_type, cmd.sleep_ms)
    _check_step_config(cmd.config)
    instance = _instance(unit, cmd)
    instance.begin_step(
        name=cmd.name,
        step_type=cmd.step_type,
        config=msgspec.to_builtins(cmd.config),
        sleep_ms=cmd.sleep_ms,
        event_type=cmd.event_type,
        wait_timeout=cmd.wait_timeout,
        command_id=cmd.command_id,
        at=now,
        max_steps=unit.max_steps,
    )
    return Decision(instance=instance)


def _check_step_config(config: c.StepConfig | None) -> None:
    if config is not None:
        check_duration("config.timeout", config.timeout)
        check_duration("config.retries.delay", config.retries.delay)


def begin_attempt(unit: UnitOfWork, cmd: c.BeginAttempt, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.begin_attempt(name=cmd.name, command_id=cmd.command_id, at=now)
    return Decision(instance=instance)


def end_attempt(unit: UnitOfWork, cmd: c.EndAttempt, now: datetime) -> Decision:
    check_json_size("output", cmd.output)
    instance = _instance(unit, cmd)
    instance.end_attempt(
        name=cmd.name,
        success=cmd.success,
        output=cmd.output,
        error=_error(cmd.error),
        command_id=cmd.command_id,
        at=now,
        retryable=cmd.retryable,
    )
    return Decision(instance=instance)


def end_step(unit: UnitOfWork, cmd: c.EndStep, now: datetime) -> Decision:
    check_json_size("output", cmd.output)
    instance = _instance(unit, cmd)
    instance.end_step(
        name=cmd.name,
        success=cmd.success,
        output=cmd.output,
        error=_error(cmd.error),
        command_id=cmd.command_id,
        at=now,
    )
    return Decision(instance=instance)


def record_step(unit: UnitOfWork, cmd: c.RecordStep, now: datetime) -> Decision:
    """BeginStep, BeginAttempt, EndAttempt and EndStep in one: checked as those are."""
    _check_step_config(cmd.config)
    check_json_size("output", cmd.output)
    check_json_size("run_output", cmd.run_output)
    if cmd.run_output is not None and not cmd.complete_run:
        raise InvalidCommand("run_output is the output of a run that completes: complete_run")
    instance = _instance(unit, cmd)
    instance.record_step(
        name=cmd.name,
        config=msgspec.to_builtins(cmd.config),
        output=cmd.output,
        start_run=cmd.start_run,
        complete_run=cmd.complete_run,
        run_output=cmd.run_output,
        command_id=cmd.command_id,
        at=now,
        max_steps=unit.max_steps,
    )
    return Decision(instance=instance)


def end_sleep(unit: UnitOfWork, cmd: c.EndSleep, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.end_sleep(name=cmd.name, command_id=cmd.command_id, at=now)
    return Decision(instance=instance)


def time_out_wait(unit: UnitOfWork, cmd: c.TimeOutWait, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.time_out_wait(name=cmd.name, command_id=cmd.command_id, at=now)
    return Decision(instance=instance)


def time_out_attempt(unit: UnitOfWork, cmd: c.TimeOutAttempt, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.time_out_attempt(name=cmd.name, attempt=cmd.attempt, command_id=cmd.command_id, at=now)
    return Decision(instance=instance)


def time_out_instance(unit: UnitOfWork, cmd: c.TimeOutInstance, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.time_out(command_id=cmd.command_id, at=now)
    return Decision(instance=instance)


def acknowledge_pause(unit: UnitOfWork, cmd: c.AcknowledgePause, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.acknowledge_pause(command_id=cmd.command_id, at=now)
    return Decision(instance=instance)


def complete_run(unit: UnitOfWork, cmd: c.CompleteRun, now: datetime) -> Decision:
    check_json_size("output", cmd.output)
    instance = _instance(unit, cmd)
    instance.complete_run(
        output=cmd.output,
        outcome=cmd.outcome,
        reasons=cmd.reasons,
        command_id=cmd.command_id,
        at=now,
    )
    return Decision(instance=instance)


def fail_run(unit: UnitOfWork, cmd: c.FailRun, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.fail_run(
        error=_error(cmd.error) or {}, timed_out=cmd.timed_out, command_id=cmd.command_id, at=now
    )
    return Decision(instance=instance)


def end_rollback(unit: UnitOfWork, cmd: c.EndRollback, now: datetime) -> Decision:
    instance = _instance(unit, cmd)
    instance.end_rollback(
        outcome=cmd.outcome, error=_error(cmd.error), command_id=cmd.command_id, at=now
    )
    return Decision(instance=instance)


HANDLERS: dict[type, Handler] = {
    c.RegisterWorkflow: register_workflow,
    c.CreateInstance: create_instance,
    c.CreateInstances: create_instances,
    c.ChangeStatus: change_status,
    c.DeleteInstance: delete_instance,
    c.SendEvent: send_event,
    c.StartRun: start_run,
    c.BeginStep: begin_step,
    c.BeginAttempt: begin_attempt,
    c.EndAttempt: end_attempt,
    c.EndStep: end_step,
    c.RecordStep: record_step,
    c.EndSleep: end_sleep,
    c.TimeOutWait: time_out_wait,
    c.TimeOutAttempt: time_out_attempt,
    c.TimeOutInstance: time_out_instance,
    c.AcknowledgePause: acknowledge_pause,
    c.CompleteRun: complete_run,
    c.FailRun: fail_run,
    c.EndRollback: end_rollback,
}
