"""The retry back-off, built on the wire's durations (contracts/durations.py)."""

from __future__ import annotations

from contracts.durations import to_milliseconds


def backoff_delay_ms(delay: int | str, backoff: str, attempt: int) -> int:
    """The wait before retry `attempt + 1`, after `attempt` (1-based) failed."""
    base = to_milliseconds(delay)
    if backoff == "constant":
        return base
    if backoff == "linear":
        return base * attempt
    return base * 2 ** (attempt - 1)
