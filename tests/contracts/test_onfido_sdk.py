"""The official `onfido-python` SDK (6.x), unchanged, pointed at Flowledger's /v3.6 over real
HTTP and the real broker: create, find and list workflow runs, filters, and error types.

The token is bound to one account, as Onfido tokens are. The SDK is synchronous (urllib3);
each call runs in a worker thread so the server, in this test's event loop, keeps answering.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from onfido import ApiClient, Configuration, DefaultApi, WorkflowRun, WorkflowRunBuilder
from onfido.exceptions import NotFoundException, UnprocessableEntityException

from contracts.keys import instance_global_id
from tests.fixtures.live_server import LiveServer, register_workflow
from tests.fixtures.service import KafkaClient

T = TypeVar("T")


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, limit: int = 150) -> T:
    """The first truthy result of `check` (effects sent straight to Kafka reach the views
    asynchronously). A bound on waiting, not a timing claim."""
    for _ in range(limit):
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {what}")


@pytest.fixture
def onfido(live_server: LiveServer) -> Iterator[DefaultApi]:
    client = ApiClient(
        Configuration(api_token=live_server.token_a, host=f"{live_server.base_url}/v3.6", retries=0)
    )
    try:
        yield DefaultApi(client)
    finally:
        client.rest_client.pool_manager.clear()  # ApiClient has no close()


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP with account A's token, for what the SDK does not do (and cannot break)."""
    async with httpx.AsyncClient(
        base_url=live_server.base_url,
        headers={"Authorization": f"Token token={live_server.token_a}"},
    ) as client:
        yield client


@pytest.fixture
async def workflow(http: httpx.AsyncClient, live_server: LiveServer) -> dict[str, Any]:
    """A workflow registered in account A: its `id` is Onfido's `workflow_id`."""
    name = f"kyc-{uuid.uuid4().hex[:8]}"
    return await register_workflow(http, live_server.account_a, name, live_server.token_a)


def builder(workflow: dict[str, Any], **fields: Any) -> WorkflowRunBuilder:
    fields.setdefault("applicant_id", uuid.uuid4())
    return WorkflowRunBuilder(workflow_id=uuid.UUID(workflow["id"]), **fields)


async def test_create_answers_201_with_a_processing_run_of_the_workflows_version(
    onfido: DefaultApi, workflow: dict[str, Any], live_server: LiveServer
) -> None:
    applicant = str(uuid.uuid4())
    response = await call(
        onfido.create_workflow_run_with_http_info,
        builder(workflow, applicant_id=applicant, tags=["vip", "eu"], customer_user_id="cu-1"),
    )

    assert response.status_code == 201
    run = response.data
    assert isinstance(run, WorkflowRun)
    uuid.UUID(str(run.id))
    assert str(run.workflow_id) == workflow["id"] and str(run.applicant_id) == applicant
    assert run.status == "processing"
    assert isinstance(run.workflow_version_id, int) and run.workflow_version_id >= 1
    assert run.tags == ["vip", "eu"] and run.customer_user_id == "cu-1"
    assert run.created_at is not None and run.created_at.tzinfo is not None
    assert run.dashboard_url and str(run.id) in run.dashboard_url
    assert run.sdk_token


async def test_find_returns_the_created_run(onfido: DefaultApi, workflow: dict[str, Any]) -> None:
    created = await call(onfido.create_workflow_run, builder(workflow, tags=["t1"]))

    found = await call(onfido.find_workflow_run, created.id)

    assert found.id == created.id
    assert (found.workflow_id, found.applicant_id) == (created.workflow_id, created.applicant_id)
    assert (found.status, found.tags) == ("processing", ["t1"])
    assert found.workflow_version_id == created.workflow_version_id


async def test_find_of_an_unknown_run_raises_not_found(onfido: DefaultApi) -> None:
    with pytest.raises(NotFoundException) as raised:
        await call(onfido.find_workflow_run, str(uuid.uuid4()))
    assert raised.value.status == 404
    assert '"error"' in (raised.value.body or "")


async def test_create_on_an_unknown_workflow_raises_unprocessable_with_onfidos_error_body(
    onfido: DefaultApi,
) -> None:
    unknown = WorkflowRunBuilder(workflow_id=uuid.uuid4(), applicant_id=uuid.uuid4())
    with pytest.raises(UnprocessableEntityException) as raised:
        await call(onfido.create_workflow_run, unknown)
    assert raised.value.status == 422
    assert '"type"' in (raised.value.body or "") and '"message"' in (raised.value.body or "")


async def test_a_malformed_body_answers_422_with_onfidos_error_fields(
    http: httpx.AsyncClient, workflow: dict[str, Any]
) -> None:
    no_applicant = await http.post("/v3.6/workflow_runs", json={"workflow_id": workflow["id"]})
    too_many_tags = await http.post(
        "/v3.6/workflow_runs",
        json={
            "workflow_id": workflow["id"],
            "applicant_id": str(uuid.uuid4()),
            "tags": [f"t{n}" for n in range(31)],
        },
    )
    not_a_uuid = await http.post(
        "/v3.6/workflow_runs", json={"workflow_id": "wf", "applicant_id": str(uuid.uuid4())}
    )

    for response in (no_applicant, too_many_tags, not_a_uuid):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert set(error) == {"type", "message", "fields"}
        assert error["type"] == "validation_error" and error["message"]
    assert any("applicant_id" in field for field in no_applicant.json()["error"]["fields"])
    assert any("tags" in field for field in too_many_tags.json()["error"]["fields"])
    assert any("workflow_id" in field for field in not_a_uuid.json()["error"]["fields"])


