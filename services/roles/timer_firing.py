"""What the scheduler fires for the due rows of its timer table: pure, no I/O.

Each timer's command is built on its own: one that cannot be built (a document from an older
version, a schedule croniter cannot step, a command the contract refuses) is parked in its
document, and the others fire. A row that cannot be read at all is held whole (its due time
cleared, its text kept for inspection) until an event for its instance re-folds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.commands import AnyCommand
from contracts.keys import kafka_key
from flowledger._producer import Outgoing
from projections import timers

# key -> (stored text as read, new due_ms, new document or None to keep the stored one)
Marks = dict[str, tuple[str, int | None, dict[str, Any] | None]]
Problem = tuple[str, Exception]  # (item, what went wrong)


@dataclass(frozen=True)
class Fired:
    kind: str
    command: AnyCommand


@dataclass
class FiringPlan:
    fired: list[Fired] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    marks: Marks = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def plan_firing(rows: list[tuple[str, str]], now_ms: int, topic: str) -> FiringPlan:
    """The commands of every timer due at `now_ms` in `rows` ((key, stored text)), the marks
    that record them fired, and what could not be fired."""
    plan = FiringPlan()
    for key, text in rows:
        try:
            _plan_row(plan, key, text, now_ms, topic)
        except Exception as error:  # noqa: BLE001 - the row itself is unreadable
            plan.marks[key] = (text, None, None)
            plan.problems.append((f"timer {key}", error))
    return plan


def _plan_row(plan: FiringPlan, key: str, text: str, now_ms: int, topic: str) -> None:
    doc = msgspec.json.decode(text)
    ready: list[tuple[Fired, Outgoing]] = []
    failed: dict[str, Exception] = {}
    for kind in timers.due_kinds(doc, now_ms):
        try:
            name, body = timers.command_of(doc, kind, now_ms)
            command = to_command(body)
            ready.append((Fired(name, command), to_outgoing(topic, command)))
        except Exception as error:  # noqa: BLE001 - parked, see the module's docstring
            failed[kind] = error
    new = timers.mark_fired(doc, now_ms, {k: _reason(e) for k, e in failed.items()})
    due = timers.due_ms(new)
    # Only once the whole row is planned: a row that fails midway adds nothing but its hold.
    plan.fired += [f for f, _ in ready]
    plan.outgoing += [o for _, o in ready]
    plan.marks[key] = (text, due, new)
    plan.problems += [(f"timer {key} {kind}", error) for kind, error in failed.items()]


def to_command(body: dict[str, Any]) -> AnyCommand:
    return msgspec.convert(body, AnyCommand)  # type: ignore[arg-type]


def to_outgoing(topic: str, command: AnyCommand) -> Outgoing:
    return Outgoing(topic, msgspec.json.encode(command), kafka_key(command).encode())


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:300]
