"""Tenant isolation over every route the app serves: two accounts, two single-account tokens.

Account B's real data (workflow, instances, a driven step, an Onfido run) is requested with
account A's token (and A's run-scoped Onfido sdk_token). Each such request must answer 404 or
401 exactly as it would for ids that do not exist (same status, same body once the ids are
swapped), must carry none of B's data, and must change nothing of B's. Without a token, or with
an unknown one, every route but the public probes and docs answers 401.

Routes are enumerated from the app itself: a new route without a request here fails the test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts.keys import instance_global_id
from services.api import sdk_tokens
from tests.fixtures.live_server import LiveServer, register_workflow
from tests.fixtures.service import KafkaClient

PUBLIC = {
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/healthz",
    "/readyz",
    "/metrics",
}
CF = "/client/v4/accounts/{account_id}/workflows"


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route, included routers' routes included."""
    try:  # FastAPI >= 0.16x wraps included routers; this walks them
        from fastapi.routing import iter_route_contexts

        routes: Any = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = app.routes
    return sorted(
        {(m, r.path) for r in routes for m in (getattr(r, "methods", None) or ()) if m != "HEAD"}
    )


@dataclass
class Tenant:
    """One account's real data, and every identifier in it."""

    account: str
    token: str
    workflow: str
    workflow_id: str = ""
    version_id: str = ""
    instance: str = ""
    instance_global: str = ""
    run_id: str = ""
    run_instance: str = ""
    applicant: str = ""
    sdk_token: str = ""
    marker: str = field(default_factory=lambda: f"secret-{uuid.uuid4().hex}")

    def secrets(self) -> dict[str, str]:
        """Every identifier and value of this tenant that another must never see."""
        return {
            name: getattr(self, name)
            for name in (
                "account", "workflow", "workflow_id", "version_id", "instance", "instance_global",
                "run_id", "run_instance", "applicant", "sdk_token", "marker",
            )
        }  # fmt: skip


@pytest.fixture
async def asgi(live_service: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=live_service.service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowledger") as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def populate(
    client: httpx.AsyncClient, kafka: KafkaClient, account: str, token: str, tag: str
) -> Tenant:
    """A workflow, an instance with a finished step, and an Onfido run, all in `account`."""
    t = Tenant(account=account, token=token, workflow=f"wf-{tag}-{uuid.uuid4().hex[:8]}")
    registered = await register_workflow(client, account, t.workflow, token)
    t.workflow_id, t.version_id = registered["id"], registered["version_id"]
    t.instance = f"inst-{tag}-{uuid.uuid4().hex[:8]}"
    created = await client.post(
        f"/client/v4/accounts/{account}/workflows/{t.workflow}/instances",
        json={"instance_id": t.instance, "params": {"marker": t.marker}},
        headers=auth(token),
    )
    assert created.status_code == 200, created.text
    t.instance_global = str(instance_global_id(account, t.workflow, t.instance))
    engine: list[tuple[str, dict[str, Any]]] = [
        ("StartRun", {}),
        ("BeginStep", {"name": "charge"}),
        ("BeginAttempt", {"name": "charge"}),
        ("EndAttempt", {"name": "charge", "success": True, "output": {"m": t.marker}}),
        ("EndStep", {"name": "charge", "output": {"m": t.marker}}),
    ]
    for kind, fields in engine:
        command = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": account,
            "workflow_name": t.workflow,
            "instance_id": t.instance,
            **fields,
        }
        await kafka.send(command)
        assert (await kafka.reply(command["command_id"]))["outcome"] == "accepted"
    t.applicant = str(uuid.uuid4())
    run = await client.post(
        "/v3.6/workflow_runs",
        json={"workflow_id": t.workflow_id, "applicant_id": t.applicant, "tags": [t.marker[:20]]},
        headers={"Authorization": f"Token token={token}"},
    )
    assert run.status_code == 201, run.text
    t.run_id, t.sdk_token = run.json()["id"], run.json()["sdk_token"]
    listed = await client.get(
        f"/client/v4/accounts/{account}/workflows/{t.workflow}/instances", headers=auth(token)
    )
    t.run_instance = next(i["id"] for i in listed.json()["result"] if i["id"] != t.instance)
    step = f"/client/v4/accounts/{account}/workflows/{t.workflow}/instances/{t.instance}/step"
    for _ in range(150):  # progress sent straight to Kafka reaches the view asynchronously
        shown = await client.get(step, params={"name": "charge"}, headers=auth(token))
        if shown.status_code == 200 and shown.json()["result"]["status"] == "complete":
            break
        await asyncio.sleep(0.1)
    assert shown.status_code == 200, shown.text
    return t


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    params: dict[str, str]
    body: Any

    def swapped(self, mapping: dict[str, str]) -> Probe:
        """The same request with every identifier in `mapping` replaced."""
        return Probe(
            self.method,
            _swap(self.path, mapping),
            json.loads(_swap(json.dumps(self.params), mapping)),
            json.loads(_swap(json.dumps(self.body), mapping)),
        )

    async def send(self, client: httpx.AsyncClient, headers: dict[str, Any]) -> httpx.Response:
        kwargs: dict[str, Any] = {"params": self.params, "headers": headers}
        if self.body is not None:
            kwargs["json"] = self.body
        return await client.request(self.method, self.path, **kwargs)


