"""One instance's history, read from the event store: its lifecycle events in version order.

The same events the relay publishes and the projections fold (the domain events of the
instance's aggregate, translated by `LifecycleTranslator`), read through the application's
public event store, not the notification log: an instance's history is one aggregate's
sequence, whatever else the log holds. The api serves it (`.../instances/{id}/history`) and
folds it for time travel (`?as_of=`). A deleted instance has no history to show: it reads
as one that does not exist.

Blocking (eventsourcing reads synchronously): the adapters call it off the event loop.
"""

from __future__ import annotations

from uuid import UUID

from contracts.events import InstanceDeleted, InstanceEvent
from contracts.keys import instance_global_id
from services.application.app import FlowledgerApplication
from services.application.lifecycle import LifecycleTranslator

_DELETED = InstanceDeleted.__name__


class InstanceHistory:
    """Reads instances' histories; shared by the api's requests (it keeps no state)."""

    def __init__(self, app: FlowledgerApplication) -> None:
        self._app = app

    def events(
        self,
        account_id: str,
        workflow_name: str,
        instance_id: str,
        *,
        after: int = 0,
        upto: int | None = None,
        limit: int | None = None,
    ) -> list[InstanceEvent]:
        """The instance's lifecycle events with `after` < version <= `upto`, at most `limit`,
        in version order; [] for an instance that does not exist (in that account) or was
        deleted."""
        originator_id = instance_global_id(account_id, workflow_name, instance_id)
        if self._last(originator_id) in (None, _DELETED):
            return []
        stored = self._app.events.get(originator_id, gt=after or None, lte=upto, limit=limit)
        # Identity (account, workflow, instance) is on the first event only: a page that starts
        # later loads it, as the relay does after a restart.
        translator = LifecycleTranslator(self._app.first_event, cache_size=1)
        found: list[InstanceEvent] = []
        for domain_event in stored:
            event = translator.translate(domain_event)
            if isinstance(event, InstanceEvent):
                found.append(event)
        return found

    def version(self, account_id: str, workflow_name: str, instance_id: str) -> int:
        """The instance's latest version (versions run 1, 2, ... without gaps); 0 when it does
        not exist or was deleted."""
        originator_id = instance_global_id(account_id, workflow_name, instance_id)
        last = list(self._app.events.get(originator_id, desc=True, limit=1))
        if not last or type(last[0]).__name__ == _DELETED:
            return 0
        return int(last[0].originator_version)

    def _last(self, originator_id: UUID) -> str | None:
        """The type name of the instance's latest event; None when it has none."""
        last = list(self._app.events.get(originator_id, desc=True, limit=1))
        return type(last[0]).__name__ if last else None
