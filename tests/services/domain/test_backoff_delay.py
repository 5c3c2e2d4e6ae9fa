"""The retry back-off, built on the wire's durations."""

from __future__ import annotations

import pytest

from services.domain.durations import backoff_delay_ms


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
