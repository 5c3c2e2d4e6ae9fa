"""During an outage the broker client's repeated lines are let through once per interval."""

from __future__ import annotations

import logging

from services.observability.log_limits import RepeatLimiter


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_a_repeated_client_line_passes_once_then_says_how_many_were_held_back() -> None:
    limiter = RepeatLimiter(interval_s=3600)
    first = _record("aiokafka.client", "Unable connect to node %s")

    assert limiter.filter(first) is True
    assert [limiter.filter(_record("aiokafka.client", first.msg)) for _ in range(5)] == [False] * 5

    expired = RepeatLimiter(interval_s=0)
    expired.filter(_record("aiokafka.client", "x"))
    again = _record("aiokafka.client", "x")
    assert expired.filter(again) is True


def test_held_back_lines_are_counted_in_the_next_one_let_through() -> None:
    limiter = RepeatLimiter(interval_s=3600)
    limiter.filter(_record("aiokafka.client", "down"))
    limiter.filter(_record("aiokafka.client", "down"))
    limiter._interval_s = 0  # the interval passes

    shown = _record("aiokafka.client", "down")
    assert limiter.filter(shown) is True and "(and 1 like it held back)" in str(shown.msg)


def test_flowledgers_own_lines_and_distinct_client_lines_are_never_held() -> None:
    limiter = RepeatLimiter(interval_s=3600)

    assert all(limiter.filter(_record("services.roles.relay", "same")) for _ in range(3))
    assert limiter.filter(_record("aiokafka.client", "one")) is True
    assert limiter.filter(_record("aiokafka.client", "another")) is True
