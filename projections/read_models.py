"""Every read model: a module with a view name, a pure fold and the key of each document.

The projections role folds lifecycle events through each of them; the api reads their views
by these names; `flowledger projections rebuild NAME` rebuilds one.
"""

from __future__ import annotations

from typing import Any, Protocol

from contracts.events import LifecycleEvent
from projections import agent_run, cloudflare_instance, onfido_run, staged_instance, workflows


class ReadModel(Protocol):
    VIEW_NAME: str
    # The document's list kept as one row per item beside it (projections/row_window.py).
    ROW_FIELD: str | None

    def apply(self, doc: dict[str, Any] | None, event: LifecycleEvent) -> dict[str, Any] | None: ...

    def key_of(self, event: LifecycleEvent) -> str | None: ...


READ_MODELS: dict[str, ReadModel] = {
    model.VIEW_NAME: model
    for model in (cloudflare_instance, agent_run, onfido_run, staged_instance, workflows)
}