def _swap(text: str, mapping: dict[str, str]) -> str:
    for old in sorted(mapping, key=len, reverse=True):  # longest first: ids may nest
        text = text.replace(old, mapping[old])
    return text


def probes(method: str, template: str, t: Tenant) -> Iterator[Probe]:
    """Requests of this route aimed at tenant `t`'s real data."""
    new = f"new-{uuid.uuid4().hex[:8]}"
    bodies: dict[tuple[str, str], Any] = {
        ("PUT", f"{CF}/{{workflow_name}}"): {"class_name": "Evil", "script_name": "evil"},
        ("POST", f"{CF}/{{workflow_name}}/instances"): {"instance_id": new, "params": {}},
        ("POST", f"{CF}/{{workflow_name}}/instances/batch"): [{"instance_id": new}],
        ("PATCH", f"{CF}/{{workflow_name}}/instances/{{instance_id}}/status"): {
            "status": "terminate"
        },
        ("POST", f"{CF}/{{workflow_name}}/instances/{{instance_id}}/events/{{event_type}}"): {
            "x": 1
        },
        ("DELETE", f"{CF}/{{workflow_name}}/instances/{{instance_id}}"): None,
        ("POST", "/v3.6/workflow_runs"): {
            "workflow_id": t.workflow_id,
            "applicant_id": t.applicant,
        },
    }
    if method != "GET" and (method, template) not in bodies:
        raise AssertionError(f"no isolation probe for {method} {template}: add one")
    fills: dict[str, list[str]] = {
        "account_id": [t.account],
        "workflow_name": [t.workflow],
        "event_type": ["approval"],
        "workflow_run_id": [t.run_id, t.instance_global],
        "run_id": [t.instance_global, t.run_id],
        "instance_id": (
            [t.instance_global, t.run_id] if template.startswith("/v1/") else [t.instance]
        ),
    }
    params: dict[str, str] = (
        {"name": "charge", "type": "step"} if template.endswith("/step") else {}
    )
    names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
    for name in names:
        if name not in fills:
            raise AssertionError(f"no isolation value for {{{name}}} in {template}: add one")
    variants: list[dict[str, str]] = [{}]
    for name in names:
        variants = [{**v, name: value} for v in variants for value in fills[name]]
    for variant in variants:
        path = template
        for name, value in variant.items():
            path = path.replace(f"{{{name}}}", value)
        body = bodies.get((method, template))
        if names or body is not None:  # a bare list of the token's own account aims at no one
            yield Probe(method, path, params, body)
        if "account_id" not in names:  # routes acting in the token's account: name B's
            yield Probe(method, path, {**params, "account_id": t.account}, body)


def absent_twin(t: Tenant) -> dict[str, str]:
    """A fresh, nonexistent identifier for each of `t`'s, shaped the same."""
    twin: dict[str, str] = {}
    for value in t.secrets().values():
        try:
            uuid.UUID(value)
            twin[value] = str(uuid.uuid4())
        except ValueError:
            twin[value] = f"{value[:5]}{uuid.uuid4().hex}"[: len(value)]
    return twin


async def snapshot(client: httpx.AsyncClient, t: Tenant) -> list[Any]:
    """What B's own token sees of B: must be the same before and after A's attempts."""
    h = auth(t.token)
    base = f"/client/v4/accounts/{t.account}/workflows"
    reads = [
        await client.get(f"{base}/{t.workflow}", headers=h),
        await client.get(f"{base}/{t.workflow}/instances", headers=h),
        await client.get(f"{base}/{t.workflow}/instances/{t.instance}", headers=h),
        await client.get("/v3.6/workflow_runs", headers=h),
        await client.get("/v1/runs", headers=h),
    ]
    assert all(r.status_code == 200 for r in reads), [r.text for r in reads]
    shown = [r.json()["result"] if "result" in r.json() else r.json() for r in reads]
    # Each Onfido run carries an sdk_token minted when it is read, expiring from then on.
    for run in shown[3]:
        del run["sdk_token"]
    return shown


