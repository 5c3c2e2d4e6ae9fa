"""Checks beyond the contract's types, through the command handlers (no store needed)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import commands as c
from contracts.keys import minted_instance_id
from contracts.limits import MAX_RETRIES
from services.application import handlers
from services.application.validation import InvalidCommand, ReservedInstanceId
from services.roles.intake import Record, decode_records

NOW = datetime(2026, 1, 2, tzinfo=UTC)
MINTED_SHAPE = "cf_" + "0123456789abcdef" * 4


class _Unit:
    """The part of the application's unit of work the handlers use, in memory."""

    def __init__(self) -> None:
        self.aggregates: dict[uuid.UUID, Any] = {}

    def get(self, aggregate_id: uuid.UUID) -> Any:
        return self.aggregates.get(aggregate_id)

    def add(self, aggregate: Any) -> None:
        self.aggregates[aggregate.id] = aggregate


def _cid() -> str:
    return str(uuid.uuid4())


def _registered() -> _Unit:
    unit = _Unit()
    register = c.RegisterWorkflow(command_id=_cid(), account_id="acc", workflow_name="wf")
    handlers.register_workflow(unit, register, NOW)  # type: ignore[arg-type]
    return unit


def _create(instance_id: str | None) -> c.CreateInstance:
    return c.CreateInstance(
        command_id=_cid(), account_id="acc", workflow_name="wf", instance_id=instance_id
    )


def test_a_create_choosing_an_id_of_the_minted_shape_is_rejected_as_reserved() -> None:
    unit = _registered()
    with pytest.raises(ReservedInstanceId) as rejected:
        handlers.create_instance(unit, _create(MINTED_SHAPE), NOW)  # type: ignore[arg-type]
    assert rejected.value.code == "instance.id_reserved"
    assert not [a for a in unit.aggregates.values() if hasattr(a, "instance_id")]


def test_a_create_cannot_take_the_id_another_commands_create_will_mint() -> None:
    unit = _registered()
    other = _create(None)
    with pytest.raises(ReservedInstanceId):
        handlers.create_instance(unit, _create(minted_instance_id(other.command_id)), NOW)  # type: ignore[arg-type]
    minted = handlers.create_instance(unit, other, NOW).instance  # type: ignore[arg-type]
    assert minted is not None and minted.instance_id == minted_instance_id(other.command_id)


def test_a_batch_with_one_reserved_id_is_rejected_whole() -> None:
    unit = _registered()
    batch = c.CreateInstances(
        command_id=_cid(),
        account_id="acc",
        workflow_name="wf",
        instances=[c.InstanceBody(instance_id="fine"), c.InstanceBody(instance_id=MINTED_SHAPE)],
    )
    with pytest.raises(ReservedInstanceId):
        handlers.create_instances(unit, batch, NOW)  # type: ignore[arg-type]
    assert not [a for a in unit.aggregates.values() if hasattr(a, "instance_id")]


@pytest.mark.parametrize(
    "instance_id",
    [MINTED_SHAPE.upper().replace("CF_", "cf_"), MINTED_SHAPE[:-1], MINTED_SHAPE + "0", "cf_order"],
)
def test_ids_that_only_resemble_a_minted_one_are_the_clients_to_choose(instance_id: str) -> None:
    created = handlers.create_instance(_registered(), _create(instance_id), NOW)  # type: ignore[arg-type]
    assert created.instance is not None and created.instance.instance_id == instance_id


def _begin_sleep(sleep_ms: int | None) -> c.BeginStep:
    return c.BeginStep(
        command_id=_cid(),
        account_id="acc",
        workflow_name="wf",
        instance_id="i",
        name="nap",
        step_type="sleep",
        sleep_ms=sleep_ms,
    )


