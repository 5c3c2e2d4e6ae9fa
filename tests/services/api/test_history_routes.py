"""An instance's history and time travel over HTTP, on both stores over the real broker.

A scripted lifecycle is driven command by command (HTTP writes and an engine's commands on
Kafka); after each one the live document is recorded once the view has folded it. Then
`?as_of=` answers, at every recorded version and at the time of that version's event, exactly
the recorded document; before creation is a 404; another account's token sees nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from contracts.keys import instance_global_id
from projections import cloudflare_instance as cf
from projections.timestamps import iso, parse
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.live_server import LiveServer, register_workflow
from tests.fixtures.service import KafkaClient

V4 = "/client/v4/accounts"


@pytest.fixture
async def asgi(live_service: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=live_service.service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowledger") as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Script:
    """One instance of account A, driven step by step; records the live document after each."""

    def __init__(self, s: LiveServer, client: httpx.AsyncClient, kafka: KafkaClient) -> None:
        self.s, self.client, self.kafka = s, client, kafka
        self.account, self.token = s.account_a, s.token_a
        self.workflow = f"wf-{uuid.uuid4().hex[:8]}"
        self.instance = f"i-{uuid.uuid4().hex[:8]}"
        self.base = f"{V4}/{self.account}/workflows/{self.workflow}/instances"
        self.live: dict[int, dict[str, Any]] = {}  # version -> the live GET's result

    async def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(
            method, self.base + path, headers=auth(self.token), **kwargs
        )
        assert response.status_code == 200, response.text
        return response

    async def engine(self, kind: str, **fields: Any) -> None:
        command = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": self.account,
            "workflow_name": self.workflow,
            "instance_id": self.instance,
            **fields,
        }
        await self.kafka.send(command)
        reply = await self.kafka.reply(command["command_id"])
        assert reply["outcome"] == "accepted", reply

    async def record(self) -> int:
        """The instance's version now, once the live view shows it, and the live document."""
        history = await self.http("GET", f"/{self.instance}/history", params={"per_page": 1})
        version = history.json()["result_info"]["total_count"]
        view = self.s.service.views[cf.VIEW_NAME]
        key = str(instance_global_id(self.account, self.workflow, self.instance))
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while ((await asyncio.to_thread(view.get, key)) or {}).get("version") != version:
            assert asyncio.get_running_loop().time() < deadline, f"view never reached {version}"
            await asyncio.sleep(0.05)
        live = await self.http("GET", f"/{self.instance}")
        self.live[version] = live.json()["result"]
        return version


async def run_script(s: LiveServer, client: httpx.AsyncClient, kafka: KafkaClient) -> Script:
    t = Script(s, client, kafka)
    await register_workflow(client, t.account, t.workflow, t.token)
    await t.http("POST", "", json={"instance_id": t.instance, "params": {"order": 7}})
    await t.record()
    await t.engine("StartRun")
    await t.record()
    await t.engine("BeginStep", name="charge")
    await t.engine("BeginAttempt", name="charge")
    await t.record()
    await t.engine("EndAttempt", name="charge", success=True, output={"paid": 7})
    await t.engine("EndStep", name="charge", output={"paid": 7})
    await t.record()
    await t.engine("BeginStep", name="approval", step_type="waitForEvent", event_type="ok")
    await t.record()
    await t.http("POST", f"/{t.instance}/events/ok", json={"by": "ann"})
    await t.record()
    await t.http("PATCH", f"/{t.instance}/status", json={"status": "pause"})
    await t.record()
    await t.http("PATCH", f"/{t.instance}/status", json={"status": "resume"})
    await t.record()
    await t.engine("CompleteRun", output={"done": True})
    await t.record()
    await t.http("PATCH", f"/{t.instance}/status", json={"status": "restart"})
    await t.record()
    return t


