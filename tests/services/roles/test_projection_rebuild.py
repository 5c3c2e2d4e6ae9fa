"""`flowledger projections rebuild` beside a running service: the rebuilt views equal the live
ones, and the live projections carry on from the swapped-in position."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from services.bootstrap import Service
from services.cli import main
from services.store.document_view import Query

V4 = "/client/v4/accounts"


def _snapshot(service: Service, account: str) -> dict[str, list[dict[str, Any]]]:
    return {
        name: view.find(Query(account_id=account, limit=1000))
        for name, view in service.views.items()
    }


async def _some_history(http: httpx.AsyncClient, account: str, count: int) -> None:
    await http.put(f"{V4}/{account}/workflows/flow", json={})
    base = f"{V4}/{account}/workflows/flow/instances"
    await http.post(f"{base}/batch", json=[{"instance_id": f"r{n}"} for n in range(count)])
    await http.patch(f"{base}/r0/status", json={"status": "pause"})
    await http.patch(f"{base}/r1/status", json={"status": "terminate"})
    await http.post(f"{base}/r2/events/approval", json={"ok": True})


async def test_rebuild_beside_the_running_service_equals_the_live_views(
    service: Service,
    http: httpx.AsyncClient,
    new_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = f"acc{new_id}"
    await _some_history(http, account, count=5)
    live = await asyncio.to_thread(_snapshot, service, account)
    assert all(live.values()), "every view holds documents before the rebuild"

    monkeypatch.setenv("FLOWLEDGER_STORE", service.settings.store)
    assert await asyncio.to_thread(main, ["projections", "rebuild"]) == 0

    assert await asyncio.to_thread(_snapshot, service, account) == live
    # The live projections were rebuilt under; they must still follow new events.
    created = await http.post(f"{V4}/{account}/workflows/flow/instances", json={})
    assert created.status_code == 200, created.text
    after = await asyncio.to_thread(_snapshot, service, account)
    assert len(after["cloudflare_instances"]) == len(live["cloudflare_instances"]) + 1


def test_rebuild_of_an_unknown_read_model_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["projections", "rebuild", "no_such_view"]) == 2
    assert "no read model" in capsys.readouterr().err
