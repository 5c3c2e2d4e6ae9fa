"""The official `cloudflare` SDK (5.x), unchanged, pointed at Flowledger over real HTTP and the
real broker: every workflow-instance method it has, its auto-pagination and its error types.

The SDK is synchronous; each call runs in a worker thread so the server, which shares this
test's event loop, keeps answering.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import cloudflare
import pytest
from cloudflare import Cloudflare

from tests.fixtures.live_server import LiveServer
from tests.fixtures.service import KafkaClient

T = TypeVar("T")
MINTED_ID = re.compile(r"^cf_[0-9a-f]{64}$")


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, limit: int = 150) -> T:
    """The first truthy result of `check`: for effects that reach the views asynchronously
    (progress commands sent straight to Kafka). A bound on waiting, not a timing claim."""
    for _ in range(limit):
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {what}")


@pytest.fixture
async def cf(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cloudflare]:
    # These would make the SDK send X-Auth-Email/X-Auth-Key instead of the Bearer token.
    for name in (
        "CLOUDFLARE_EMAIL",
        "CLOUDFLARE_API_KEY",
        "CLOUDFLARE_API_TOKEN",
        "CLOUDFLARE_API_USER_SERVICE_KEY",
        "CLOUDFLARE_BASE_URL",
        "CLOUDFLARE_CUSTOM_HEADERS",
    ):
        monkeypatch.delenv(name, raising=False)
    client = Cloudflare(
        api_token=live_server.token_a,
        base_url=f"{live_server.base_url}/client/v4",
        max_retries=0,
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def workflow(cf: Cloudflare, live_server: LiveServer) -> str:
    """A registered workflow in account A, made through the SDK."""
    name = f"wf-{uuid.uuid4().hex[:8]}"
    await call(
        cf.workflows.update,
        name,
        account_id=live_server.account_a,
        class_name="Flow",
        script_name="script",
    )
    return name


async def progress(
    kafka: KafkaClient, account: str, workflow: str, instance: str, kind: str, **fields: Any
) -> dict[str, Any]:
    """A progress command, as the engine running the workflow's code would publish it."""
    command = {
        "type": kind,
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
        "instance_id": instance,
        **fields,
    }
    await kafka.send(command)
    reply = await kafka.reply(command["command_id"])
    assert reply["outcome"] == "accepted", reply
    return reply


async def test_workflows_update_registers_a_workflow_that_get_then_reads(
    cf: Cloudflare, live_server: LiveServer
) -> None:
    name = f"wf-{uuid.uuid4().hex[:8]}"
    account = live_server.account_a
    updated = await call(
        cf.workflows.update, name, account_id=account, class_name="Flow", script_name="script"
    )
    assert (updated.name, updated.class_name, updated.script_name) == (name, "Flow", "script")
    uuid.UUID(updated.id)
    uuid.UUID(updated.version_id)
    got = await call(cf.workflows.get, name, account_id=account)
    assert (got.id, got.name, got.class_name) == (updated.id, name, "Flow")


