"""Durations as Cloudflare writes them: milliseconds, or strings such as '10 seconds'."""

from __future__ import annotations

import re

_UNITS_MS = {
    "ms": 1,
    "millisecond": 1,
    "second": 1_000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 604_800_000,
    "month": 2_592_000_000,
    "year": 31_536_000_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def to_milliseconds(value: int | str) -> int:
    """Raises ValueError for a string it cannot read."""
    if isinstance(value, int):
        return value
    match = _DURATION.match(value.lower())
    unit = match.group(2) if match else ""
    if unit not in _UNITS_MS and unit.endswith("s"):
        unit = unit[:-1]  # plurals: "10 seconds"
    if match is None or unit not in _UNITS_MS:
        raise ValueError(f"cannot read duration {value!r}: use milliseconds or e.g. '10 seconds'")
    return int(float(match.group(1)) * _UNITS_MS[unit])


def backoff_delay_ms(delay: int | str, backoff: str, attempt: int) -> int:
    """The wait before retry `attempt + 1`, after `attempt` (1-based) failed."""
    base = to_milliseconds(delay)
    if backoff == "constant":
        return base
    if backoff == "linear":
        return base * attempt
    return base * 2 ** (attempt - 1)
