"""The timeline's rows and bars from a Cloudflare instance document (pure: no service), and the
console session's CSRF tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.console import session
from services.console.timeline import AXIS_UNITS, MIN_WIDTH, build, duration

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def at(ms: int) -> str:
    return (T0 + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")


def doc(status: str, steps: list[dict[str, Any]], end: int | None = None) -> dict[str, Any]:
    return {"status": status, "queued": at(0), "start": at(0), "end": end and at(end),
            "steps": steps}  # fmt: skip


def attempt(start: int, end: int | None, success: bool | None) -> dict[str, Any]:
    error = {"name": "E", "message": "no"} if success is False else None
    return {"start": at(start), "end": end and at(end), "success": success, "error": error}


def test_a_retried_step_shows_each_attempt_and_the_back_off_between_them() -> None:
    attempts = [attempt(0, 100, False), attempt(400, 1000, True)]
    step = {"type": "step", "name": "charge", "count": 1, "start": at(0), "end": at(1000),
            "success": True, "attempts": attempts}  # fmt: skip
    timeline = build(doc("complete", [step], end=1000), T0 + timedelta(seconds=5))
    (row,) = timeline.rows
    assert (row.name, row.type, row.status) == ("charge", "step", "complete")
    assert row.summary == "2 attempts · 1 retry · 1.0 s"
    assert [(b.kind, b.outcome) for b in row.bars] == [
        ("attempt", "failed"),
        ("backoff", "done"),
        ("attempt", "succeeded"),
    ]
    # A finished instance's axis ends at its end, not at "now".
    assert [(b.x, b.width) for b in row.bars] == [(0, 100), (100, 300), (400, 600)]
    assert "E: no" in row.bars[0].text and timeline.ticks[-1] == "+1.0 s"


def test_a_running_instance_draws_open_bars_to_now() -> None:
    steps: list[dict[str, Any]] = [
        {"type": "step", "name": "a", "count": 1, "start": at(0), "end": None, "success": None,
         "attempts": [attempt(0, 200, False)]},
    ]  # fmt: skip
    now = T0 + timedelta(milliseconds=1000)
    (row,) = build(doc("waiting", steps), now).rows
    assert row.status == "retrying"
    assert [(b.kind, b.outcome, b.open) for b in row.bars] == [
        ("attempt", "failed", False),
        ("backoff", "waiting", True),
    ]
    assert row.bars[1].x + row.bars[1].width == AXIS_UNITS

    steps[0]["attempts"].append(attempt(600, None, None))
    (row,) = build(doc("running", steps), now).rows
    assert row.status == "running"
    assert [(b.kind, b.outcome, b.open) for b in row.bars][-1] == ("attempt", "running", True)


def test_sleeps_and_waits_are_one_bar_pending_ones_run_to_now_not_to_their_planned_end() -> None:
    steps: list[dict[str, Any]] = [
        {"type": "sleep", "name": "nap", "count": 1, "start": at(0), "end": at(300),
         "finished": True, "error": None},
        {"type": "waitForEvent", "name": "ok?", "count": 1, "start": at(300),
         "end": at(86_400_300), "finished": False, "error": None, "event_type": "approved"},
        {"type": "waitForEvent", "name": "late", "count": 1, "start": at(300), "end": at(400),
         "finished": True, "error": {"name": "WorkflowTimeoutError", "message": "t"}},
        {"type": "termination", "trigger": {"source": "api"}},
    ]  # fmt: skip
    timeline = build(doc("waiting", steps), T0 + timedelta(milliseconds=1000))
    assert [(r.name, r.status) for r in timeline.rows] == [
        ("nap", "complete"),
        ("ok?", "waiting for approved"),
        ("late", "timed out"),
    ]
    nap, pending, late = (r.bars[0] for r in timeline.rows)
    assert (nap.kind, nap.x, nap.width) == ("sleep", 0, 300)
    assert (pending.kind, pending.open, pending.x + pending.width) == ("wait", True, AXIS_UNITS)
    assert "planned end 2026-01-03 03:04:05 UTC" in pending.text
    assert (late.outcome, late.width) == ("timed-out", 100)


def test_a_very_short_bar_is_still_visible_and_no_bar_leaves_the_axis() -> None:
    steps: list[dict[str, Any]] = [
        {"type": "step", "name": "blink", "count": 1, "start": at(0), "end": at(1),
         "success": True, "attempts": [attempt(0, 1, True)]},
    ]  # fmt: skip
    (row,) = build(doc("running", steps), T0 + timedelta(hours=1)).rows
    assert row.bars[0].width == MIN_WIDTH
    assert build(doc("queued", []), T0).rows == []


@pytest.mark.parametrize(
    ("ms", "text"),
    [(5, "5 ms"), (1500, "1.5 s"), (61_000, "1 min 1 s"), (7_260_000, "2 h 1 min"),
     (3 * 86_400_000, "3 d 0 h")],
)  # fmt: skip
def test_durations_read_in_the_largest_sensible_unit(ms: int, text: str) -> None:
    assert duration(timedelta(milliseconds=ms)) == text


def test_csrf_depends_on_session_and_secret_and_both_header_schemes_carry_a_token() -> None:
    first = session.csrf_for("secret", "sid")
    assert first == session.csrf_for("secret", "sid")
    assert first != session.csrf_for("secret", "sid2")
    assert first != session.csrf_for("other", "sid")
    assert session.bearer_token("Bearer abc") == "abc"
    assert session.bearer_token('Token token="abc"') == "abc"
    assert session.bearer_token("Basic abc") is None