@pytest.mark.parametrize("sleep_ms", [None, 365 * 86_400_000 + 1])
def test_a_sleep_needs_a_length_of_at_most_a_year(sleep_ms: int | None) -> None:
    with pytest.raises(InvalidCommand, match="sleep_ms"):
        handlers.begin_step(_Unit(), _begin_sleep(sleep_ms), NOW)  # type: ignore[arg-type]


# --- schedules and retry limits: what would stop the scheduler or retry for years ------


def _register(*schedules: str) -> c.RegisterWorkflow:
    return c.RegisterWorkflow(
        command_id=str(uuid.uuid4()),
        account_id=f"acc{uuid.uuid4().hex[:8]}",
        workflow_name="wf",
        schedules=list(schedules),
    )


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *"])
def test_a_schedule_that_never_ticks_is_rejected_as_never_running(expression: str) -> None:
    unit = _Unit()
    with pytest.raises(InvalidCommand) as rejected:
        handlers.register_workflow(unit, _register("* * * * *", expression), NOW)  # type: ignore[arg-type]
    assert rejected.value.code == "command.invalid"
    assert expression in str(rejected.value) and "no tick in the next 5 years" in str(
        rejected.value
    )
    assert not unit.aggregates


@pytest.mark.parametrize("expression", ["@reboot", "@daily", "0 0 * * * *", "0 0 1 1 * 2050"])
def test_macros_and_other_field_counts_are_rejected_naming_the_five_fields(
    expression: str,
) -> None:
    with pytest.raises(InvalidCommand) as rejected:
        handlers.register_workflow(_Unit(), _register(expression), NOW)  # type: ignore[arg-type]
    message = str(rejected.value)
    assert expression in message and "5-field cron expression" in message
    assert "minute hour day-of-month month day-of-week" in message


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "*/5 * * * *", "30 9 * * 1-5"])
def test_a_schedule_with_a_tick_within_five_years_is_registered(expression: str) -> None:
    decision = handlers.register_workflow(_Unit(), _register(expression), NOW)  # type: ignore[arg-type]
    assert decision.workflow is not None and decision.workflow.schedules == [expression]


def _record(body: dict[str, Any]) -> Record:
    return Record(
        key=b"k", value=json.dumps(body).encode(), topic="p.commands", partition=0, offset=0
    )


def _rejection(body: dict[str, Any]) -> str:
    [(reply, _)] = decode_records([_record(body)]).replies
    assert reply.outcome == "rejected" and reply.error is not None
    assert reply.error.code == "command.invalid"
    return reply.error.message


def test_a_short_macro_reaches_the_schedule_check_instead_of_a_length_error() -> None:
    body = {
        "type": "RegisterWorkflow",
        "command_id": str(uuid.uuid4()),
        "account_id": "acc",
        "workflow_name": "wf",
        "schedules": ["@reboot"],
    }
    intake = decode_records([_record(body)])
    assert not intake.replies, [r.error for r, _ in intake.replies]
    [(command, _)] = intake.commands
    with pytest.raises(InvalidCommand, match="5-field cron expression"):
        handlers.register_workflow(_Unit(), command, NOW)  # type: ignore[arg-type]


def _begin_step(limit: int) -> dict[str, Any]:
    return {
        "type": "BeginStep",
        "command_id": str(uuid.uuid4()),
        "account_id": "acc",
        "workflow_name": "wf",
        "instance_id": "i",
        "name": "charge",
        "config": {"retries": {"limit": limit, "delay": 1000}},
    }


def test_a_retry_limit_beyond_the_bound_is_rejected_naming_the_bound_and_the_field() -> None:
    message = _rejection(_begin_step(1_000_000))
    assert str(MAX_RETRIES) in message and "retries.limit" in message


def test_a_retry_limit_at_the_bound_is_a_command() -> None:
    intake = decode_records([_record(_begin_step(MAX_RETRIES))])
    [(command, _)] = intake.commands
    assert isinstance(command, c.BeginStep) and command.config is not None
    assert command.config.retries.limit == MAX_RETRIES
