"""Checks beyond the contract's types: sizes and durations. Failing input is never stored."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from croniter import CroniterError, croniter

from contracts.durations import to_milliseconds
from contracts.keys import is_minted_shape
from contracts.limits import MAX_JSON_BYTES, bounded
from services.domain.errors import DomainError


class InvalidCommand(DomainError):
    code = "command.invalid"


class PayloadTooLarge(DomainError):
    code = "payload.too_large"


class ReservedInstanceId(DomainError):
    code = "instance.id_reserved"


_YEAR_MS = 365 * 86_400_000
CRON_FORMAT = "minute hour day-of-month month day-of-week, UTC"
CRON_HORIZON_YEARS = 5


def check_json_size(what: str, value: Any) -> None:
    size = len(msgspec.json.encode(value))
    if size > MAX_JSON_BYTES:
        raise PayloadTooLarge(
            f"{what} is {size} bytes of JSON; the limit is {MAX_JSON_BYTES} "
            f"({MAX_JSON_BYTES // 1024} KiB)"
        )


def check_cron(expression: str, now: datetime) -> None:
    """Five fields in UTC, as Cloudflare's cron triggers (no seconds field, no macros), with a
    tick within CRON_HORIZON_YEARS of `now`: an expression that never ticks ("0 0 31 2 *")
    would otherwise be stored and leave the scheduler nothing to arm."""
    shown = bounded(expression, 100)
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise InvalidCommand(
            f"schedules: {shown!r} is not accepted; a schedule is a 5-field cron expression "
            f"({CRON_FORMAT}), such as '*/5 * * * *'; macros such as @reboot or @daily and "
            "6- or 7-field forms (seconds, years) are not"
        )
    try:
        tick = croniter(expression, now, max_years_between_matches=CRON_HORIZON_YEARS).get_next(
            datetime
        )
    except CroniterError:
        tick = None
    if tick is None or tick > now + timedelta(days=365 * CRON_HORIZON_YEARS + 2):
        raise InvalidCommand(
            f"schedules: {shown!r} has no tick in the next {CRON_HORIZON_YEARS} years "
            "(a date that does not exist, such as February 31st?); it would never run"
        )


def check_duration(
    what: str, value: int | str | None, *, low_ms: int = 0, high_ms: int = 0
) -> None:
    if value is None:
        return
    try:
        ms = to_milliseconds(value)
    except ValueError as exc:
        raise InvalidCommand(f"{what}: {exc}") from None
    if ms < low_ms or (high_ms and ms > high_ms):
        raise InvalidCommand(f"{what} must be between {low_ms} ms and {high_ms} ms, got {ms} ms")


def check_wait_timeout(value: int | str | None) -> None:
    check_duration("wait_timeout", value, low_ms=1_000, high_ms=_YEAR_MS)


def check_chosen_instance_id(instance_id: str | None) -> None:
    """A client's id may not look minted: it could be the id another create will mint."""
    if instance_id is not None and is_minted_shape(instance_id):
        raise ReservedInstanceId(
            f"instance id {instance_id!r} has the shape of a minted id ('cf_' + 64 lowercase "
            "hex), which is reserved; choose another id or send none to have one minted"
        )


def check_sleep(step_type: str, sleep_ms: int | None) -> None:
    """A sleep needs its length: its planned end is shown while it sleeps."""
    if step_type != "sleep":
        return
    if sleep_ms is None:
        raise InvalidCommand("sleep_ms: a sleep needs its length in milliseconds")
    if sleep_ms > _YEAR_MS:
        raise InvalidCommand(f"sleep_ms must be at most {_YEAR_MS} ms (365 days), got {sleep_ms}")
