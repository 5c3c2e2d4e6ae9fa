"""Checks beyond the contract's types: sizes and durations. Failing input is never stored."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.limits import MAX_JSON_BYTES
from services.domain.durations import to_milliseconds
from services.domain.errors import DomainError


class InvalidCommand(DomainError):
    code = "command.invalid"


class PayloadTooLarge(DomainError):
    code = "payload.too_large"


_YEAR_MS = 365 * 86_400_000


def check_json_size(what: str, value: Any) -> None:
    size = len(msgspec.json.encode(value))
    if size > MAX_JSON_BYTES:
        raise PayloadTooLarge(
            f"{what} is {size} bytes of JSON; the limit is {MAX_JSON_BYTES} (1 MiB)"
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