async def _instance_id(
    http: httpx.AsyncClient, account: str, workflow: dict[str, Any], run_id: str
) -> str:
    """The Cloudflare instance id behind an Onfido run (its global id is the run's id)."""
    listed = await http.get(
        f"/client/v4/accounts/{account}/workflows/{workflow['name']}/instances",
        params={"per_page": 100},
    )
    for item in listed.json()["result"]:
        if str(instance_global_id(account, workflow["name"], item["id"])) == run_id:
            return str(item["id"])
    raise AssertionError(f"no instance behind run {run_id}")


async def test_list_filters_by_status_dates_applicant_tags_and_pages_in_either_order(
    onfido: DefaultApi,
    http: httpx.AsyncClient,
    live_kafka: KafkaClient,
    live_server: LiveServer,
    workflow: dict[str, Any],
) -> None:
    account = live_server.account_a
    applicant = str(uuid.uuid4())
    declined = await call(onfido.create_workflow_run, builder(workflow, tags=["vip", "eu"]))
    abandoned = await call(onfido.create_workflow_run, builder(workflow, tags=["eu"]))
    processing = await call(
        onfido.create_workflow_run, builder(workflow, applicant_id=applicant, tags=["us"])
    )
    created_order = [str(r.id) for r in (declined, abandoned, processing)]

    instance = await _instance_id(http, account, workflow, str(declined.id))
    for kind, fields in [
        ("StartRun", {}),
        ("CompleteRun", {"output": {"score": 0.2}, "outcome": "declined", "reasons": ["doc"]}),
    ]:
        command = {
            "type": kind,
            "command_id": str(uuid.uuid4()),
            "account_id": account,
            "workflow_name": workflow["name"],
            "instance_id": instance,
            **fields,
        }
        await live_kafka.send(command)
        assert (await live_kafka.reply(command["command_id"]))["outcome"] == "accepted"
    terminate = await http.patch(
        f"/client/v4/accounts/{account}/workflows/{workflow['name']}/instances/"
        + await _instance_id(http, account, workflow, str(abandoned.id))
        + "/status",
        json={"status": "terminate"},
    )
    assert terminate.status_code == 200, terminate.text

    async def declined_shows() -> Any:
        run = await call(onfido.find_workflow_run, declined.id)
        return run if run.status == "declined" else None

    finished = await eventually(declined_shows, "the declined run")
    assert (finished.output, finished.reasons) == ({"score": 0.2}, ["doc"])

    async def ids(**filters: Any) -> list[str]:
        return [str(r.id) for r in await call(onfido.list_workflow_runs, **filters)]

    assert await ids() == created_order[::-1]  # desc by default
    assert await ids(sort="desc") == created_order[::-1]
    assert await ids(sort="asc") == created_order
    assert await ids(status="declined") == [str(declined.id)]
    assert await ids(status="abandoned,declined", sort="asc") == created_order[:2]
    assert await ids(status="processing") == [str(processing.id)]
    assert await ids(applicant_id=applicant) == [str(processing.id)]
    assert await ids(tags=["eu"], sort="asc") == created_order[:2]
    assert await ids(tags=["vip", "eu"]) == [str(declined.id)]
    assert await ids(page=1, sort="asc") == created_order
    assert await ids(page=2) == []

    assert declined.created_at is not None and processing.created_at is not None
    day = declined.created_at.date()
    assert await ids(created_at_gt=day - timedelta(days=1), sort="asc") == created_order
    assert await ids(created_at_lt=day + timedelta(days=1), sort="asc") == created_order
    assert await ids(created_at_lt=day) == []
    assert await ids(created_at_gt=processing.created_at.date()) == []


async def test_list_never_shows_another_accounts_runs(
    onfido: DefaultApi, live_server: LiveServer, workflow: dict[str, Any]
) -> None:
    mine = await call(onfido.create_workflow_run, builder(workflow))
    async with httpx.AsyncClient(base_url=live_server.base_url) as other:
        theirs_workflow = await register_workflow(
            other, live_server.account_b, f"kyc-{uuid.uuid4().hex[:8]}", live_server.token_b
        )
    theirs_client = ApiClient(
        Configuration(api_token=live_server.token_b, host=f"{live_server.base_url}/v3.6", retries=0)
    )
    try:
        theirs_api = DefaultApi(theirs_client)
        theirs = await call(theirs_api.create_workflow_run, builder(theirs_workflow))
        assert [r.id for r in await call(theirs_api.list_workflow_runs)] == [theirs.id]
    finally:
        theirs_client.rest_client.pool_manager.clear()

    assert [r.id for r in await call(onfido.list_workflow_runs)] == [mine.id]
    with pytest.raises(NotFoundException):
        await call(onfido.find_workflow_run, theirs.id)
