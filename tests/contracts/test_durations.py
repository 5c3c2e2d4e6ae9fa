"""Durations as the wire writes them: one grammar for the SDK and the service."""

from __future__ import annotations

import pytest

from contracts.durations import to_milliseconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1_500, 1_500),
        ("1 millisecond", 1),
        ("10 milliseconds", 10),
        ("1 second", 1_000),
        ("10 seconds", 10_000),
        ("1.5 seconds", 1_500),
        ("2 minutes", 120_000),
        ("1 hour", 3_600_000),
        ("24 hours", 86_400_000),
        ("1 day", 86_400_000),
        ("2 weeks", 1_209_600_000),
        ("1 month", 2_592_000_000),
        ("1 year", 31_536_000_000),
        ("  5   Seconds ", 5_000),
        ("3minutes", 180_000),
        ("1 s", 1_000),  # the short forms the SDK always read: one grammar on both sides
        ("5 mins", 300_000),
        ("2h", 7_200_000),
    ],
)
def test_to_milliseconds_reads_numbers_and_unit_strings(value: int | str, expected: int) -> None:
    assert to_milliseconds(value) == expected


@pytest.mark.parametrize(
    "value", ["", "seconds", "ten seconds", "10", "10 fortnights", "-5 seconds", "1 x", "5 secs x"]
)
def test_to_milliseconds_rejects_unreadable_strings(value: str) -> None:
    with pytest.raises(ValueError, match="cannot read duration"):
        to_milliseconds(value)
