"""An instance's timeline, from its Cloudflare document: one row per step, sleep and wait, with
bars placed on one time axis shared by every row.

Pure: a document and the moment it is seen at in, rows out. The document is the live view's,
or one folded from the instance's history up to a version (`versions.as_of`), seen at that
version's time; the same rows come out of both.

* A step's bars are its attempts (succeeded, failed, running) and, between a failed attempt
  and the next one, the back-off; a step whose last attempt failed and that has not ended is
  backing off now.
* A sleep's or a wait's bar runs from its start to its end; while pending it runs to "now" and
  its planned end is given in words (a wait's default timeout is a day away: drawing it would
  squash every other bar).
* Bars are placed in thousandths of the axis (the SVG's user units); a bar narrower than
  `MIN_WIDTH` is widened to it so a 3 ms attempt stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from contracts.status import TERMINAL

AXIS_UNITS = 1000.0
MIN_WIDTH = 4.0
TICKS = 5


@dataclass(frozen=True)
class Bar:
    kind: str  # attempt | backoff | sleep | wait | step
    outcome: str  # succeeded | failed | running | waiting | done | timed-out | pending
    start: datetime
    end: datetime  # "now" for a bar still open
    open: bool
    text: str  # what the bar says in words (its title, and the row's list)
    x: float = 0.0
    width: float = 0.0


@dataclass(frozen=True)
class Row:
    name: str
    type: str  # step | sleep | waitForEvent
    count: int
    status: str  # a word: complete, failed, running, retrying, sleeping, waiting, ...
    summary: str
    bars: list[Bar] = field(default_factory=list)


@dataclass(frozen=True)
class Timeline:
    start: datetime | None
    end: datetime | None
    rows: list[Row]
    ticks: list[str]  # offsets from the start, TICKS of them, evenly spread

    @property
    def span_text(self) -> str:
        if self.start is None or self.end is None:
            return ""
        return duration(self.end - self.start)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(delta: Any) -> str:
    ms = max(0, round(delta.total_seconds() * 1000))
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def clock(moment: datetime) -> str:
    """`YYYY-MM-DD HH:MM:SS UTC`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('name', 'Error')}: {error.get('message', '')}"
    return ""


def _step_bars(step: dict[str, Any], now: datetime) -> tuple[list[Bar], str, str]:
    bars: list[Bar] = []
    attempts = [a for a in step.get("attempts") or [] if isinstance(a, dict)]
    retries = 0
    for number, attempt in enumerate(attempts, start=1):
        start = parse_time(attempt.get("start"))
        if start is None:
            continue
        end = parse_time(attempt.get("end"))
        success = attempt.get("success")
        if end is None:
            bars.append(Bar("attempt", "running", start, now, True, f"attempt {number} running"))
            continue
        outcome = "succeeded" if success else "failed"
        text = f"attempt {number} {outcome} after {duration(end - start)}"
        if not success and attempt.get("error"):
            text += f" ({_error_text(attempt['error'])})"
        bars.append(Bar("attempt", outcome, start, end, False, text))
        if success:
            continue
        following = attempts[number] if number < len(attempts) else None
        next_start = parse_time(following.get("start")) if following else None
        if next_start is not None:
            retries += 1
            bars.append(
                Bar(
                    "backoff",
                    "done",
                    end,
                    next_start,
                    False,
                    f"back-off {duration(next_start - end)}",
                )
            )
        elif step.get("success") is None and step.get("end") is None:
            bars.append(Bar("backoff", "waiting", end, now, True, "back-off, retry pending"))
    if not attempts:
        start = parse_time(step.get("start")) or now
        end = parse_time(step.get("end"))
        bars.append(Bar("step", "pending", start, end or now, end is None, "no attempt yet"))
    return bars, _step_status(step, bars), _step_summary(step, len(attempts), retries)


def _step_status(step: dict[str, Any], bars: list[Bar]) -> str:
    success = step.get("success")
    if success is True:
        return "complete"
    if success is False:
        return "failed"
    if bars and bars[-1].kind == "backoff":
        return "retrying"
    if bars and bars[-1].open:
        return "running"
    return "pending"


