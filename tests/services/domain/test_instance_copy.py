"""The repository hands each command a deep copy of the cached aggregate; the instance copies
its run in near-constant time. The copy must still be independent where a command can change
it, and step counts must come out as a scan of the run would give them."""

from __future__ import annotations

import copy

from services.domain.instance import WorkflowInstance
from tests.services.domain.instance_factory import (
    AT,
    begin_attempt,
    begin_step,
    cid,
    end_attempt,
    record_step,
    restart,
    running,
)


def scanned_counts(i: WorkflowInstance) -> list[int]:
    return [
        sum(1 for s in i.run.steps[: n + 1] if (s.name, s.type) == (step.name, step.type))
        for n, step in enumerate(i.run.steps)
    ]


def test_changes_to_a_copy_leave_the_original_as_it_was() -> None:
    original = running()
    record_step(original, "a")
    begin_step(original, "b")
    pending, version = len(original.pending_events), original.version
    copied = copy.deepcopy(original)
    begin_attempt(copied, "b")
    end_attempt(copied, "b", success=True, output={"n": 1})
    assert copied.run.steps[-1].last_output == {"n": 1}
    assert original.run.steps[-1].attempts == 0
    assert original.run.steps[-1].last_output is None
    assert (len(original.pending_events), original.version) == (pending, version)
    assert copied.version == version + 2


def test_a_step_appended_to_a_copy_is_not_in_the_original() -> None:
    original = running()
    record_step(original, "a")
    copied = copy.deepcopy(original)
    record_step(copied, "a")
    assert [s.count for s in original.run.steps] == [1]
    assert [s.count for s in copied.run.steps] == [1, 2]


def test_step_counts_are_those_a_scan_of_the_run_gives() -> None:
    i = running()
    for name in ["a", "b", "a", "a", "c", "b"]:
        record_step(i, name)
    begin_step(i, "a", "sleep", sleep_ms=1000)
    assert [s.count for s in i.run.steps] == [1, 1, 2, 3, 1, 2, 1]
    assert [s.count for s in i.run.steps] == scanned_counts(i)


def test_counts_after_a_restart_from_a_step_continue_from_the_kept_steps() -> None:
    i = running()
    for name in ["a", "b", "a", "b"]:
        record_step(i, name)
    i.complete_run(output=None, outcome=None, reasons=[], command_id=cid(), at=AT)
    restart(i, {"name": "a", "count": 2})
    i.start_run(command_id=cid(), at=AT)
    record_step(i, "a")
    record_step(i, "b")
    assert [(s.name, s.count) for s in i.run.steps] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
