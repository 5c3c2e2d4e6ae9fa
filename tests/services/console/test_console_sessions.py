"""The console's sessions against the running service (both stores): the cookie names a
server-side session and holds no token, signing out ends it everywhere, made-up and expired
sessions are refused, and wrong sign-ins from one address meet a limit."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from services.api.auth import ApiTokens
from services.console.session import SESSION_COOKIE, ConsoleSessions
from tests.fixtures.live_server import LiveServer
from tests.services.console.console_client import console_client, hidden, sign_in

HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(live_service: LiveServer) -> Clock:
    fake = Clock()
    sessions: ConsoleSessions = live_service.service.api.state.console_sessions
    sessions.clock = fake
    return fake


@pytest.fixture
async def client(live_service: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with console_client(live_service) as c:
        yield c


def workflows_url(live: LiveServer) -> str:
    return f"/console/accounts/{live.account_a}/workflows"


async def reads(live: LiveServer, cookie: str) -> bool:
    """Whether a browser holding only this session cookie reads the workflows page."""
    async with console_client(live, "10.9.9.9") as browser:
        browser.cookies.set(SESSION_COOKIE, cookie, domain="console.test", path="/console")
        page = await browser.get(workflows_url(live))
    if page.status_code == 303:
        assert "/console/sign-in?next=" in page.headers["location"]
        return False
    assert page.status_code == 200, page.text
    return True


async def signed_in(client: httpx.AsyncClient, token: str) -> str:
    answer = await sign_in(client, token)
    assert answer.status_code == 303, answer.text
    cookie = client.cookies.get(SESSION_COOKIE, path="/console")
    assert cookie
    return cookie


def decodings(text: str) -> list[bytes]:
    """Every part of `text` read as base64 (either alphabet), as far as it decodes."""
    found = [text.encode()]
    for part in text.replace(".", " ").replace(":", " ").split():
        for altchars in (b"-_", b"+/"):
            try:
                padded = (part + "=" * (-len(part) % 4)).encode()
                found.append(base64.b64decode(padded, altchars=altchars))
            except (binascii.Error, ValueError):
                pass
    return found


async def test_the_cookie_holds_a_random_session_id_and_no_token(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    cookie = await signed_in(client, live_service.token_a)
    token = live_service.token_a.encode()
    assert all(token not in decoded for decoded in decodings(cookie))
    assert len(cookie) >= 40 and "." not in cookie  # 32 random bytes, nothing appended
    again = await signed_in(client, live_service.token_a)
    assert (
        again != cookie and await reads(live_service, cookie) and await reads(live_service, again)
    )


async def test_after_sign_out_the_old_cookie_reads_nothing(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    cookie = await signed_in(client, live_service.token_a)
    page = await client.get(workflows_url(live_service))
    out = await client.post(
        "/console/sign-out", data={"csrf_token": hidden(page.text, "csrf_token")}
    )
    assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
    assert not await reads(live_service, cookie)
    live = f"{workflows_url(live_service)}/wf/instances/i/live"
    async with console_client(live_service) as browser:
        browser.cookies.set(SESSION_COOKIE, cookie, domain="console.test", path="/console")
        assert (await browser.get(live)).status_code == 303


async def test_sign_out_without_the_csrf_token_keeps_the_session(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    cookie = await signed_in(client, live_service.token_a)
    refused = await client.post("/console/sign-out", data={"csrf_token": "forged"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert await reads(live_service, cookie)


async def test_a_made_up_session_id_is_refused_even_beside_a_valid_token(
    live_service: LiveServer,
) -> None:
    token = base64.urlsafe_b64encode(live_service.token_a.encode()).decode().rstrip("=")
    for made_up in (
        secrets.token_urlsafe(32),
        f"{secrets.token_urlsafe(16)}.{token}",  # the old cookie's shape: id, then the token
        live_service.token_a,
        "x" * 5000,
        "not base64 at all !",
    ):
        assert not await reads(live_service, made_up), made_up


async def test_a_session_ends_after_its_idle_time(
    client: httpx.AsyncClient, live_service: LiveServer, clock: Clock
) -> None:
    cookie = await signed_in(client, live_service.token_a)
    clock.now += 7.9 * HOUR
    assert await reads(live_service, cookie)  # used: idle from here again
    clock.now += 7.9 * HOUR
    assert await reads(live_service, cookie)
    clock.now += 8 * HOUR
    assert not await reads(live_service, cookie)
    clock.now -= 8 * HOUR
    assert not await reads(live_service, cookie)  # deleted when found expired, not just late


async def test_a_session_ends_a_day_after_sign_in_however_busy(
    client: httpx.AsyncClient, live_service: LiveServer, clock: Clock
) -> None:
    cookie = await signed_in(client, live_service.token_a)
    for _ in range(3):
        clock.now += 7 * HOUR
        assert await reads(live_service, cookie)
    clock.now += 3 * HOUR  # 24 h after signing in
    assert not await reads(live_service, cookie)


async def test_a_token_removed_from_the_configuration_ends_its_sessions(
    client: httpx.AsyncClient, live_service: LiveServer
) -> None:
    cookie = await signed_in(client, live_service.token_a)
    state = live_service.service.api.state
    state.api_tokens = ApiTokens({live_service.token_b: frozenset({live_service.account_b})})
    assert not await reads(live_service, cookie)


async def test_thirty_wrong_sign_ins_meet_a_429_with_retry_after(
    client: httpx.AsyncClient, live_service: LiveServer, clock: Clock
) -> None:
    answers = []
    for attempt in range(30):
        answers.append(await sign_in(client, f"guess-{attempt}"))
        clock.now += 0.01
    assert [a.status_code for a in answers] == [401] * 10 + [429] * 20
    for limited in answers[10:]:
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "Too many wrong sign-ins" in limited.text
    # Limited means limited: the right token waits too, from this address only.
    assert (await sign_in(client, live_service.token_a)).status_code == 429
    async with console_client(live_service, "10.1.2.3") as elsewhere:
        assert (await sign_in(elsewhere, live_service.token_a)).status_code == 303
    clock.now += 60
    assert (await sign_in(client, live_service.token_a)).status_code == 303
