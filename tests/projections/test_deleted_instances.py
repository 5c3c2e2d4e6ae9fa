"""Every per-instance read model drops a deleted instance's document: the fold returns a
tombstone, and the projections role deletes the row (also when a view is rebuilt)."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import events as ev
from projections import agent_run, cloudflare_instance, onfido_run, staged_instance
from projections.instance_status import is_gone
from tests.projections.events_factory import Story

MODELS = [cloudflare_instance, agent_run, onfido_run, staged_instance]


def _finished_then_deleted(story: Story) -> list[ev.LifecycleEvent]:
    return [
        story.created({"email": "ann@example.com"}),
        story.started(),
        story.completed(output={"receipt": "r-1"}),
        story.deleted(),
    ]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.VIEW_NAME)
def test_a_deleted_instance_folds_to_a_tombstone_without_its_content(model: Any) -> None:
    doc: dict[str, Any] | None = None
    for event in _finished_then_deleted(Story()):
        doc = model.apply(doc, event)
    assert is_gone(doc)
    assert doc is not None and set(doc) == {"gone", "version"}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.VIEW_NAME)
def test_a_tombstone_takes_no_later_event(model: Any) -> None:
    story = Story()
    events = _finished_then_deleted(story)
    doc: dict[str, Any] | None = None
    for event in events:
        doc = model.apply(doc, event)
    assert model.apply(doc, story.started()) is doc
