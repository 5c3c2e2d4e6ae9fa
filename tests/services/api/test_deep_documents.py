"""No stored document makes a read route answer 5xx, however deep the JSON a producer put in it.

Producers reach Kafka without the HTTP door, and documents stored before the commands role
limited nesting stay in the views. So real documents (a workflow, an instance with a finished
step and a completed run, an Onfido run) are read through views that nest every producer value
in them (params, outputs, input, link) deeper than pydantic's serializer goes (255) and near
the interpreter's recursion limit, and every read route of the app is asked for them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from contracts.keys import instance_global_id
from services.api.app import create_api
from services.api.body_guard import nesting_depth
from services.api.rendering import encode
from services.store.document_view import DocumentView, Query
from tests.fixtures.live_server import LiveServer, register_workflow
from tests.fixtures.service import KafkaClient
from tests.services.api.test_isolation import api_routes

PRODUCER_VALUES = {"params", "output", "input", "link", "custom_data", "payload"}
# Routes whose answers show no producer value: they must answer, not show the depth.
WITHOUT_PRODUCER_VALUES = {
    "/client/v4/accounts/{account_id}/workflows",
    "/client/v4/accounts/{account_id}/workflows/{workflow_name}",
    "/client/v4/accounts/{account_id}/workflows/{workflow_name}/instances",
    "/v1/workflow-instances",
    "/v1/workflow-instances/{instance_id}",
    # Read from the event store, not from a view: its documents are as deep as the commands
    # allowed, which the intake bounds.
    "/client/v4/accounts/{account_id}/workflows/{workflow_name}/instances/{instance_id}/history",
}


def nest(value: Any, depth: int) -> Any:
    """`value` wrapped `depth` times in its own kind of container (objects stay objects)."""
    for _ in range(depth):
        value = {"deeper": value} if isinstance(value, dict) else [value]
    return value


def deepened(doc: dict[str, Any], depth: int) -> dict[str, Any]:
    """`doc` with every producer value that is an object or array nested `depth` deeper."""

    def walk(value: Any, key: str | None) -> Any:
        if key in PRODUCER_VALUES and isinstance(value, dict | list):
            return nest(value, depth)
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, None) for v in value]
        return value

    return walk(doc, None)  # type: ignore[no-any-return]


class DeepView:
    """A real view whose documents come out with their producer values nested deeper."""

    def __init__(self, view: DocumentView, depth: int) -> None:
        self.view = view
        self.depth = depth

    def get(self, key: str) -> dict[str, Any] | None:
        doc = self.view.get(key)
        return None if doc is None else deepened(doc, self.depth)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {k: deepened(d, self.depth) for k, d in self.view.get_many(keys).items()}

    def find(self, query: Query) -> list[dict[str, Any]]:
        return [deepened(d, self.depth) for d in self.view.find(query)]

    def find_summaries(self, query: Query) -> list[dict[str, Any]]:
        return [deepened(d, self.depth) for d in self.view.find_summaries(query)]

    def count(self, query: Query) -> int:
        return self.view.count(query)

    def position(self) -> int | None:
        return self.view.position()


async def stored_documents(
    client: httpx.AsyncClient, kafka: KafkaClient, s: LiveServer
) -> dict[str, str]:
    """Real documents of every read model in account A; the ids that name them."""
    auth = {"Authorization": f"Bearer {s.token_a}"}
    workflow = f"deep-{uuid.uuid4().hex[:8]}"
    registered = await register_workflow(client, s.account_a, workflow, s.token_a)
    instance = f"deep-{uuid.uuid4().hex[:8]}"
    base = f"/client/v4/accounts/{s.account_a}/workflows/{workflow}/instances"
    created = await client.post(
        base, json={"instance_id": instance, "params": {"p": [1]}}, headers=auth
    )
    assert created.status_code == 200, created.text
    engine: list[tuple[str, dict[str, Any]]] = [
        ("StartRun", {}),
        ("BeginStep", {"name": "charge"}),
        ("BeginAttempt", {"name": "charge"}),
        ("EndAttempt", {"name": "charge", "success": True, "output": {"o": [1]}}),
        ("EndStep", {"name": "charge", "output": {"o": [1]}}),
        ("CompleteRun", {"output": {"done": [1]}}),
    ]
    for kind, fields in engine:
        command = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": s.account_a,
            "workflow_name": workflow,
            "instance_id": instance,
            **fields,
        }
        await kafka.send(command)
        assert (await kafka.reply(command["command_id"]))["outcome"] == "accepted"
    run = await client.post(  # a write: answers once every view has caught up
        "/v3.6/workflow_runs",
        json={
            "workflow_id": registered["id"],
            "applicant_id": str(uuid.uuid4()),
            "link": {"url": "https://example.test"},
            "custom_data": {"c": [1]},
        },
        headers=auth,
    )
    assert run.status_code == 201, run.text
    return {
        "account_id": s.account_a,
        "workflow_name": workflow,
        "instance_id": instance,
        "global_id": str(instance_global_id(s.account_a, workflow, instance)),
        "workflow_run_id": run.json()["id"],
    }


def url_for(template: str, ids: dict[str, str]) -> str:
    filled = template
    if template.startswith("/v1/"):  # runs and staged instances are named by global id
        filled = filled.replace("{run_id}", ids["global_id"])
        filled = filled.replace("{instance_id}", ids["global_id"])
    for name, value in ids.items():
        filled = filled.replace(f"{{{name}}}", value)
    return filled


def query_for(template: str, ids: dict[str, str]) -> dict[str, str]:
    query = {"name": "charge"} if template.endswith("/step") else {}
    if "{account_id}" not in template:  # Onfido and /v1 act in the token's account
        query["account_id"] = ids["account_id"]
    return query


@pytest.mark.parametrize("depth", [300, 900])
async def test_no_stored_document_makes_a_read_route_answer_5xx(
    live_service: LiveServer, live_kafka: KafkaClient, depth: int
) -> None:
    s = live_service
    transport = httpx.ASGITransport(app=s.service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowledger") as client:
        ids = await stored_documents(client, live_kafka, s)
        await until_step_complete(client, s, ids)
    views: Any = {name: DeepView(v, depth) for name, v in s.service.api.state.views.items()}
    deep_api = create_api(
        tokens={s.token_a: frozenset({s.account_a})},
        views=views,
        readiness=lambda: {"ready": True},
        history=s.service.api.state.history,
    )
    apis = ("/client/", "/v3.6/", "/v1/")
    reads = [p for m, p in api_routes(deep_api) if m == "GET" and p.startswith(apis)]
    assert len(reads) >= 11, reads

    transport = httpx.ASGITransport(app=deep_api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowledger") as client:
        for template in reads:
            response = await client.get(
                url_for(template, ids),
                params=query_for(template, ids),
                headers={"Authorization": f"Bearer {s.token_a}"},
            )

            assert response.status_code == 200, (template, response.text[:500])
            if template not in WITHOUT_PRODUCER_VALUES:
                assert nesting_depth(response.content) > depth, template


async def until_step_complete(
    client: httpx.AsyncClient, s: LiveServer, ids: dict[str, str]
) -> None:
    """Progress sent straight to Kafka reaches the views asynchronously."""
    path = url_for(
        "/client/v4/accounts/{account_id}/workflows/{workflow_name}/instances/{instance_id}", ids
    )
    for _ in range(150):
        shown = await client.get(path, headers={"Authorization": f"Bearer {s.token_a}"})
        if shown.status_code == 200 and shown.json()["result"]["status"] == "complete":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run never showed complete: {shown.text}")


def test_json_deeper_than_the_interpreter_recurses_is_still_written() -> None:
    value = nest({"leaf": [1, "é", None, 2.5, True]}, 5000)
    inner = '{"leaf":[1,"é",null,2.5,true]}'

    written = encode(value)

    assert written == ('{"deeper":' * 5000 + inner + "}" * 5000).encode()
    assert encode([value, {"a": []}]).endswith(b'}},{"a":[]}]')
