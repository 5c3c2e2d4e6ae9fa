"""Every read model parses with models written from the seeds' field tables.

The models below are transcribed from the seeds, not from the code: seed 002 (Cloudflare
InstanceGetResponse with its four step kinds, InstanceListResponse, InstanceStepResponse),
seed 003 (agent platform WorkflowRun), seed 001 (Onfido WorkflowRun) and seeds 000/004
(staged WorkflowInstance with StageStatus). Types and requiredness are exactly as declared:
a required field must be present, a nullable one may be null, an optional one may be absent
but never null unless the seed says so, and no field beyond the seed's may appear. Parsing is
strict JSON parsing (a number is no string, a timestamp no date).

The folds are driven by journeys of lifecycle events that reach every status each projection
can produce; every prefix of every journey is checked, so pending, finished and in-between
states all parse. The routes are checked too, through a bare app over an in-memory view: the
response models must not put back what the projections leave out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal, NotRequired
from uuid import UUID

import msgspec
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

from contracts import events as ev
from projections import agent_run, cloudflare_instance, onfido_run, staged_instance
from services.api import cloudflare_routes, onfido_routes, run_routes
from services.api.auth import ApiTokens
from services.store.document_view import Query
from tests.projections.events_factory import Story

EXACT = ConfigDict(extra="forbid", strict=True)


def _rfc3339(text: str) -> str:
    """`format: date-time`: a full timestamp with its offset."""
    if "T" not in text.upper() or datetime.fromisoformat(text).tzinfo is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    return text


def _uuid(text: str) -> str:
    UUID(text)
    return text


DateTimeText = Annotated[str, AfterValidator(_rfc3339)]
UuidText = Annotated[str, AfterValidator(_uuid)]
Number = float  # a JSON number; strict float still takes an integer

# --- seed 002: Cloudflare ------------------------------------------------------------------

CfStatus = Literal[
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waitingForPause",
    "waiting",
    "rollingBack",
]
CfTriggerSource = Literal["unknown", "api", "binding", "event", "cron"]


@with_config(EXACT)
class CfError(TypedDict):
    message: str
    name: str


@with_config(EXACT)
class CfRollback(TypedDict):
    error: CfError | None
    outcome: Literal["complete", "failed"]


@with_config(EXACT)
class CfAttempt(TypedDict):
    end: DateTimeText | None
    error: CfError | None
    start: DateTimeText
    success: bool | None


@with_config(EXACT)
class CfRetries(TypedDict):
    delay: str | Number
    limit: Number
    backoff: NotRequired[Literal["constant", "linear", "exponential"]]


@with_config(EXACT)
class CfConfig(TypedDict):
    retries: CfRetries
    timeout: str | Number
    sensitive: NotRequired[Literal["output"]]


@with_config(EXACT)
class CfStep(TypedDict):  # UnionMember0
    attempts: list[CfAttempt]
    config: CfConfig
    end: DateTimeText | None
    name: str
    output: str | None
    start: DateTimeText
    success: bool | None
    type: Literal["step", "rollback"]


@with_config(EXACT)
class CfSleep(TypedDict):  # UnionMember1
    end: DateTimeText
    error: CfError | None
    finished: bool
    name: str
    start: DateTimeText
    type: Literal["sleep"]


@with_config(EXACT)
class CfTerminationTrigger(TypedDict):
    source: str


@with_config(EXACT)
class CfTermination(TypedDict):  # UnionMember2
    trigger: CfTerminationTrigger
    type: Literal["termination"]


@with_config(EXACT)
class CfWaitForEvent(TypedDict):  # UnionMember3
    end: DateTimeText
    error: CfError | None
    finished: bool
    name: str
    start: DateTimeText
    type: Literal["waitForEvent"]
    output: NotRequired[str]


@with_config(EXACT)
class CfTrigger(TypedDict):
    source: CfTriggerSource


@with_config(EXACT)
class CfSchedule(TypedDict):
    cron: str
    scheduledTime: Number


@with_config(EXACT)
class InstanceGetResponse(TypedDict):
    end: DateTimeText | None
    error: CfError | None
    output: str | Number
    params: Any
    queued: DateTimeText
    rollback: CfRollback | None
    start: DateTimeText | None
    status: CfStatus
    step_count: Number
    steps: list[
        Annotated[CfStep | CfSleep | CfTermination | CfWaitForEvent, Field(discriminator="type")]
    ]
    success: bool | None
    trigger: CfTrigger
    versionId: UuidText
    schedule: NotRequired[CfSchedule]


@with_config(EXACT)
class InstanceListResponse(TypedDict):  # also InstanceCreateResponse, InstanceBulkResponse
    id: Annotated[str, Field(min_length=1, max_length=100)]
    created_on: DateTimeText
    ended_on: DateTimeText | None
    modified_on: DateTimeText
    started_on: DateTimeText | None
    status: CfStatus
    version_id: UuidText
    workflow_id: UuidText
    trigger_source: NotRequired[CfTriggerSource]


@with_config(EXACT)
class InstanceStepResponse(TypedDict):
    error: CfError | None
    status: CfStatus
    output: NotRequired[Any]


# --- seed 003: the agent platform's WorkflowRun --------------------------------------------


@with_config(EXACT)
class AgentWorkflowRun(TypedDict):
    id: str
    workspaceId: str
    subjectId: str
    parentRunId: str | None
    status: Literal[
        "pending", "failed", "running", "completed", "cancelled", "timed_out", "paused", "waiting"
    ]
    mode: Literal["sync", "async"]
    input: Any
    output: Any
    error: str | None
    triggeredBy: Literal["workflow", "agent", "swarm", "user", "event"]
    cfWorkflowId: str | None
    durationMs: Number | None
    userId: str
    startedAt: DateTimeText | None
    completedAt: DateTimeText | None
    createdAt: DateTimeText
    updatedAt: DateTimeText


# --- seed 001: Onfido's WorkflowRun ---------------------------------------------------------

# WorkflowRunStatus, WorkflowRunLink and WorkflowRunError are linked, not shown, by the seed:
# these are Onfido's published values and shapes.
OnfidoStatus = Literal[
    "processing",
    "awaiting_input",
    "awaiting_client_input",
    "approved",
    "declined",
    "review",
    "abandoned",
    "error",
]


@with_config(EXACT)
class OnfidoRunError(TypedDict):
    type: NotRequired[str]
    message: NotRequired[str]


@with_config(EXACT)
class OnfidoWorkflowRun(TypedDict):
    applicant_id: str
    workflow_id: str
    tags: NotRequired[list[str]]
    customer_user_id: NotRequired[str]
    link: NotRequired[dict[str, Any]]
    created_at: NotRequired[str]
    updated_at: NotRequired[str]
    id: str
    workflow_version_id: NotRequired[Number]
    dashboard_url: NotRequired[str]
    status: NotRequired[OnfidoStatus]
    output: NotRequired[dict[str, Any]]
    reasons: NotRequired[list[str]]
    error: NotRequired[OnfidoRunError]
    sdk_token: NotRequired[str]


# --- seeds 000 and 004: the staged WorkflowInstance ----------------------------------------


@with_config(EXACT)
class StageStatus(TypedDict):  # seed 004, the Python flavour: `date` is a full date
    error: NotRequired[str | None]  # declared Optional[str]
    instance_id: str
    stage: float
    started_at: date
    terminated_at: NotRequired[date]


@with_config(EXACT)
class StagedWorkflowInstance(TypedDict):  # seed 000: `Date` is a timestamp
    createdAt: AwareDatetime
    error: NotRequired[str]
    id: str
    status: NotRequired[list[StageStatus]]
    terminated: bool
    terminatedAt: NotRequired[AwareDatetime]
    updatedAt: AwareDatetime
    workflowID: str


# --- the lists around them ------------------------------------------------------------------


@with_config(EXACT)
class RunPage(TypedDict):
    data: list[AgentWorkflowRun]
    nextCursor: str | None


@with_config(EXACT)
class StagedPage(TypedDict):
    data: list[StagedWorkflowInstance]
    nextCursor: str | None


def _parse(model: Any, value: Any) -> None:
    """Strict parsing of the JSON a client receives."""
    TypeAdapter(model).validate_json(msgspec.json.encode(value), strict=True)


# --- journeys -------------------------------------------------------------------------------

Journey = Callable[[Story], list[ev.LifecycleEvent]]
CONFIG = {"retries": {"limit": 2, "delay": "1 second", "backoff": "linear"}, "timeout": "1 minute"}
SENSITIVE = {**CONFIG, "sensitive": "output"}


def _every_step_kind(s: Story) -> list[ev.LifecycleEvent]:
    return [
        s.created({"order": 42}, schedule={"cron": "0 * * * *", "scheduled_time": 1_767_000_000}),
        s.started(),
        s.step_began("charge", config=SENSITIVE),
        s.attempt_began("charge"),
        s.attempt_ended("charge", success=False, retry_delay_ms=1_000),
        s.backoff_ended("charge"),
        s.attempt_began("charge", attempt=2),
        s.attempt_ended("charge", attempt=2, output={"card": "4242"}),
        s.step_ended("charge", output={"card": "4242"}),
        s.step_began("fetch", config=CONFIG),
        s.attempt_began("fetch"),
        s.attempt_ended("fetch", output={"blob": "x" * 5_000}),
        s.step_ended("fetch", output={"blob": "x" * 5_000}),
        s.step_began("nap", "sleep", sleep_ms=3_600_000),
        s.step_ended("nap", "sleep"),
        s.event_received({"by": "ann"}),
        s.step_began("approval", "waitForEvent", wait_timeout="1 hour"),
        s.event_delivered({"by": "ann"}),
        s.step_began("second approval", "waitForEvent"),
        s.step_ended("second approval", "waitForEvent", error="timed out"),
        s.step_began("refund"),
        s.attempt_began("refund"),
        s.attempt_ended("refund", success=False),
        s.step_ended("refund", error="card declined"),
        s.completed({"total": 3}, "declined", ["doc"]),
    ]


def _paused_at_a_step_boundary(s: Story) -> list[ev.LifecycleEvent]:
    return [
        s.created(),
        s.started(),
        s.step_began("s"),
        s.attempt_began("s"),
        s.pause_requested(),
        s.attempt_ended("s", output=1),
        s.step_ended("s", output=1),
        s.pause_acknowledged(),
        s.resumed(),
        s.completed(42, "approved"),
    ]


def _paused_while_waiting(s: Story) -> list[ev.LifecycleEvent]:
    return [
        s.created(),
        s.started(),
        s.step_began("ok?", "waitForEvent"),
        s.paused(resume_to="waiting"),
        s.resumed("waiting"),
        s.event_delivered(None),
        s.failed("too slow", name="TimeoutError", timed_out=True),
    ]


def _rolled_back(s: Story) -> list[ev.LifecycleEvent]:
    return [
        s.created(),
        s.started(),
        s.step_began("nap", "sleep", sleep_ms=86_400_000),
        s.terminated(rollback=True),
        s.rollback_ended(error="undo failed"),
    ]


def _restarted(s: Story) -> list[ev.LifecycleEvent]:
    return [
        s.created(),
        s.started(),
        s.step_began("a"),
        s.attempt_began("a"),
        s.attempt_ended("a", output="A"),
        s.step_ended("a", output="A"),
        s.step_began("b"),
        s.terminated(),
        s.restarted(kept_steps=1),
        s.started(),
        s.completed("done", "unheard-of"),
    ]


def _cancelled_before_starting(s: Story) -> list[ev.LifecycleEvent]:
    return [s.created(), s.terminated()]


def _to_status(status: str) -> Journey:
    return lambda s: s.to_status(status)


def _completed_with(outcome: str | None) -> Journey:
    return lambda s: [s.created(), s.started(), s.completed([1, 2], outcome)]


STATUSES = ("queued", "running", "waiting", "waitingForPause", "paused", "rollingBack",
            "complete", "errored", "terminated")  # fmt: skip
JOURNEYS: dict[str, Journey] = {
    "every step kind": _every_step_kind,
    "paused at a step boundary": _paused_at_a_step_boundary,
    "paused while waiting": _paused_while_waiting,
    "rolled back": _rolled_back,
    "restarted": _restarted,
    "cancelled before starting": _cancelled_before_starting,
    **{f"completed ({o})": _completed_with(o) for o in (None, "approved", "review")},
    **{f"to {status}": _to_status(status) for status in STATUSES},
}


def _prefix_docs(apply: Any, journey: Journey) -> Iterator[dict[str, Any]]:
    """The document after each event of the journey."""
    doc: dict[str, Any] | None = None
    for event in journey(Story(tags=["t"], applicant_id=str(UUID(int=7)))):
        doc = apply(doc, event)
        assert doc is not None
        yield doc


def _all_docs(apply: Any) -> list[dict[str, Any]]:
    return [doc for journey in JOURNEYS.values() for doc in _prefix_docs(apply, journey)]


# --- the folds ------------------------------------------------------------------------------


def test_cloudflare_get_and_list_parse_in_every_status_the_projection_reaches() -> None:
    docs = _all_docs(cloudflare_instance.apply)
    for doc in docs:
        _parse(InstanceGetResponse, cloudflare_instance.get_response(doc))
        _parse(InstanceListResponse, cloudflare_instance.list_item(doc))
    assert {d["status"] for d in docs} == set(STATUSES)
    kinds = {s["type"] for d in docs for s in cloudflare_instance.get_response(d)["steps"]}
    assert kinds == {"step", "sleep", "waitForEvent", "termination"}


def test_cloudflare_step_route_parses_for_every_step_and_attempt() -> None:
    for doc in _all_docs(cloudflare_instance.apply):
        for step in doc["steps"]:
            if step["type"] == "termination":
                continue
            found = cloudflare_instance.step_response(doc, step["name"], step["type"], None)
            _parse(InstanceStepResponse, found)
            for attempt in range(1, len(step.get("attempts", [])) + 1):
                chosen = cloudflare_instance.step_response(doc, step["name"], "step", attempt)
                _parse(InstanceStepResponse, chosen)


def test_agent_runs_parse_in_every_run_status_the_projection_reaches() -> None:
    docs = _all_docs(agent_run.apply)
    for doc in docs:
        _parse(AgentWorkflowRun, agent_run.render(doc))
    assert {d["status"] for d in docs} == {
        "pending", "failed", "running", "completed", "cancelled", "timed_out", "paused", "waiting"
    }  # fmt: skip


def test_onfido_runs_parse_in_every_onfido_status_the_projection_reaches() -> None:
    docs = _all_docs(onfido_run.apply)
    for doc in docs:
        _parse(OnfidoWorkflowRun, onfido_run.render(doc, dashboard_base="https://x", sdk_token="t"))
    # awaiting_client_input is Onfido's own step; nothing here waits on it.
    assert {d["status"] for d in docs} == {
        "processing", "awaiting_input", "approved", "declined", "review", "abandoned", "error"
    }  # fmt: skip


def test_staged_instances_parse_terminated_or_not_with_stages_of_every_state() -> None:
    docs = _all_docs(staged_instance.apply)
    rendered = [staged_instance.render(doc) for doc in docs]
    for instance in rendered:
        _parse(StagedWorkflowInstance, instance)
    assert {i["terminated"] for i in rendered} == {True, False}
    stages = [s for i in rendered for s in i["status"]]
    assert {"terminated_at" in s for s in stages} == {True, False}
    assert any(s.get("error") for s in stages)


def test_a_timestamp_where_seed_004_says_date_is_refused() -> None:
    # What the staged view used to answer: the seed's date type refuses a time of day.
    stage = {"instance_id": "i", "stage": 1, "started_at": "2026-01-02T03:04:05.000000Z"}
    with pytest.raises(ValueError, match="date"):
        _parse(StageStatus, stage)


# --- the routes -----------------------------------------------------------------------------


class _MemoryView:
    """Enough of DocumentView for the read routes: every document, whatever the filter."""

    def __init__(self, docs: Sequence[dict[str, Any]], key: str) -> None:
        self.docs = {doc[key]: doc for doc in docs}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.docs.get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {k: self.docs[k] for k in keys if k in self.docs}

    def find(self, query: Query) -> list[dict[str, Any]]:
        return list(self.docs.values())[query.offset : query.offset + query.limit]

    find_summaries = find

    def count(self, query: Query) -> int:
        return len(self.docs)


def _client(docs: dict[str, list[dict[str, Any]]]) -> TestClient:
    app = FastAPI()
    for router in (cloudflare_routes.router, onfido_routes.router, run_routes.router):
        app.include_router(router)
    # Views are keyed by global id; the Cloudflare document's `id` is the instance id.
    app.state.views = {
        name: _MemoryView(found, "global_id" if name == cloudflare_instance.VIEW_NAME else "id")
        for name, found in docs.items()
    }
    app.state.api_tokens = ApiTokens({"tok": frozenset({"*"})})
    app.state.sdk_secret = "secret"
    app.state.sdk_token_ttl_s = 3600
    app.state.base_url = "https://flowledger.test"
    app.state.gateway = None
    return TestClient(app, headers={"Authorization": "Bearer tok"})


def _one_story_per_journey() -> dict[str, list[dict[str, Any]]]:
    folds = {
        cloudflare_instance.VIEW_NAME: cloudflare_instance.apply,
        agent_run.VIEW_NAME: agent_run.apply,
        onfido_run.VIEW_NAME: onfido_run.apply,
        staged_instance.VIEW_NAME: staged_instance.apply,
    }
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in folds}
    for journey in JOURNEYS.values():
        events = journey(Story(tags=["t"]))
        for name, apply in folds.items():
            doc = None
            for event in events:
                doc = apply(doc, event)
            found[name].append(doc)  # type: ignore[arg-type]
    return found


@pytest.fixture(scope="module")
def served() -> tuple[TestClient, dict[str, list[dict[str, Any]]]]:
    docs = _one_story_per_journey()
    return _client(docs), docs


def _ok(client: TestClient, path: str, params: dict[str, str] | None = None) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_cloudflare_routes_answer_the_seed_shapes(
    served: tuple[TestClient, dict[str, list[dict[str, Any]]]],
) -> None:
    client, docs = served
    for doc, order in itertools.product(docs[cloudflare_instance.VIEW_NAME], ("asc", "desc")):
        base = f"/client/v4/accounts/{doc['account_id']}/workflows/{doc['workflow_name']}"
        got = _ok(client, f"{base}/instances/{doc['id']}?order={order}")
        _parse(InstanceGetResponse, got["result"])
        listed = _ok(client, f"{base}/instances?per_page=100")
        _parse(list[InstanceListResponse], listed["result"])
        for step in got["result"]["steps"]:
            if step["type"] != "termination":
                query = {"name": step["name"], "type": step["type"]}
                found = _ok(client, f"{base}/instances/{doc['id']}/step", query)
                _parse(InstanceStepResponse, found["result"])


def test_onfido_routes_answer_the_seed_shape(
    served: tuple[TestClient, dict[str, list[dict[str, Any]]]],
) -> None:
    client, docs = served
    for doc in docs[onfido_run.VIEW_NAME]:
        _parse(OnfidoWorkflowRun, _ok(client, f"/v3.6/workflow_runs/{doc['id']}"))
    _parse(list[OnfidoWorkflowRun], _ok(client, "/v3.6/workflow_runs?account_id=any"))


def test_v1_run_and_staged_routes_and_their_lists_answer_the_seed_shapes(
    served: tuple[TestClient, dict[str, list[dict[str, Any]]]],
) -> None:
    client, docs = served
    for doc in docs[agent_run.VIEW_NAME]:
        _parse(AgentWorkflowRun, _ok(client, f"/v1/runs/{doc['id']}"))
    for doc in docs[staged_instance.VIEW_NAME]:
        _parse(StagedWorkflowInstance, _ok(client, f"/v1/workflow-instances/{doc['id']}"))
    _parse(RunPage, _ok(client, "/v1/runs?account_id=any&limit=100"))
    staged = _ok(client, "/v1/workflow-instances?account_id=any&limit=100")
    _parse(StagedPage, staged)
    assert len(staged["data"]) == len(docs[staged_instance.VIEW_NAME])