async def test_create_keeps_a_given_id_mints_one_otherwise_and_stores_the_params(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    account = live_server.account_a
    chosen = f"inst-{uuid.uuid4().hex[:8]}"
    workflow_id = (await call(cf.workflows.get, workflow, account_id=account)).id
    params = {"order": 7, "items": ["a", "b"], "nested": {"ok": True}}

    named = await call(
        cf.workflows.instances.create,
        workflow,
        account_id=account,
        instance_id=chosen,
        params=params,  # type: ignore[arg-type]  # typed str in v5, sent as given
    )
    minted = await call(cf.workflows.instances.create, workflow, account_id=account)

    assert (named.id, named.status, named.workflow_id) == (chosen, "queued", workflow_id)
    uuid.UUID(named.version_id)
    assert MINTED_ID.match(minted.id), minted.id
    assert minted.status == "queued" and minted.workflow_id == workflow_id
    got = await call(cf.workflows.instances.get, chosen, account_id=account, workflow_name=workflow)
    assert got.params == params


async def test_bulk_creates_every_body_and_skips_ids_that_exist(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    account = live_server.account_a
    first, second = f"b1-{uuid.uuid4().hex[:8]}", f"b2-{uuid.uuid4().hex[:8]}"
    page = await call(
        cf.workflows.instances.bulk,
        workflow,
        account_id=account,
        body=[{"instance_id": first, "params": {"x": 1}}, {"instance_id": second}, {}],  # type: ignore[list-item]
    )
    created = list(page)
    ids = [item.id for item in created]
    assert ids[:2] == [first, second] and len(ids) == 3 and MINTED_ID.match(ids[2])
    assert {item.status for item in created} == {"queued"}

    again = list(
        await call(
            cf.workflows.instances.bulk,
            workflow,
            account_id=account,
            body=[{"instance_id": first}, {"instance_id": f"b3-{uuid.uuid4().hex[:8]}"}],
        )
    )
    assert again, "an existing id is skipped, not an error"
    got = await call(cf.workflows.instances.get, first, account_id=account, workflow_name=workflow)
    assert got.params == {"x": 1}  # the skipped body did not overwrite the instance


async def test_list_auto_pagination_sees_every_instance_exactly_once(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    account = live_server.account_a
    wanted = [f"p{n}-{uuid.uuid4().hex[:6]}" for n in range(7)]
    await call(
        cf.workflows.instances.bulk,
        workflow,
        account_id=account,
        body=[{"instance_id": i} for i in wanted],
    )

    seen = [
        item.id
        for item in await call(
            lambda: list(cf.workflows.instances.list(workflow, account_id=account, per_page=3))
        )
    ]

    assert len(seen) == len(wanted)
    assert sorted(seen) == sorted(wanted)


async def test_list_filtered_by_status_returns_only_instances_in_that_status(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    account = live_server.account_a
    ids = [f"s{n}-{uuid.uuid4().hex[:6]}" for n in range(4)]
    await call(
        cf.workflows.instances.bulk,
        workflow,
        account_id=account,
        body=[{"instance_id": i} for i in ids],
    )
    for paused in ids[:2]:
        await call(
            cf.workflows.instances.status.edit,
            paused,
            account_id=account,
            workflow_name=workflow,
            status="pause",
        )

    def listed(status: Any) -> list[str]:
        return [
            i.id
            for i in cf.workflows.instances.list(
                workflow, account_id=account, status=status, per_page=100
            )
        ]

    assert sorted(await call(listed, "paused")) == sorted(ids[:2])
    assert sorted(await call(listed, "queued")) == sorted(ids[2:])
    assert await call(listed, "complete") == []


async def test_get_answers_every_field_of_instance_get_response(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    account = live_server.account_a
    instance = f"g-{uuid.uuid4().hex[:8]}"
    created = await call(
        cf.workflows.instances.create,
        workflow,
        account_id=account,
        instance_id=instance,
        params={"k": [1, 2]},  # type: ignore[arg-type]
    )

    got = await call(
        cf.workflows.instances.get, instance, account_id=account, workflow_name=workflow
    )

    assert got.status == "queued"
    assert got.params == {"k": [1, 2]}
    assert got.queued is not None and got.queued.tzinfo is not None
    assert got.version_id == created.version_id  # `versionId` on the wire
    assert got.trigger.source == "api"
    assert (got.step_count, got.steps) == (0, [])
    wire = got.model_dump(by_alias=True)
    for field in ("end", "error", "output", "params", "queued", "start", "status", "success"):
        assert field in wire, field
    assert "versionId" in wire and "step_count" in wire and "trigger" in wire


async def test_step_returns_a_driven_steps_outcome_output_and_attempts(
    cf: Cloudflare, live_server: LiveServer, live_kafka: KafkaClient, workflow: str
) -> None:
    account = live_server.account_a
    instance = f"st-{uuid.uuid4().hex[:8]}"
    await call(cf.workflows.instances.create, workflow, account_id=account, instance_id=instance)
    config = {"retries": {"limit": 2, "delay": 100, "backoff": "constant"}, "timeout": 1000}
    engine: list[tuple[str, dict[str, Any]]] = [
        ("StartRun", {}),
        ("BeginStep", {"name": "charge", "config": config}),
        ("BeginAttempt", {"name": "charge"}),
        (
            "EndAttempt",
            {"name": "charge", "success": False, "error": {"name": "E", "message": "no"}},
        ),
        ("EndSleep", {"name": "charge"}),
        ("BeginAttempt", {"name": "charge"}),
        ("EndAttempt", {"name": "charge", "success": True, "output": {"receipt": 42}}),
        ("EndStep", {"name": "charge", "output": {"receipt": 42}}),
    ]
    for kind, fields in engine:
        await progress(live_kafka, account, workflow, instance, kind, **fields)

    async def step_done() -> Any:
        got = await call(
            cf.workflows.instances.get, instance, account_id=account, workflow_name=workflow
        )
        return got if got.steps and getattr(got.steps[0], "success", None) else None

    got = await eventually(step_done, "the step's end in the view")
    charge = got.steps[0]
    assert (charge.type, charge.name, charge.success) == ("step", "charge", True)
    assert [a.success for a in charge.attempts] == [False, True]
    assert charge.config.retries.limit == 2

    step = await call(
        cf.workflows.instances.step,
        instance,
        account_id=account,
        workflow_name=workflow,
        name="charge",
        type="step",
    )
    assert (step.status, step.output) == ("complete", {"receipt": 42})
    first = await call(
        cf.workflows.instances.step,
        instance,
        account_id=account,
        workflow_name=workflow,
        name="charge",
        type="step",
        attempt=1,
    )
    assert first.status == "errored"
    assert first.error is not None and (first.error.name, first.error.message) == ("E", "no")


async def test_status_edit_applies_pause_resume_terminate_and_restart(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    account = live_server.account_a
    instance = f"se-{uuid.uuid4().hex[:8]}"
    await call(cf.workflows.instances.create, workflow, account_id=account, instance_id=instance)

    for action, expected in [
        ("pause", "paused"),
        ("resume", "queued"),
        ("terminate", "terminated"),
        ("restart", "queued"),
    ]:
        edited = await call(
            cf.workflows.instances.status.edit,
            instance,
            account_id=account,
            workflow_name=workflow,
            status=action,  # type: ignore[arg-type]
        )
        assert (action, edited.status) == (action, expected)
        assert edited.timestamp is not None
        got = await call(
            cf.workflows.instances.get, instance, account_id=account, workflow_name=workflow
        )
        assert (action, got.status) == (action, expected)


async def test_events_create_is_delivered_to_the_matching_wait_for_event(
    cf: Cloudflare, live_server: LiveServer, live_kafka: KafkaClient, workflow: str
) -> None:
    account = live_server.account_a
    instance = f"ev-{uuid.uuid4().hex[:8]}"
    await call(cf.workflows.instances.create, workflow, account_id=account, instance_id=instance)

    sent = await call(
        cf.workflows.instances.events.create,
        "approval",
        account_id=account,
        workflow_name=workflow,
        instance_id=instance,
        body={"by": "ann"},
    )
    assert sent.instance_id == instance and sent.timestamp is not None

    await progress(live_kafka, account, workflow, instance, "StartRun")
    await progress(
        live_kafka,
        account,
        workflow,
        instance,
        "BeginStep",
        name="wait",
        step_type="waitForEvent",
        event_type="approval",
    )

    async def delivered() -> Any:
        try:
            step = await call(
                cf.workflows.instances.step,
                instance,
                account_id=account,
                workflow_name=workflow,
                name="wait",
                type="waitForEvent",
            )
        except cloudflare.NotFoundError:  # the view has not shown the wait yet
            return None
        return step if step.status == "complete" else None

    assert (await eventually(delivered, "the buffered event delivered")).output == {"by": "ann"}


async def test_creating_an_existing_id_raises_conflict_error_409(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    account = live_server.account_a
    instance = f"dup-{uuid.uuid4().hex[:8]}"
    await call(cf.workflows.instances.create, workflow, account_id=account, instance_id=instance)

    with pytest.raises(cloudflare.ConflictError) as raised:
        await call(
            cf.workflows.instances.create, workflow, account_id=account, instance_id=instance
        )

    assert raised.value.status_code == 409
    body = raised.value.body
    assert isinstance(body, dict) and body["success"] is False and body["result"] is None
    assert body["errors"][0]["code"] >= 1000


async def test_an_unknown_instance_raises_not_found_error(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    account = live_server.account_a
    missing = f"nope-{uuid.uuid4().hex[:8]}"
    with pytest.raises(cloudflare.NotFoundError) as raised:
        await call(cf.workflows.instances.get, missing, account_id=account, workflow_name=workflow)
    assert raised.value.status_code == 404
    with pytest.raises(cloudflare.NotFoundError):
        await call(
            cf.workflows.instances.status.edit,
            missing,
            account_id=account,
            workflow_name=workflow,
            status="pause",
        )
    with pytest.raises(cloudflare.NotFoundError):
        await call(
            cf.workflows.instances.step,
            missing,
            account_id=account,
            workflow_name=workflow,
            name="charge",
            type="step",
        )


async def test_another_accounts_instance_is_not_found_for_this_token(
    cf: Cloudflare, live_server: LiveServer, workflow: str
) -> None:
    with pytest.raises(cloudflare.NotFoundError):
        await call(cf.workflows.instances.list, workflow, account_id=live_server.account_b)