async def test_every_route_with_the_wrong_accounts_token_answers_as_if_nothing_existed(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    s = live_service
    a = await populate(asgi, live_kafka, s.account_a, s.token_a, "a")
    b = await populate(asgi, live_kafka, s.account_b, s.token_b, "b")
    before = await snapshot(asgi, b)
    routes = [(m, p) for m, p in api_routes(s.service.api) if p not in PUBLIC]
    assert len(routes) >= 15, routes
    twin = absent_twin(b)
    secrets = set(b.secrets().values())
    tried = 0

    for method, template in routes:
        for probe in probes(method, template, b):
            ghost = probe.swapped(twin)
            for token in (a.token, a.sdk_token):
                response = await probe.send(asgi, auth(token))
                where = f"{method} {probe.path} {probe.params} with {token[:8]}..."
                absent = await ghost.send(asgi, auth(token))
                assert response.status_code == absent.status_code, (where, response.text)
                # Same answer as for ids that do not exist, once those ids are swapped back.
                back = {v: k for k, v in twin.items()}
                assert response.text == _swap(absent.text, back), (where, response.text)
                assert response.status_code in (401, 404) or (
                    # Onfido names an unknown workflow_id in the body a validation error.
                    (method, template) == ("POST", "/v3.6/workflow_runs")
                    and response.status_code == 422
                ), (where, response.status_code, response.text)
                asked = probe.path + json.dumps(probe.params) + json.dumps(probe.body)
                leaked = {x for x in secrets if x in response.text and x not in asked}
                assert not leaked, (where, leaked)
                tried += 1

    assert tried >= 2 * len(routes)
    assert await snapshot(asgi, b) == before, "a wrong-token request changed account B"
    # The probes were aimed at real data: with B's own token, every read of them answers 200.
    for method, template in routes:
        if method == "GET":
            for probe in probes(method, template, b):
                own = await probe.send(asgi, auth(b.token))
                assert own.status_code == 200, (probe, own.text)


async def test_lists_in_the_tokens_own_account_show_none_of_another_accounts_data(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    s = live_service
    a = await populate(asgi, live_kafka, s.account_a, s.token_a, "a")
    b = await populate(asgi, live_kafka, s.account_b, s.token_b, "b")

    for path in ("/v3.6/workflow_runs", "/v1/runs", "/v1/workflow-instances"):
        mine = await asgi.get(path, headers=auth(a.token))
        assert mine.status_code == 200, mine.text
        assert a.run_id in mine.text
        assert not {x for x in b.secrets().values() if x in mine.text}, path


async def test_every_route_without_a_token_or_with_an_unknown_one_answers_401(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    s = live_service
    b = await populate(asgi, live_kafka, s.account_b, s.token_b, "b")
    routes = [(m, p) for m, p in api_routes(s.service.api) if p not in PUBLIC]
    secret = s.service.api.state.sdk_secret
    bad_headers: list[dict[str, Any]] = [
        {},
        {"Authorization": ""},
        {"Authorization": f"Bearer unknown-{uuid.uuid4().hex}"},
        {"Authorization": f"Token token=unknown-{uuid.uuid4().hex}"},
        {"Authorization": f"Basic {b.token}"},
        {"Authorization": b.token},
        {"Authorization": f"Bearer {b.sdk_token}x"},
        {"Authorization": f"Bearer {sdk_tokens.mint(secret, b.account, b.run_id, ttl_s=-1)}"},
        {"Authorization": "Bearer sdk_x.é".encode()},
        {"Authorization": f"Bearer {b.token}é".encode()},
    ]
    before = await snapshot(asgi, b)

    for method, template in routes:
        for probe in probes(method, template, b):
            for headers in bad_headers:
                response = await probe.send(asgi, headers)
                where = f"{method} {probe.path} {headers}"
                assert response.status_code == 401, (where, response.text)
                assert b.marker not in response.text and b.run_id not in response.text, where

    assert await snapshot(asgi, b) == before


async def test_onfido_find_of_another_accounts_run_is_not_found(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    s = live_service
    a = await populate(asgi, live_kafka, s.account_a, s.token_a, "a")
    b = await populate(asgi, live_kafka, s.account_b, s.token_b, "b")

    for header in (f"Token token={a.token}", f"Bearer {a.token}", f"Token token={a.sdk_token}"):
        response = await asgi.get(
            f"/v3.6/workflow_runs/{b.run_id}", headers={"Authorization": header}
        )
        assert response.status_code == 404, (header, response.text)
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["type"] == "resource_not_found"
    own = await asgi.get(
        f"/v3.6/workflow_runs/{b.run_id}", headers={"Authorization": f"Token token={b.token}"}
    )
    assert own.status_code == 200 and own.json()["id"] == b.run_id
    by_sdk = await asgi.get(
        f"/v3.6/workflow_runs/{b.run_id}", headers={"Authorization": f"Bearer {b.sdk_token}"}
    )
    assert by_sdk.status_code == 200 and by_sdk.json()["id"] == b.run_id
