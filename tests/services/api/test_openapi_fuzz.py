"""The app's own OpenAPI document, fuzzed with schemathesis (v4) against the in-process ASGI app
over the real broker and store: no 5xx, no response outside its documented schema, no status
the document does not list.

Each operation gets bounded, derandomized runs: valid requests aimed anywhere, invalid ones
(schemathesis' negative mode), and valid ones aimed at real data (path parameters, a step name
and Onfido's workflow_id pinned to things that exist), so that success answers are checked
against their schemas too. The app runs in this test's event loop, where its Kafka gateway
lives; hypothesis drives it from a worker thread and hands each request to the loop.
(schemathesis' own `from_asgi` transport would run the app in a second event loop.)
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from contracts.keys import instance_global_id
from tests.fixtures.live_server import LiveServer, register_workflow
from tests.fixtures.service import KafkaClient

# Per operation and run; raise it for a deeper local run (FLOWLEDGER_FUZZ_EXAMPLES=200).
MAX_EXAMPLES = int(os.environ.get("FLOWLEDGER_FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
BASE = "http://flowledger"
# schemathesis' negative-mode strategies use `random`; hypothesis warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


@dataclass
class Findings:
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def record(self, label: str, status: int) -> None:
        self.statuses.setdefault(label, Counter())[status] += 1


@pytest.fixture
async def asgi(live_service: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: an unhandled error is the 500 a client would see.
    transport = httpx.ASGITransport(app=live_service.service.api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def real_data(client: httpx.AsyncClient, kafka: KafkaClient, s: LiveServer) -> dict[str, str]:
    """In account A: a workflow, an instance with a finished step "charge", another instance
    for status edits (which may end it), a terminated one to delete, and an Onfido run.
    Values to pin requests to."""
    workflow = f"fz-{uuid.uuid4().hex[:8]}"
    registered = await register_workflow(client, s.account_a, workflow, s.token_a)
    instance, edited = f"fz-{uuid.uuid4().hex[:8]}", f"fz-{uuid.uuid4().hex[:8]}"
    doomed = f"fz-{uuid.uuid4().hex[:8]}"
    created = await client.post(
        f"/client/v4/accounts/{s.account_a}/workflows/{workflow}/instances/batch",
        json=[
            {"instance_id": instance, "params": {"n": 1}},
            {"instance_id": edited},
            {"instance_id": doomed},
        ],
        headers={"Authorization": f"Bearer {s.token_a}"},
    )
    assert created.status_code == 200, created.text
    engine: list[tuple[str, dict[str, Any]]] = [
        ("StartRun", {}),
        ("BeginStep", {"name": "charge"}),
        ("BeginAttempt", {"name": "charge"}),
        ("EndAttempt", {"name": "charge", "success": True, "output": {"ok": 1}}),
        ("EndStep", {"name": "charge", "output": {"ok": 1}}),
    ]
    engine.append(("ChangeStatus", {"action": "terminate", "instance_id": doomed}))
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
    run = await client.post(  # a write: answers once every view has caught up, steps included
        "/v3.6/workflow_runs",
        json={"workflow_id": registered["id"], "applicant_id": str(uuid.uuid4())},
        headers={"Authorization": f"Token token={s.token_a}"},
    )
    assert run.status_code == 201, run.text
    return {
        "account_id": s.account_a,
        "workflow_name": workflow,
        "workflow_uuid": registered["id"],
        "instance_id": instance,
        "edited_instance_id": edited,
        "doomed_instance_id": doomed,
        "global_id": str(instance_global_id(s.account_a, workflow, instance)),
        "workflow_run_id": run.json()["id"],
        "event_type": "approval",
    }


def pins_for(path: str, method: str, names: list[str], real: dict[str, str]) -> dict[str, str]:
    pins = {name: real[name] for name in names if name in real}
    if method == "DELETE" and "instance_id" in names:
        pins["instance_id"] = real["doomed_instance_id"]  # finished, so it may be deleted
    if "run_id" in names:
        pins["run_id"] = real["global_id"]
    if "instance_id" in names and path.startswith("/v1/"):
        pins["instance_id"] = real["global_id"]  # staged instances are named by global id
    if "instance_id" in names and path.endswith("/status"):
        pins["instance_id"] = real["edited_instance_id"]  # keep the other one running
    return pins


def tweak_for(path: str, method: str, real: dict[str, str]) -> Callable[[Case], None] | None:
    """What pins a generated request to real data beyond its path."""
    if path.endswith("/step"):

        def step(case: Case) -> None:
            case.query = {**(case.query or {}), "name": "charge"}

        return step
    if (method, path) == ("POST", "/v3.6/workflow_runs"):

        def workflow(case: Case) -> None:
            if isinstance(case.body, dict):
                case.body = {**case.body, "workflow_id": real["workflow_uuid"]}

        return workflow
    return None


def to_httpx(case: Case, token: str) -> dict[str, Any]:
    """schemathesis' request (requests-style keyword arguments) for httpx."""
    raw = case.as_transport_kwargs(base_url=BASE, headers={"Authorization": f"Bearer {token}"})
    request: dict[str, Any] = {
        "method": raw["method"],
        "url": raw["url"],
        "headers": raw.get("headers") or {},
        "params": raw.get("params") or None,
        "cookies": raw.get("cookies") or None,
    }
    if "json" in raw:
        request["content"] = json.dumps(raw["json"]).encode()
        request["headers"] = {**request["headers"], "Content-Type": "application/json"}
    elif raw.get("data") is not None:
        data = raw["data"]
        request["content"] = data if isinstance(data, bytes) else str(data).encode()
    return request


