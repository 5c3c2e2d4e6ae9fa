"""What every read model's fold shares: the stale-event guard; and what every per-instance
read model needs: its document key and query columns.

The domain status (Cloudflare's nine) is not folded here: each per-instance fold takes it from
the one transition table, `contracts.status.status_after` (the aggregate uses the same one),
and then maps it into its own vocabulary.
"""

from __future__ import annotations

from typing import Any

from contracts import events as ev
from contracts.keys import instance_global_id
from projections.timestamps import iso


def instance_doc_key(event: ev.LifecycleEvent) -> str | None:
    """The instance's global id for instance events; None for workflow events."""
    if not isinstance(event, ev.InstanceEvent):
        return None
    return str(instance_global_id(event.account_id, event.workflow_name, event.instance_id))


def query_columns(event: ev.InstanceCreated) -> dict[str, Any]:
    """The fields every instance document carries for the view's key, queries and dedupe."""
    return {
        "id": event.global_id,
        "account_id": event.account_id,
        "workflow_name": event.workflow_name,
        "created_on": iso(event.occurred_at),
        "version": event.version,
    }


def gone(event: ev.InstanceEvent) -> dict[str, Any]:
    """What every per-instance fold returns for InstanceDeleted: a tombstone, nothing of the
    instance's content. The projections role deletes the document's row when a fold returns
    one (services/roles/projections.py), so lists omit the instance and reads answer 404."""
    return {"gone": True, "version": event.version}


def is_gone(doc: dict[str, Any] | None) -> bool:
    return doc is not None and doc.get("gone") is True


def is_stale(doc: dict[str, Any] | None, event: ev.LifecycleEvent) -> bool:
    """True for an event the document has already seen (a redelivery): apply it once only.

    Every fold's first check. Versions count per aggregate (an instance or a workflow), gap-free
    from 1, and a document keeps the version of the last event it folded; the events topic and
    the store's log are at-least-once, so a rebuild or a retried batch may repeat any of them.
    """
    # Nothing follows a deletion: a tombstone takes no event.
    return doc is not None and (is_gone(doc) or bool(event.version <= doc["version"]))
