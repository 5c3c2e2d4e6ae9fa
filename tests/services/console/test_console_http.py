"""The console over HTTP, without a browser: signing in, the cookie's flags, CSRF, tenant
isolation, escaping and the security headers, against the running service (real Kafka, both
stores). The browser tests (test_console_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fixtures.live_server import LiveServer
from tests.services.console.console_client import console_client, hidden, instance_of, sign_in

HOSTILE = "<script>alert('x')</script>"


@pytest.fixture
async def client(live_service: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with console_client(live_service) as c:
        yield c


async def test_pages_send_a_stranger_to_sign_in_and_the_token_ends_in_a_strict_cookie(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    account = live_service.account_a
    wanted = f"/accounts/{account}/workflows"
    away = await client.get(f"/console{wanted}")
    assert away.status_code == 303
    assert away.headers["location"] == f"/console/sign-in?next={wanted.replace('/', '%2F')}"

    form = await client.get(away.headers["location"])
    assert form.status_code == 200
    csp = form.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert form.headers["x-frame-options"] == "DENY"
    assert 'type="password"' in form.text and "<script src=" in form.text
    assert "<script>" not in form.text  # no inline script anywhere

    wrong = await sign_in(client, "not-a-token", wanted)
    assert wrong.status_code == 401 and "That token is not valid." in wrong.text
    assert "flowledger_console=" not in wrong.headers.get("set-cookie", "")

    signed = await sign_in(client, live_service.token_a, wanted)
    assert signed.status_code == 303 and signed.headers["location"] == f"/console{wanted}"
    cookie = next(
        c for c in signed.headers.get_list("set-cookie") if c.startswith("flowledger_console=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= flags
    assert live_service.token_a not in signed.headers["location"]

    page = await client.get(f"/console{wanted}")
    assert page.status_code == 200 and "Workflows" in page.text


async def test_sign_in_without_its_form_token_is_refused(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    refused = await client.post(
        "/console/sign-in", data={"token": live_service.token_a, "sign_in_token": "x" * 30}
    )
    assert refused.status_code == 403
    assert "flowledger_console=" not in refused.headers.get("set-cookie", "")


async def test_an_action_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    account = live_service.account_a
    workflow, instance = await instance_of(client, live_service, account)
    await sign_in(client, live_service.token_a)
    url = f"/console/accounts/{account}/workflows/{workflow}/instances/{instance}"
    page = await client.get(url)
    csrf = hidden(page.text, "csrf_token")
    command = {"confirmed": "yes", "command_id": str(uuid.uuid4())}

    for form in (command, {**command, "csrf_token": ""}, {**command, "csrf_token": csrf[:-2]}):
        refused = await client.post(f"{url}/actions/pause", data=form)
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.text
    # Another session of the same token has another CSRF token.
    other = httpx.AsyncClient(transport=client._transport, base_url="http://console.test")
    async with other:
        await sign_in(other, live_service.token_a)
        other_csrf = hidden((await other.get(url)).text, "csrf_token")
    assert other_csrf != csrf
    assert (
        await client.post(f"{url}/actions/pause", data={**command, "csrf_token": other_csrf})
    ).status_code == 403

    api = f"/client/v4/accounts/{account}/workflows/{workflow}/instances/{instance}"
    bearer = {"Authorization": f"Bearer {live_service.token_a}"}
    assert (await client.get(api, headers=bearer)).json()["result"]["status"] == "queued"

    asked = await client.post(f"{url}/actions/pause", data={"csrf_token": csrf})
    assert asked.status_code == 200 and 'name="confirmed" value="yes"' in asked.text
    done = await client.post(
        f"{url}/actions/pause", data={**command, "csrf_token": hidden(asked.text, "csrf_token")}
    )
    assert done.status_code == 200 and "the instance is now paused" in done.text
    again = await client.post(f"{url}/actions/pause", data={**command, "csrf_token": csrf})
    assert again.status_code == 200 and "already done" in again.text  # same command id
    assert (await client.get(api, headers=bearer)).json()["result"]["status"] == "paused"


async def test_the_authorization_header_reads_pages_and_acts_without_csrf(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    account = live_service.account_a
    workflow, instance = await instance_of(client, live_service, account)
    bearer = {"Authorization": f"Bearer {live_service.token_a}"}
    url = f"/console/accounts/{account}/workflows/{workflow}/instances/{instance}"
    assert (await client.get(url, headers=bearer)).status_code == 200
    done = await client.post(
        f"{url}/actions/terminate",
        data={"confirmed": "yes", "command_id": str(uuid.uuid4())},
        headers=bearer,
    )
    assert done.status_code == 200 and "the instance is now terminated" in done.text
    bad = await client.get(url, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"


async def test_another_accounts_pages_are_404_like_missing_ones(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    theirs = live_service.account_b
    workflow, instance = await instance_of(client, live_service, theirs, {"secret": "b-only"})
    await sign_in(client, live_service.token_a)
    base = f"/console/accounts/{theirs}/workflows"
    for path in (
        base,
        f"{base}/{workflow}",
        f"{base}/{workflow}/instances",
        f"{base}/{workflow}/instances/{instance}",
        f"{base}/{workflow}/instances/{instance}/live",
        f"{base}/{workflow}/instances/{instance}?as_of=1",
    ):
        answer = await client.get(path)
        assert answer.status_code == 404, path
        assert "b-only" not in answer.text and "text/html" in answer.headers["content-type"]
    page = await client.get(f"{base}/{workflow}/instances/{instance}")
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
    own = await client.get(f"/console/accounts/{live_service.account_a}/workflows")
    token = hidden(own.text, "csrf_token")
    assert csrf is None
    acted = await client.post(
        f"{base}/{workflow}/instances/{instance}/actions/terminate",
        data={"csrf_token": token, "confirmed": "yes", "command_id": str(uuid.uuid4())},
    )
    assert acted.status_code == 404
    api = f"/client/v4/accounts/{theirs}/workflows/{workflow}/instances/{instance}"
    bearer = {"Authorization": f"Bearer {live_service.token_b}"}
    assert (await client.get(api, headers=bearer)).json()["result"]["status"] == "queued"


async def test_user_text_is_escaped_everywhere(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    account = live_service.account_a
    params = {HOSTILE: f'"><img src=x onerror=alert(1)>{HOSTILE}'}
    workflow, instance = await instance_of(client, live_service, account, params)
    await sign_in(client, live_service.token_a)
    url = f"/console/accounts/{account}/workflows/{workflow}/instances/{instance}"
    page = await client.get(url)
    assert page.status_code == 200
    assert HOSTILE not in page.text and "<img" not in page.text
    assert "&lt;script&gt;alert(" in page.text

    sent = await client.post(
        f"{url}/events",
        data={
            "csrf_token": hidden(page.text, "csrf_token"),
            "event_type": "approved",
            "payload": '{"note": "' + HOSTILE.replace("'", "\\u0027") + '"}',
        },
    )
    assert sent.status_code == 200 and "<script>alert" not in sent.text
    refused = await client.post(
        f"{url}/events",
        data={"csrf_token": hidden(page.text, "csrf_token"), "event_type": HOSTILE},
    )
    assert refused.status_code == 400 and HOSTILE not in refused.text


async def test_forms_elsewhere_are_still_refused_by_the_body_guard(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    answer = await client.put(
        f"/client/v4/accounts/{live_service.account_a}/workflows/wf",
        data={"class_name": "x"},
        headers={"Authorization": f"Bearer {live_service.token_a}"},
    )
    assert answer.status_code == 415


async def test_a_finished_instance_is_deleted_after_confirmation_with_the_csrf_token(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    account = live_service.account_a
    workflow, instance = await instance_of(client, live_service, account)
    await sign_in(client, live_service.token_a)
    url = f"/console/accounts/{account}/workflows/{workflow}/instances/{instance}"
    api = f"/client/v4/accounts/{account}/workflows/{workflow}/instances/{instance}"
    bearer = {"Authorization": f"Bearer {live_service.token_a}"}
    assert 'id="action-delete"' not in (await client.get(url)).text  # queued: not finished
    terminated = await client.patch(f"{api}/status", json={"status": "terminate"}, headers=bearer)
    assert terminated.status_code == 200, terminated.text
    page = await client.get(url)
    assert 'id="action-delete"' in page.text
    csrf = hidden(page.text, "csrf_token")

    command = {"confirmed": "yes", "command_id": str(uuid.uuid4())}
    refused = await client.post(f"{url}/actions/delete", data=command)
    assert refused.status_code == 403 and "CSRF" in refused.text
    asked = await client.post(f"{url}/actions/delete", data={"csrf_token": csrf})
    assert asked.status_code == 200 and 'name="confirmed" value="yes"' in asked.text
    assert "Yes, delete" in asked.text
    assert (await client.get(api, headers=bearer)).status_code == 200  # asking changed nothing
    done = await client.post(
        f"{url}/actions/delete", data={**command, "csrf_token": hidden(asked.text, "csrf_token")}
    )
    assert done.status_code == 200 and f"instance {instance} is deleted" in done.text
    assert (await client.get(url)).status_code == 404
    assert (await client.get(api, headers=bearer)).status_code == 404


async def test_the_page_as_of_a_version_shows_the_instance_then_and_a_missing_one_is_404(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    account = live_service.account_a
    workflow, instance = await instance_of(client, live_service, account, {"n": 1})
    api = f"/client/v4/accounts/{account}/workflows/{workflow}/instances/{instance}"
    bearer = {"Authorization": f"Bearer {live_service.token_a}"}
    paused = await client.patch(f"{api}/status", json={"status": "pause"}, headers=bearer)
    assert paused.status_code == 200, paused.text
    await sign_in(client, live_service.token_a)
    url = f"/console/accounts/{account}/workflows/{workflow}/instances/{instance}"

    now, then = await client.get(url), await client.get(f"{url}?as_of=1")
    missing = await client.get(f"{url}?as_of=99")

    assert now.status_code == 200 and then.status_code == 200
    assert "paused" in now.text and "paused" not in then.text and "queued" in then.text
    assert missing.status_code == 404 and "has no version 99" in missing.text