def fuzz(
    operation: Any,
    mode: GenerationMode,
    pins: dict[str, str],
    tweak: Callable[[Case], None] | None,
    token: str,
    send: Callable[[dict[str, Any]], httpx.Response],
    findings: Findings,
) -> None:
    """One operation's bounded run; each distinct failure is recorded once, with its request."""

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=pins or None))
    def run(case: Case) -> None:
        if tweak is not None:
            tweak(case)
        request = to_httpx(case, token)
        response = send(request)
        findings.record(operation.label, response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as raised:  # schemathesis' FailureGroup
            found = raised.exceptions if isinstance(raised, BaseExceptionGroup) else (raised,)
            for failure in found:
                title = str(getattr(failure, "title", "") or type(failure).__name__)
                findings.failures.setdefault(
                    (operation.label, title),
                    f"{operation.label} [{mode.value}{', pinned' if pins or tweak else ''}]:"
                    f" {title}\n"
                    f"  request: {request['method']} {response.request.url}\n"
                    f"  body: {request.get('content', b'')[:300]!r}\n"
                    f"  response: {response.status_code} {response.text[:500]}\n"
                    f"  {str(failure)[:600]}",
                )

    run()


async def test_fuzzed_requests_get_no_5xx_and_only_documented_statuses_and_shapes(
    live_service: LiveServer, asgi: httpx.AsyncClient, live_kafka: KafkaClient
) -> None:
    s = live_service
    real = await real_data(asgi, live_kafka, s)
    schema = schemathesis.openapi.from_dict(s.service.api.openapi())
    loop = asyncio.get_running_loop()

    def send(request: dict[str, Any]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(asgi.request(**request), loop).result(120)

    findings = Findings()
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation schemathesis cannot read
        operations.append(result.ok())
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        # Paths under /client/v4 name their account: the `*` token may see any of them.
        anywhere = s.token_all if operation.path.startswith("/client/v4/") else s.token_a
        pins = pins_for(operation.path, operation.method.upper(), names, real)
        tweak = tweak_for(operation.path, operation.method.upper(), real)
        runs: list[tuple[GenerationMode, dict[str, str], Callable[[Case], None] | None, str]] = [
            (GenerationMode.POSITIVE, {}, None, anywhere),
            (GenerationMode.NEGATIVE, {}, None, anywhere),
        ]
        if pins or tweak:
            runs.append((GenerationMode.POSITIVE, pins, tweak, s.token_a))
        for mode, pinned, tweaked, token in runs:
            await asyncio.to_thread(fuzz, operation, mode, pinned, tweaked, token, send, findings)

    # The runs reached real data: every operation answered a success at least once.
    never_succeeded = {
        label: dict(seen)
        for label, seen in findings.statuses.items()
        if not any(200 <= status < 300 for status in seen)
    }
    report = "\n\n".join(findings.failures.values())
    assert not findings.failures, f"{len(findings.failures)} failure(s):\n\n{report}"
    assert len(findings.statuses) == len(operations) and not never_succeeded, never_succeeded


async def test_a_nul_in_any_query_filter_is_rejected_as_invalid_input_not_a_server_error(
    live_service: LiveServer, asgi: httpx.AsyncClient
) -> None:
    """PostgreSQL text cannot hold NUL: such a filter once failed the view's query with a 500."""
    s = live_service
    cases = [
        ("/v3.6/workflow_runs", {"tags": "a\x00b"}, s.token_a, 422),
        ("/v3.6/workflow_runs", {"status": "\x00"}, s.token_a, 422),
        ("/v3.6/workflow_runs", {"account_id": "\x00"}, s.token_all, 422),
        ("/v1/runs", {"workspace": "\x00x"}, s.token_a, 400),
        ("/v1/runs", {"user": "u\x00"}, s.token_a, 400),
        ("/v1/workflow-instances", {"account_id": "a\x00"}, s.token_all, 400),
        (f"/client/v4/accounts/{s.account_a}/workflows", {"x\x00": "1"}, s.token_a, 400),
    ]
    for path, params, token, status in cases:
        response = await asgi.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        assert (path, params, response.status_code) == (path, params, status), response.text
        assert "NUL" in response.text


async def test_a_nul_character_is_refused_at_the_door_and_filtered_lists_still_answer(
    live_service: LiveServer, asgi: httpx.AsyncClient
) -> None:
    """JSON may carry \\u0000. Found by the fuzz run on PostgreSQL: one such document in an
    account made every filtered list of that account a 500. No text with NUL is stored now
    (PostgreSQL's text refuses it, and the store's own tags use it): it is a 400."""
    s = live_service
    h = {"Authorization": f"Bearer {s.token_a}"}
    workflow = await register_workflow(asgi, s.account_a, f"nul-{uuid.uuid4().hex[:8]}", s.token_a)
    applicant = str(uuid.uuid4())
    run = await asgi.post(
        "/v3.6/workflow_runs",
        json={
            "workflow_id": workflow["id"],
            "applicant_id": applicant,
            "tags": ["t"],
            "custom_data": {"k\u0000": "v\u0000"},
            "link": {"completed_redirect_url": "https://x.test/\u0000"},
        },
        headers=h,
    )
    assert run.status_code == 400 and "NUL" in run.text, run.text
    created = await asgi.post(
        f"/client/v4/accounts/{s.account_a}/workflows/{workflow['name']}/instances",
        json={"params": {"a": "\u0000"}},
        headers=h,
    )
    assert created.status_code == 400 and "NUL" in created.text, created.text

    for path, params in [
        ("/v3.6/workflow_runs", {"applicant_id": applicant}),
        ("/v3.6/workflow_runs", {"tags": "t"}),
        ("/v1/runs", {"user": "nobody"}),
        ("/v1/runs", {"workspace": "w"}),
        ("/v1/runs", {"parent": str(uuid.uuid4())}),
        ("/v1/workflow-instances", {"workflow_id": workflow["id"]}),
    ]:
        response = await asgi.get(path, params=params, headers=h)
        assert (path, params, response.status_code) == (path, params, 200), response.text
    listed = await asgi.get("/v3.6/workflow_runs", params={"applicant_id": applicant}, headers=h)
    assert listed.json() == []
