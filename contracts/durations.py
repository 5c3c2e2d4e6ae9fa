"""Durations as the wire writes them: milliseconds, or text such as '10 seconds'.

One grammar for the SDK (step configs, sleeps, wait timeouts) and the service (commands'
timeouts, retries and retention): Cloudflare's words (`millisecond`, `second`, `minute`,
`hour`, `day`, `week`, `month`, `year`, singular or plural) and their short forms (`ms`,
`s`, `sec`, `m`, `min`, `h`, `d`), a number before them, case and spaces free.
"""

from __future__ import annotations

import re

UNITS_MS = {
    "ms": 1,
    "millisecond": 1,
    "s": 1_000,
    "sec": 1_000,
    "second": 1_000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "week": 604_800_000,
    "month": 2_592_000_000,
    "year": 31_536_000_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def text_to_milliseconds(text: str) -> int:
    """'10 seconds' -> 10000; raises ValueError for text it cannot read."""
    match = _DURATION.match(text.lower())
    unit = match.group(2) if match else ""
    if unit not in UNITS_MS and unit.endswith("s"):
        unit = unit[:-1]  # plurals: "10 seconds", "5 mins"
    if match is None or unit not in UNITS_MS:
        raise ValueError(f"cannot read duration {text!r}: use milliseconds or e.g. '10 seconds'")
    return round(float(match.group(1)) * UNITS_MS[unit])


def to_milliseconds(value: int | str) -> int:
    """A duration field of a command: an integer counts milliseconds. Raises ValueError."""
    return value if isinstance(value, int) else text_to_milliseconds(value)
