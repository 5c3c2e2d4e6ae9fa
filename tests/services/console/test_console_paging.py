"""A long instance's console page shows one page of its steps and of its history, with links to
the pages around it, and its live fragment carries no more than the pages shown (real Kafka,
both stores)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fixtures.live_server import LiveServer
from tests.fixtures.service import KafkaClient
from tests.services.console.console_client import console_client, instance_of, sign_in

STEPS = 250  # pages of 100, 100 and 50


@pytest.fixture
async def client(live_service: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with console_client(live_service) as c:
        yield c


async def long_instance(
    client: httpx.AsyncClient, live: LiveServer, kafka: KafkaClient
) -> tuple[str, str]:
    """An instance of account A running, with STEPS steps recorded (`step-0`, `step-1`...)."""
    account = live.account_a
    workflow, instance = await instance_of(client, live, account)
    names = {"account_id": account, "workflow_name": workflow, "instance_id": instance}
    last = ""
    for n in range(STEPS):
        last = str(uuid.uuid4())
        step = {"type": "RecordStep", "command_id": last, "name": f"step-{n}", "output": n}
        await kafka.send({**step, **names, "start_run": n == 0})
    assert (await kafka.reply(last))["outcome"] == "accepted"
    api = f"/client/v4/accounts/{account}/workflows/{workflow}/instances/{instance}"
    bearer = {"Authorization": f"Bearer {live.token_a}"}
    for _ in range(300):  # the views follow the replies a moment later
        shown = (await client.get(api, headers=bearer)).json()["result"]
        if len(shown["steps"]) == STEPS:
            return workflow, instance
        await asyncio.sleep(0.05)
    raise AssertionError("the views never showed every step")


def step_names(html: str) -> list[str]:
    return re.findall(r'class="tl-row" data-step-name="([^"]*)"', html)


def history_versions(html: str) -> list[int]:
    table = html[html.index('id="history"') :]
    return [int(v) for v in re.findall(r'<tr data-version="(\d+)"', table)]


def link(html: str, rel: str, pager: str) -> str | None:
    nav = re.search(rf'<nav class="pager"[^>]*id="{pager}">(.*?)</nav>', html, re.S)
    assert nav, f"no pager {pager}"
    found = re.search(rf'<a rel="{rel}" href="([^"]*)"', nav.group(1))
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
async def url(client: httpx.AsyncClient, live_service: LiveServer, live_kafka: KafkaClient) -> str:
    """The console page of a long instance, `client` signed in to read it."""
    workflow, instance = await long_instance(client, live_service, live_kafka)
    await sign_in(client, live_service.token_a)
    return f"/console/accounts/{live_service.account_a}/workflows/{workflow}/instances/{instance}"


async def test_a_long_instance_shows_one_page_of_steps_and_links_to_the_next(
    client: httpx.AsyncClient, url: str
) -> None:

    first = (await client.get(url, params={"steps_page": 1})).text
    assert step_names(first) == [f"step-{n}" for n in range(100)]
    assert link(first, "prev", "steps-pager") is None
    second_url = link(first, "next", "steps-pager")
    assert second_url == f"{url}?steps_page=2"
    second = (await client.get(second_url)).text
    assert step_names(second) == [f"step-{n}" for n in range(100, 200)]
    assert "Steps 101–200 of 250 (page 2 of 3)" in second
    # The last page's link names no page: it follows the latest steps as the instance grows.
    assert link(second, "next", "steps-pager") == url

    # Without a number: the latest hundred, and a link to the page before.
    latest = (await client.get(url)).text
    assert step_names(latest) == [f"step-{n}" for n in range(150, 250)]
    assert link(latest, "next", "steps-pager") is None
    assert link(latest, "prev", "steps-pager") == f"{url}?steps_page=2"
    versions = history_versions(latest)
    assert versions == list(range(versions[0], versions[0] + 100))
    assert versions[-1] == max(int(v) for v in re.findall(r'data-version="(\d+)"', latest))
    older_url = link(latest, "prev", "history-pager") or ""
    older = (await client.get(older_url)).text
    assert "history_page=" in older_url and "steps_page" not in older_url
    earlier = history_versions(older)
    assert len(earlier) == 100 and earlier[-1] < versions[-1] and earlier[-1] % 100 == 0
    assert step_names(older) == step_names(latest)  # paging one list keeps the other's page


async def test_the_live_fragment_carries_only_the_pages_shown(
    client: httpx.AsyncClient, url: str
) -> None:
    page = (await client.get(url, params={"steps_page": 2})).text
    live_url = re.search(r'data-live-url="([^"]*)"', page)
    assert live_url and live_url.group(1) == f"{url}/live?steps_page=2"

    fragment = await client.get(f"{url}/live", params={"steps_page": 2, "since": 0})
    assert fragment.status_code == 200 and fragment.headers["x-console-fragment"] == "live"
    assert step_names(fragment.text) == [f"step-{n}" for n in range(100, 200)]
    assert len(history_versions(fragment.text)) == 100
    assert len(fragment.content) < len(page.encode()) + 1  # no more than the page itself
    latest = await client.get(f"{url}/live", params={"since": 0})
    assert step_names(latest.text) == [f"step-{n}" for n in range(150, 250)]
