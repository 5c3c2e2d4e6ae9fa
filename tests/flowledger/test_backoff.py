"""Back-off: one line when failures begin, one when they end, a delay that doubles to a cap."""

from __future__ import annotations

import logging

import pytest

from flowledger._backoff import Backoff


def test_the_delay_doubles_up_to_its_cap_and_resets_after_a_success() -> None:
    backoff = Backoff("thing", logging.getLogger("test.backoff"), first_s=0.1, cap_s=0.5)
    error = OSError("down")

    assert [backoff.failed(error) for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert backoff.failing_for() >= 0 and backoff.failures == 5
    backoff.succeeded()
    assert backoff.failed(error) == 0.1


def test_a_streak_of_failures_logs_one_warning_and_its_recovery_one_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backoff = Backoff("relay: publishing", logging.getLogger("test.backoff"))
    caplog.set_level(logging.INFO, logger="test.backoff")

    for _ in range(50):
        backoff.failed(OSError("connection refused"))
    backoff.succeeded()
    backoff.succeeded()

    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(lines) == 2
    assert lines[0][0] == "WARNING" and "connection refused" in lines[0][1]
    assert lines[1] == ("INFO", "relay: publishing recovered after 50 failed attempts")
    assert backoff.failing_for() == 0.0
