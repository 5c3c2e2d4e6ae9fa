"""The instances a worker holds are kept between wake-ups: a wake-up reads only the events
stored since the last one, whatever the length of the history (counted in events read, on the
real aggregate and application with in-memory persistence)."""

from __future__ import annotations

from typing import Any

from flowledger.workflows import WorkflowEntrypoint, WorkflowStep
from services.worker.history import StoreHistory
from tests.flowledger.harness import ACCOUNT, WORKFLOW, InMemoryFlowledger

# The commands role's own aggregate cache, so that filling 3,000 steps takes seconds.
FAST_FILL = {"AGGREGATE_CACHE_MAXSIZE": "100"}
EVENTS_PER_RECORD_STEP = 4  # StepBegan, AttemptBegan, AttemptEnded, StepEnded


class StepSleepStep(WorkflowEntrypoint):
    async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
        @step.do("first")
        async def first() -> int:
            return 1

        @step.do("second")
        async def second() -> int:
            return 2

        await first()
        await step.sleep("nap", "1 hour")
        return [await second()]


def _record_steps(fl: InMemoryFlowledger, instance: str, start: int, stop: int) -> None:
    for index in range(start, stop):
        reply = fl.do("RecordStep", instance, name=f"s{index}", output=index, start_run=index == 0)
        assert reply.outcome == "accepted", reply


def _events_read_by_one_load(history: StoreHistory, instance: str) -> int:
    before = history.cache.events_read
    assert history.load_blocking(ACCOUNT, WORKFLOW, instance) is not None
    return history.cache.events_read - before


async def test_a_second_wake_up_reads_only_the_events_stored_since_the_first(
    new_id: str,
) -> None:
    fl = InMemoryFlowledger()
    fl.create(new_id)
    assert (await fl.wake(StepSleepStep(), new_id)).kind == "suspended"
    first_read = fl.history.cache.events_read
    assert first_read > 0
    assert fl.tick(new_id) == "EndSleep"
    at_second = fl.instance(new_id).version

    assert (await fl.wake(StepSleepStep(), new_id)).kind == "completed"
    assert fl.instance(new_id).status == "complete"
    # The second read what the first's own commands stored and the sleep's end, nothing it
    # had read before: over both wake-ups, each event was read once.
    assert fl.history.cache.events_read == at_second


def test_a_wake_up_reads_as_many_events_at_step_3000_as_at_step_100(new_id: str) -> None:
    fl = InMemoryFlowledger(FAST_FILL)
    fl.create(new_id)
    _record_steps(fl, new_id, 0, 100)
    _events_read_by_one_load(fl.history, new_id)  # the worker takes the instance up
    _record_steps(fl, new_id, 100, 101)
    at_100 = _events_read_by_one_load(fl.history, new_id)

    _record_steps(fl, new_id, 101, 3000)
    _events_read_by_one_load(fl.history, new_id)
    _record_steps(fl, new_id, 3000, 3001)
    at_3000 = _events_read_by_one_load(fl.history, new_id)

    assert at_100 == at_3000 == EVENTS_PER_RECORD_STEP
    cold = StoreHistory(fl.app)  # a worker that did not hold it: the whole history
    assert _events_read_by_one_load(cold, new_id) == fl.instance(new_id).version > 12_000


def test_steps_that_ended_are_reused_not_rebuilt_and_the_view_matches_a_cold_read(
    new_id: str,
) -> None:
    fl = InMemoryFlowledger()
    fl.create(new_id)
    _record_steps(fl, new_id, 0, 3)
    before = fl.load(new_id)
    _record_steps(fl, new_id, 3, 4)
    after = fl.load(new_id)
    assert before is not None and after is not None
    assert all(a is b for a, b in zip(after.steps[:3], before.steps, strict=True))
    assert (after.settled, len(after.steps)) == (4, 4)
    assert after == StoreHistory(fl.app).load_blocking(ACCOUNT, WORKFLOW, new_id)


def test_an_instance_that_ended_or_was_forgotten_is_not_kept(new_id: str) -> None:
    fl = InMemoryFlowledger()
    ended, revoked = f"{new_id}-ended", f"{new_id}-revoked"
    for instance in (ended, revoked):
        fl.create(instance)
        fl.load(instance)
    assert len(fl.history.cache) == 2
    assert fl.do("ChangeStatus", ended, action="terminate").outcome == "accepted"
    fl.load(ended)
    fl.history.forget([f"{ACCOUNT}/{WORKFLOW}/{revoked}"])  # its partition was revoked
    assert len(fl.history.cache) == 0
    assert fl.load(revoked) is not None  # read again from the store, whole


def test_the_cache_keeps_at_most_its_size_least_recently_used_out_first(new_id: str) -> None:
    fl = InMemoryFlowledger()
    fl.history = StoreHistory(fl.app, cache_size=2)
    ids = [f"{new_id}-{n}" for n in range(3)]
    for instance in ids:
        fl.create(instance)
        fl.load(instance)
    assert len(fl.history.cache) == 2
    read = fl.history.cache.events_read
    fl.load(ids[2])  # still held: nothing new to read
    assert fl.history.cache.events_read == read
    fl.load(ids[0])  # the oldest went: read whole again
    assert fl.history.cache.events_read > read
