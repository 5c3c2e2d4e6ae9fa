"""Durations as Cloudflare writes them, and the retry back-off built on them."""

from __future__ import annotations

import pytest

from services.domain.durations import backoff_delay_ms, to_milliseconds


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
    ],
)
def test_to_milliseconds_reads_numbers_and_unit_strings(value: int | str, expected: int) -> None:
    assert to_milliseconds(value) == expected


@pytest.mark.parametrize(
    "value", ["", "seconds", "ten seconds", "10", "10 fortnights", "-5 seconds", "1 s", "5 secs x"]
)
def test_to_milliseconds_rejects_unreadable_strings(value: str) -> None:
    with pytest.raises(ValueError, match="cannot read duration"):
        to_milliseconds(value)


@pytest.mark.parametrize("attempt", [1, 2, 3, 7])
def test_constant_backoff_is_the_delay(attempt: int) -> None:
    assert backoff_delay_ms(10_000, "constant", attempt) == 10_000


@pytest.mark.parametrize(("attempt", "expected"), [(1, 10_000), (2, 20_000), (3, 30_000)])
def test_linear_backoff_is_delay_times_attempt(attempt: int, expected: int) -> None:
    assert backoff_delay_ms(10_000, "linear", attempt) == expected


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 10_000), (2, 20_000), (3, 40_000), (4, 80_000), (5, 160_000)]
)
def test_exponential_backoff_doubles_from_the_delay(attempt: int, expected: int) -> None:
    assert backoff_delay_ms(10_000, "exponential", attempt) == expected


def test_backoff_reads_a_delay_string() -> None:
    assert backoff_delay_ms("2 seconds", "exponential", 3) == 8_000
    assert backoff_delay_ms("1 minute", "linear", 2) == 120_000


def test_backoff_with_an_unreadable_delay_raises_value_error() -> None:
    with pytest.raises(ValueError):
        backoff_delay_ms("soon", "constant", 1)
