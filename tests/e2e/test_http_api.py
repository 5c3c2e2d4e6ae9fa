"""The HTTP API end to end: writes go through Kafka and are readable in every dialect at once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from services.bootstrap import Service

V4 = "/client/v4/accounts"


async def _workflow(http: httpx.AsyncClient, account: str, name: str) -> dict[str, Any]:
    response = await http.put(f"{V4}/{account}/workflows/{name}", json={"class_name": "Demo"})
    assert response.status_code == 200, response.text
    return response.json()["result"]  # type: ignore[no-any-return]


async def test_created_instance_reads_back_at_once_in_every_view(
    http: httpx.AsyncClient, new_id: str
) -> None:
    account, name = f"acc{new_id}", "orders"
    workflow = await _workflow(http, account, name)
    created = await http.post(
        f"{V4}/{account}/workflows/{name}/instances",
        json={"instance_id": f"i-{new_id}", "params": {"order": 7}},
    )
    assert created.status_code == 200, created.text
    summary = created.json()["result"]
    assert summary["id"] == f"i-{new_id}" and summary["status"] == "queued"
    assert summary["workflow_id"] == workflow["id"]

    got = await http.get(f"{V4}/{account}/workflows/{name}/instances/i-{new_id}")
    assert got.json()["result"]["params"] == {"order": 7}

    runs = (await http.get("/v1/runs", params={"account_id": account})).json()["data"]
    assert [r["cfWorkflowId"] for r in runs] == [f"i-{new_id}"]
    assert runs[0]["status"] == "pending" and runs[0]["input"] == {"order": 7}
    staged = await http.get(f"/v1/workflow-instances/{runs[0]['id']}")
    assert staged.json()["terminated"] is False and staged.json()["workflowID"] == workflow["id"]


async def test_second_create_with_the_same_id_is_a_409_in_the_envelope(
    http: httpx.AsyncClient, new_id: str
) -> None:
    account, name = f"acc{new_id}", "orders"
    await _workflow(http, account, name)
    path = f"{V4}/{account}/workflows/{name}/instances"
    assert (await http.post(path, json={"instance_id": f"dup-{new_id}"})).status_code == 200
    again = await http.post(path, json={"instance_id": f"dup-{new_id}"})
    assert again.status_code == 409
    body = again.json()
    assert body["success"] is False and body["result"] is None
    assert body["errors"][0]["code"] >= 1000
    assert "instance.already_exists" in body["errors"][0]["message"]


async def test_bad_bodies_and_unknown_workflows_are_4xx_never_5xx(
    http: httpx.AsyncClient, new_id: str
) -> None:
    path = f"{V4}/acc{new_id}/workflows/nope/instances"
    not_json = await http.post(path, content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["success"] is False
    bad_id = await http.post(path, json={"instance_id": "has space"})
    assert bad_id.status_code == 400
    unknown = await http.post(path, json={})
    assert unknown.status_code == 404
    assert "workflow.not_found" in unknown.json()["errors"][0]["message"]


async def test_status_edit_pauses_and_resumes_through_the_aggregate(
    http: httpx.AsyncClient, new_id: str
) -> None:
    account, name = f"acc{new_id}", "orders"
    await _workflow(http, account, name)
    base = f"{V4}/{account}/workflows/{name}/instances"
    await http.post(base, json={"instance_id": f"p-{new_id}"})
    paused = await http.patch(f"{base}/p-{new_id}/status", json={"status": "pause"})
    assert paused.json()["result"]["status"] == "paused"
    assert (await http.get(f"{base}/p-{new_id}")).json()["result"]["status"] == "paused"
    resumed = await http.patch(f"{base}/p-{new_id}/status", json={"status": "resume"})
    assert resumed.json()["result"]["status"] == "queued"


async def test_list_pages_and_cursor_walk_every_instance_once(
    http: httpx.AsyncClient, new_id: str
) -> None:
    account, name = f"acc{new_id}", "orders"
    await _workflow(http, account, name)
    base = f"{V4}/{account}/workflows/{name}/instances"
    items = [{"instance_id": f"b{n}-{new_id}"} for n in range(7)]
    assert (await http.post(f"{base}/batch", json=items)).status_code == 200
    first = (await http.get(base, params={"per_page": 3})).json()
    assert first["result_info"]["total_count"] == 7 and first["result_info"]["count"] == 3
    seen = [i["id"] for i in first["result"]]
    cursor = first["result_info"]["cursor"]
    while cursor:
        page = (await http.get(base, params={"per_page": 3, "cursor": cursor})).json()
        seen += [i["id"] for i in page["result"]]
        cursor = page["result_info"].get("cursor")
    assert sorted(seen) == sorted(i["instance_id"] for i in items)
    beyond = (await http.get(base, params={"per_page": 3, "page": 4})).json()
    assert beyond["result"] == []


async def test_onfido_run_is_created_201_and_found_with_its_own_sdk_token(
    http: httpx.AsyncClient, new_id: str
) -> None:
    account = f"acc{new_id}"
    workflow = await _workflow(http, account, "kyc")
    applicant = str(uuid.uuid4())
    created = await http.post(
        "/v3.6/workflow_runs",
        params={"account_id": account},
        json={"workflow_id": workflow["id"], "applicant_id": applicant, "tags": ["vip"]},
    )
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "processing" and run["workflow_version_id"] == 1
    assert run["applicant_id"] == applicant and run["tags"] == ["vip"]

    scoped = {"Authorization": f"Token token={run['sdk_token']}"}
    found = await http.get(f"/v3.6/workflow_runs/{run['id']}", headers=scoped)
    assert found.status_code == 200 and found.json()["id"] == run["id"]
    elsewhere = await http.get("/v3.6/workflow_runs", headers=scoped)
    assert elsewhere.status_code in (404, 422)

    listed = await http.get("/v3.6/workflow_runs", params={"account_id": account, "tags": "vip"})
    assert [r["id"] for r in listed.json()] == [run["id"]]


async def test_onfido_validation_errors_use_onfidos_error_body(
    http: httpx.AsyncClient, new_id: str
) -> None:
    response = await http.post(
        "/v3.6/workflow_runs", params={"account_id": f"acc{new_id}"}, json={"workflow_id": "x"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "validation_error"


async def test_a_write_not_answered_in_time_is_202_with_its_command_id_and_still_happens(
    service: Service, http: httpx.AsyncClient, new_id: str
) -> None:
    account, name = f"acc{new_id}", "orders"
    await _workflow(http, account, name)
    gateway = service.gateway
    assert gateway is not None
    gateway.timeout_s = 0.000_001  # nothing can be answered that fast
    try:
        response = await http.post(
            f"{V4}/{account}/workflows/{name}/instances", json={"instance_id": f"late-{new_id}"}
        )
    finally:
        gateway.timeout_s = service.settings.write_timeout_s
    assert response.status_code == 202
    body = response.json()
    assert body["success"] is True and body["result"]["status"] == "pending"
    uuid.UUID(body["result"]["command_id"])
    # The command was published all the same: the instance appears once it is processed.
    path = f"{V4}/{account}/workflows/{name}/instances/late-{new_id}"
    for _ in range(200):
        if (await http.get(path)).status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert (await http.get(path)).json()["result"]["status"] == "queued"


async def test_the_api_port_serves_metrics_that_count_its_writes(
    http: httpx.AsyncClient, new_id: str
) -> None:
    await _workflow(http, f"acc{new_id}", "orders")
    metrics = await http.get("/metrics", headers={"Authorization": ""})
    assert metrics.status_code == 200
    accepted = [
        line
        for line in metrics.text.splitlines()
        if line.startswith("flowledger_commands_total") and 'outcome="accepted"' in line
    ]
    assert accepted and float(accepted[0].rsplit(" ", 1)[1]) >= 1


async def test_params_too_large_for_a_command_answer_413_and_nothing_is_created(
    http: httpx.AsyncClient, new_id: str
) -> None:
    account, name = f"acc{new_id}", "orders"
    await _workflow(http, account, name)
    path = f"{V4}/{account}/workflows/{name}/instances"
    # Within the HTTP body limit, beyond the largest command the commands role accepts.
    big = await http.post(path, json={"instance_id": f"big-{new_id}", "params": "x" * 1_000_000})

    assert big.status_code == 413, big.text
    assert big.json()["success"] is False and "limit" in big.json()["errors"][0]["message"]
    missing = await http.get(f"{path}/big-{new_id}")
    assert missing.status_code == 404