def _step_summary(step: dict[str, Any], attempts: int, retries: int) -> str:
    parts = [f"{attempts} attempt{'s' if attempts != 1 else ''}"]
    if retries:
        parts.append(f"{retries} retr{'ies' if retries != 1 else 'y'}")
    start, end = parse_time(step.get("start")), parse_time(step.get("end"))
    if start is not None and end is not None:
        parts.append(duration(end - start))
    return " · ".join(parts)


def _hold_bars(step: dict[str, Any], now: datetime) -> tuple[list[Bar], str, str]:
    """A sleep or a wait: one bar."""
    kind = "sleep" if step["type"] == "sleep" else "wait"
    start = parse_time(step.get("start")) or now
    end = parse_time(step.get("end"))
    finished = bool(step.get("finished"))
    waited_for = f" for {step['event_type']!s}" if step.get("event_type") else ""
    if finished:
        error = step.get("error")
        if kind == "wait":
            outcome = "timed-out" if error else "done"
            status = "timed out" if error else "event received"
        else:
            outcome, status = ("failed", "failed") if error else ("done", "complete")
        stop = end or start
        text = f"{kind}{waited_for} {status} after {duration(stop - start)}"
        return [Bar(kind, outcome, start, stop, False, text)], status, duration(stop - start)
    planned = f", planned end {clock(end)}" if end is not None else ""
    status = "sleeping" if kind == "sleep" else f"waiting{waited_for}"
    text = f"{status} for {duration(now - start)} so far{planned}"
    summary = f"until {clock(end)}" if end is not None else ""
    return [Bar(kind, "waiting", start, max(now, start), True, text)], status, summary


def spans(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's steps, sleeps and waits: one row each (terminations are not spans)."""
    return [
        step
        for step in doc.get("steps") or []
        if isinstance(step, dict) and step.get("type") in ("step", "sleep", "waitForEvent")
    ]


def _row(step: dict[str, Any], now: datetime) -> Row:
    if step["type"] == "step":
        bars, status, summary = _step_bars(step, now)
    else:
        bars, status, summary = _hold_bars(step, now)
    count = int(step.get("count") or 1)
    return Row(str(step.get("name", "")), step["type"], count, status, summary, bars)


def build(doc: dict[str, Any], now: datetime, first: int = 0, limit: int | None = None) -> Timeline:
    """The rows of the document's spans `first` to `first + limit` (all by default), on an
    axis from their earliest bar (from the instance's queueing on the first page) to their
    latest (to the run's end, or now while it runs, on the last page): a page of a long
    instance is drawn at its own scale, and only its rows are built."""
    every = spans(doc)
    end = len(every) if limit is None else first + limit
    rows = [_row(step, now) for step in every[first:end]]
    starts = [b.start for r in rows for b in r.bars]
    ends = [b.end for r in rows for b in r.bars]
    queued = parse_time(doc.get("queued"))
    if queued is not None and first == 0:
        starts.append(queued)
    run_end = parse_time(doc.get("end"))
    if end >= len(every):  # the last page: the axis runs to the run's end, or to now
        if doc.get("status") not in TERMINAL:
            ends.append(now)
        elif run_end is not None:
            ends.append(run_end)
    if not starts:
        return Timeline(None, None, rows, [])
    return _placed(rows, min(starts), max([*ends, min(starts)]))


def _placed(rows: list[Row], axis_start: datetime, axis_end: datetime) -> Timeline:
    span = (axis_end - axis_start).total_seconds() or 1.0
    placed = []
    for row in rows:
        bars = []
        for bar in row.bars:
            x = (bar.start - axis_start).total_seconds() / span * AXIS_UNITS
            width = max((bar.end - bar.start).total_seconds() / span * AXIS_UNITS, MIN_WIDTH)
            x = min(max(x, 0.0), AXIS_UNITS - MIN_WIDTH)
            width = min(width, AXIS_UNITS - x)
            bars.append(replace(bar, x=round(x, 2), width=round(width, 2)))
        placed.append(replace(row, bars=bars))
    delta = axis_end - axis_start
    ticks = ["0"] + [f"+{duration(delta * k / (TICKS - 1))}" for k in range(1, TICKS)]
    return Timeline(axis_start, axis_end, placed, ticks)
