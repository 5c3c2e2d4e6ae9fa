"""What the console's HTTP tests share: a client on the live service's api (in-process ASGI,
from a chosen client address), signing in through the form, and an instance to look at."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.fixtures.live_server import LiveServer, register_workflow


def console_client(live: LiveServer, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose requests come from `address` (the sign-in limit counts per address)."""
    transport = httpx.ASGITransport(app=live.service.api, client=(address, 50_000))
    return httpx.AsyncClient(transport=transport, base_url="http://console.test")


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r}"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, token: str, next_path: str = "") -> httpx.Response:
    form = await client.get("/console/sign-in")
    nonce = hidden(form.text, "sign_in_token")
    return await client.post(
        "/console/sign-in", data={"token": token, "sign_in_token": nonce, "next": next_path}
    )


async def instance_of(
    client: httpx.AsyncClient, live: LiveServer, account: str, params: Any = None
) -> tuple[str, str]:
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    token = live.token_for(account)
    await register_workflow(client, account, workflow, token)
    instance = f"i-{uuid.uuid4().hex[:8]}"
    created = await client.post(
        f"/client/v4/accounts/{account}/workflows/{workflow}/instances",
        json={"instance_id": instance, "params": params},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 200, created.text
    return workflow, instance