async def test_as_of_each_version_and_its_time_is_what_the_live_view_served(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    t = await run_script(live_service, asgi, live_kafka)
    history = (await t.http("GET", f"/{t.instance}/history", params={"per_page": 100})).json()
    events = history["result"]
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    assert len(t.live) >= 10 and max(t.live) == len(events)
    statuses = {doc["status"] for doc in t.live.values()}
    assert {"queued", "running", "waiting", "paused", "complete"} <= statuses

    for version, live in t.live.items():
        by_version = await t.http("GET", f"/{t.instance}", params={"as_of": str(version)})
        assert by_version.json()["result"] == live, version
        at = events[version - 1]["occurred_at"]
        by_time = await t.http("GET", f"/{t.instance}", params={"as_of": at})
        assert by_time.json()["result"] == live, (version, at)
    # Options of the live GET apply as well.
    simple = await t.http("GET", f"/{t.instance}", params={"as_of": "4", "simple": "true"})
    assert simple.json()["result"]["steps"] == [] and simple.json()["result"]["step_count"] == 1
    # An offset other than Z, written unencoded (`+` arrives as a space), names the same time.
    created = parse(events[0]["occurred_at"])
    in_paris = (created + timedelta(hours=1)).replace(tzinfo=None).isoformat() + "+01:00"
    same = await t.http("GET", f"/{t.instance}", params={"as_of": in_paris})
    assert same.json()["result"] == t.live[1]
    raw = await asgi.get(
        f"{t.base}/{t.instance}?as_of={in_paris}", headers=auth(t.token)
    )  # the `+` unencoded
    assert raw.status_code == 200 and raw.json()["result"] == t.live[1], raw.text


async def test_as_of_before_creation_or_past_the_last_version_is_a_404(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    t = Script(live_service, asgi, live_kafka)
    await register_workflow(asgi, t.account, t.workflow, t.token)
    await t.http("POST", "", json={"instance_id": t.instance})
    first = (await t.http("GET", f"/{t.instance}/history")).json()["result"][0]
    before = iso(parse(first["occurred_at"]) - timedelta(microseconds=1))
    path = f"{t.base}/{t.instance}"

    for as_of in (before, "0", "2", "1999-01-01T00:00:00Z"):
        response = await asgi.get(path, params={"as_of": as_of}, headers=auth(t.token))
        assert response.status_code == 404, (as_of, response.text)
        assert response.json()["success"] is False
    for bad in ("yesterday", "2025-13-01T00:00:00Z", "-1"):
        response = await asgi.get(path, params={"as_of": bad}, headers=auth(t.token))
        assert response.status_code == 400, (bad, response.text)
    at_creation = await asgi.get(
        path, params={"as_of": first["occurred_at"]}, headers=auth(t.token)
    )
    assert at_creation.status_code == 200 and at_creation.json()["result"]["status"] == "queued"
    # An instance that never existed: the history and as_of are 404 as well.
    for ghost in (f"{t.base}/nope-{uuid.uuid4().hex[:6]}/history", f"{path}x"):
        response = await asgi.get(ghost, params={"as_of": "1"}, headers=auth(t.token))
        assert response.status_code == 404, (ghost, response.text)


async def test_history_lists_every_event_in_version_order_with_its_data_and_pages(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    t = Script(live_service, asgi, live_kafka)
    await register_workflow(asgi, t.account, t.workflow, t.token)
    created = await t.http("POST", "", json={"instance_id": t.instance, "params": {"a": 1}})
    await t.engine("StartRun")
    await t.engine("BeginStep", name="nap", step_type="sleep", sleep_ms=60_000)
    await t.engine("EndSleep", name="nap")
    await t.engine("FailRun", error={"name": "Boom", "message": "it broke"})

    whole = (await t.http("GET", f"/{t.instance}/history")).json()
    assert whole["success"] is True
    events = whole["result"]
    assert [e["type"] for e in events] == [
        "InstanceCreated", "RunStarted", "StepBegan", "StepEnded", "RunFailed"
    ]  # fmt: skip
    assert whole["result_info"] == {
        "count": 5, "per_page": 50, "total_count": 5, "page": 1
    }  # fmt: skip
    first = events[0]
    assert first["version"] == 1 and first["data"]["params"] == {"a": 1}
    assert first["data"]["workflow_id"] == created.json()["result"]["workflow_id"]
    assert set(first) == {"version", "type", "occurred_at", "command_id", "event_id", "data"}
    assert events[2]["data"]["name"] == "nap" and events[2]["data"]["sleep_ms"] == 60_000
    assert events[4]["data"]["error"] == {"name": "Boom", "message": "it broke"}
    times = [parse(e["occurred_at"]) for e in events]
    assert times == sorted(times)
    assert len({e["event_id"] for e in events}) == 5

    # Pages of two, walked with the cursor and with page numbers, give the same events.
    walked, cursor = [], None
    while True:
        params: dict[str, Any] = {"per_page": 2, **({"cursor": cursor} if cursor else {})}
        page = (await t.http("GET", f"/{t.instance}/history", params=params)).json()
        walked += page["result"]
        assert page["result_info"]["total_count"] == 5
        cursor = page["result_info"].get("cursor")
        if cursor is None:
            break
    assert walked == events
    numbered = []
    for n in (1, 2, 3, 4):
        page = await t.http("GET", f"/{t.instance}/history", params={"per_page": 2, "page": n})
        numbered += page.json()["result"]
    assert numbered == events
    bad = await asgi.get(
        f"{t.base}/{t.instance}/history", params={"cursor": "nope"}, headers=auth(t.token)
    )
    assert bad.status_code == 400


async def test_another_accounts_history_and_past_are_404_like_absence(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    t = Script(live_service, asgi, live_kafka)
    await register_workflow(asgi, t.account, t.workflow, t.token)
    await t.http("POST", "", json={"instance_id": t.instance, "params": {"secret": t.instance}})
    ghost = f"{V4}/{t.account}/workflows/{t.workflow}/instances/g-{uuid.uuid4().hex[:6]}"
    for suffix, params in (("/history", {}), ("", {"as_of": "1"})):
        theirs = await asgi.get(
            f"{t.base}/{t.instance}{suffix}", params=params, headers=auth(live_service.token_b)
        )
        missing = await asgi.get(f"{ghost}{suffix}", params=params, headers=auth(t.token))
        assert theirs.status_code == missing.status_code == 404, theirs.text
        assert t.instance not in theirs.text.replace(f"'{t.instance}'", "")
        # The same account name under B's token is not A's instance either.
        cross = await asgi.get(
            f"{V4}/{live_service.account_b}/workflows/{t.workflow}/instances/{t.instance}{suffix}",
            params=params,
            headers=auth(live_service.token_b),
        )
        assert cross.status_code == 404, cross.text
        unauthenticated = await asgi.get(f"{t.base}/{t.instance}{suffix}", params=params)
        assert unauthenticated.status_code == 401
