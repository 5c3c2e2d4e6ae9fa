"""Operations: /metrics after real commands over the broker, /readyz, and JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.api.ops_routes import create_ops_app
from services.bootstrap import Service
from services.observability.logs import JsonFormatter, configure_logging
from tests.fixtures.service import KafkaClient


@pytest.fixture
async def ops(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """The ops app a commands/relay/projections process serves on FLOWLEDGER_OPS_PORT."""
    app = create_ops_app(service.metrics, service.readiness, service.store_health.refresh)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
        yield client


def _command(kind: str, account: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": "wf",
        **fields,
    }


async def _samples(ops: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await ops.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_metrics_count_outcomes_latency_dead_letters_and_lag(
    service: Service, kafka: KafkaClient, ops: httpx.AsyncClient, new_id: str
) -> None:
    account = f"acc{new_id}"
    register = _command("RegisterWorkflow", account)
    await kafka.send(register)
    await kafka.reply(register["command_id"])
    create = _command("CreateInstance", account, instance_id="i1", params={})
    invalid = _command("ChangeStatus", account, instance_id="i1", action="explode")
    for command in (create, create, invalid):  # the second create is a redelivery
        await kafka.send(command)
    await kafka.send(b"not json", key="junk")
    replies = await kafka.wait_for(
        service.settings.topics.replies,
        lambda m: m.json()["command_id"] in {create["command_id"], invalid["command_id"]},
        count=3,
    )
    await kafka.wait_for(service.settings.topics.dead_letters, lambda m: True)

    outcomes = sorted(r.json()["outcome"] for r in replies)
    assert outcomes == ["accepted", "duplicate", "rejected"]
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # counted after the broker confirmed the replies: poll until all are in
        samples = await _samples(ops)
        counted = {
            o: samples[("flowledger_commands_total", (("outcome", o),))]
            for o in ("accepted", "duplicate", "rejected")
        }
        settled = samples[("flowledger_relay_lag", ())] == 0 and all(
            v == 0 for (n, _), v in samples.items() if n == "flowledger_projection_lag"
        )
        if (counted == {"accepted": 2, "duplicate": 1, "rejected": 1} and settled) or (
            asyncio.get_running_loop().time() > deadline
        ):
            break
        await asyncio.sleep(0.1)

    assert counted == {"accepted": 2, "duplicate": 1, "rejected": 1}
    assert samples[("flowledger_dead_letters_total", ())] == 1
    assert samples[("flowledger_command_batch_seconds_count", ())] >= 2
    assert samples[("flowledger_store_up", ())] == 1
    assert samples[("flowledger_kafka_up", ())] == 1
    # register, create: two stored events, all relayed and projected.
    assert samples[("flowledger_notification_head", ())] >= 2
    assert settled, samples
    projections = {
        dict(labels)["projection"]
        for (name, labels), _ in samples.items()
        if name == "flowledger_projection_lag"
    }
    assert projections == set(service.views)


async def test_readyz_reports_kafka_store_and_lags(ops: httpx.AsyncClient) -> None:
    response = await ops.get("/readyz")
    assert response.status_code == 200
    report = response.json()
    assert (report["ready"], report["kafka"], report["store"]) == (True, "ok", "ok")
    assert report["relay_lag"] == 0 and set(report["projection_lag"].values()) == {0}


async def test_the_api_app_carries_the_same_metrics(service: Service) -> None:
    # services.api.ops_routes.router, once included in the api app, reads them from here.
    assert service.api.state.metrics is service.metrics


def test_json_log_lines_carry_the_instance_key_and_command_id() -> None:
    logger = logging.getLogger("flowledger.test")
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        "command %s %s",
        ("c-1", "rejected"),
        None,
        extra={"command_id": "c-1", "instance_key": "acc/wf/i1", "code": "instance.not_found"},
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "command c-1 rejected"
    assert (line["level"], line["logger"]) == ("INFO", "flowledger.test")
    assert (line["command_id"], line["instance_key"]) == ("c-1", "acc/wf/i1")
    assert line["code"] == "instance.not_found"
    assert line["time"].endswith("+00:00")
    assert "outcome" not in line  # absent context is left out, not null


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_supervised_childs_log_lines_name_its_role(
    log_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    configure_logging(log_format, role="projections")

    logging.getLogger("flowledger.test").warning("fold skipped")
    written = handler.stream.getvalue()
    if log_format == "json":
        assert json.loads(written)["role"] == "projections"
    else:
        assert "[projections] flowledger.test fold skipped" in written
