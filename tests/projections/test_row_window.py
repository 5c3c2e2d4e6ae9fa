"""A long list kept as rows: folding with only the last stored item in the window, batch after
batch, stores exactly the document a fold of the whole list gives (Cloudflare's steps and the
staged stages, through steps, terminations, restarts that keep some steps, and deletion)."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import events as ev
from projections import cloudflare_instance, staged_instance
from projections.row_window import ROWS_OF, WINDOW_START, cut, last_index, loaded, split, whole
from tests.projections.events_factory import Apply, Story, fold


class MemoryRows:
    """What the view stores of one document: its summary and one row per item."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] | None = None
        self.items: dict[int, Any] = {}
        self.written: list[list[int]] = []  # the indices written, per batch

    def for_folding(self) -> dict[str, Any] | None:
        if self.summary is None:
            return None
        last = last_index(self.summary)
        return loaded(self.summary, None if last is None else self.items[last])

    def store(self, doc: dict[str, Any], field: str, before: dict[str, Any] | None) -> None:
        self.summary, changed, cut_at = split(doc, field, before)
        if cut_at is not None:
            self.items = {i: item for i, item in self.items.items() if i < cut_at}
        self.items.update(changed)
        self.written.append([index for index, _ in changed])

    def whole(self) -> dict[str, Any]:
        assert self.summary is not None
        return whole(self.summary, [self.items[i] for i in sorted(self.items)])


def _fold_in_batches(
    apply: Apply, field: str, events: list[ev.LifecycleEvent], size: int
) -> MemoryRows:
    rows = MemoryRows()
    for at in range(0, len(events), size):
        before = rows.for_folding()
        doc = before
        for event in events[at : at + size]:
            doc = apply(doc, event)
        assert doc is not None
        rows.store(doc, field, before)
    return rows


def _step(story: Story, name: str) -> list[ev.LifecycleEvent]:
    return [
        story.step_began(name),
        story.attempt_began(name),
        story.attempt_ended(name, output={"n": name}),
        story.step_ended(name, output={"n": name}),
    ]


def _long_story(story: Story) -> list[ev.LifecycleEvent]:
    """Steps, a wait, a termination with rollback and one without, a restart keeping three
    steps, more steps, a restart keeping one, and the end of the run."""
    events: list[ev.LifecycleEvent] = [story.created({"p": 1}), story.started()]
    for n in range(6):
        events += _step(story, f"s{n}")
    events += [story.step_began("w", "waitForEvent"), story.event_delivered({"ok": True})]
    events += [story.terminated(rollback=True), story.terminated()]
    events += [story.restarted(run=2, kept_steps=3), story.started()]
    for n in range(4):
        events += _step(story, f"t{n}")
    events += [story.restarted(run=3, kept_steps=1), story.started(), *_step(story, "u")]
    return [*events, story.completed({"done": True})]


MODELS = [(cloudflare_instance, "steps"), (staged_instance, "stages")]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 100])
@pytest.mark.parametrize(("model", "field"), MODELS, ids=["cloudflare", "staged"])
def test_folding_batches_with_only_the_last_item_stores_the_whole_fold(
    model: Any, field: str, size: int
) -> None:
    events = _long_story(Story())
    rows = _fold_in_batches(model.apply, field, events, size)
    assert rows.whole() == fold(model.apply, events)


@pytest.mark.parametrize(("model", "field"), MODELS, ids=["cloudflare", "staged"])
def test_one_event_of_a_step_writes_that_steps_row_alone(model: Any, field: str) -> None:
    story = Story()
    events: list[ev.LifecycleEvent] = [story.created(), story.started()]
    for n in range(40):
        events += _step(story, f"s{n}")
    rows = _fold_in_batches(model.apply, field, events, 1)
    began, attempt, ended, step_ended = rows.written[-4:]
    assert began == [39]  # appended; the step before it is not written again
    if field == "steps":  # the staged stage changes only when it ends
        assert attempt == [39] and ended == [39]
    assert step_ended == [39]
    assert ROWS_OF in (rows.summary or {}) and field not in (rows.summary or {})


def test_a_document_stored_whole_moves_to_rows_on_its_next_write() -> None:
    story = Story()
    events = [story.created(), story.started(), *_step(story, "a"), *_step(story, "b")]
    stored_whole = fold(cloudflare_instance.apply, events)
    assert loaded(stored_whole, None) is stored_whole  # no mark: it is its whole self

    nxt = story.step_began("c")
    summary, changed, cut_at = split(
        cloudflare_instance.apply(stored_whole, nxt) or {}, "steps", stored_whole
    )
    assert [index for index, _ in changed] == [0, 1, 2] and cut_at is None
    assert "steps" not in summary and summary[ROWS_OF] == "steps"


def test_a_cut_before_the_window_starts_an_empty_window_where_the_kept_items_end() -> None:
    doc: dict[str, Any] = {"steps": ["x"], WINDOW_START: 9}
    cut(doc, "steps", 4)
    assert doc == {"steps": [], WINDOW_START: 4}
    doc = {"steps": ["a", "b", "c"], WINDOW_START: 2}
    cut(doc, "steps", 3)
    assert doc == {"steps": ["a"], WINDOW_START: 2}
    assert split(doc, "steps", {"steps": ["a"], WINDOW_START: 2})[1:] == ([], None)
