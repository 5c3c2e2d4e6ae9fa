"""HTTP creates with a reserved id answer 400 with the stable code (no broker needed: the
gateway decides the command with the real handlers)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts import commands as c
from contracts.replies import Reply, ReplyError
from services.api import cloudflare_routes
from services.api.auth import ApiTokens
from services.api.envelope import http_error
from services.application.handlers import HANDLERS
from services.domain.errors import DomainError

MINTED_SHAPE = "cf_" + "ab" * 32


class _DecidingGateway:
    """Decides each command at once with the handlers, as the commands role would."""

    def __init__(self) -> None:
        self.aggregates: dict[uuid.UUID, Any] = {}

    def get(self, aggregate_id: uuid.UUID) -> Any:
        return self.aggregates.get(aggregate_id)

    def add(self, aggregate: Any) -> None:
        self.aggregates[aggregate.id] = aggregate

    async def submit(self, command: c.AnyCommand) -> Reply | None:
        # Through JSON, as the commands role receives it (decoding validates the fields).
        decoded = msgspec.json.decode(msgspec.json.encode(command), type=c.AnyCommand)
        try:
            HANDLERS[type(decoded)](self, decoded, datetime.now(UTC))  # type: ignore[arg-type]
        except DomainError as error:
            failed = ReplyError(code=error.code, message=error.message)
            return Reply(command_id=command.command_id, outcome="rejected", error=failed)
        raise AssertionError(f"{type(command).__name__} was accepted")


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.include_router(cloudflare_routes.router)
    app.add_exception_handler(StarletteHTTPException, http_error)
    gateway = _DecidingGateway()
    register = c.RegisterWorkflow(
        command_id=str(uuid.uuid4()), account_id="acc", workflow_name="wf"
    )
    HANDLERS[c.RegisterWorkflow](gateway, register, datetime.now(UTC))  # type: ignore[arg-type]
    app.state.gateway = gateway
    app.state.api_tokens = ApiTokens({"tok": frozenset({"acc"})})
    app.state.sdk_secret = "secret"
    return TestClient(app, headers={"Authorization": "Bearer tok"})


@pytest.mark.parametrize(
    ("path", "body"),
    [("", {"instance_id": MINTED_SHAPE}), ("/batch", [{"instance_id": MINTED_SHAPE}])],
)
def test_a_create_choosing_a_minted_shaped_id_answers_400_with_its_code(
    client: TestClient, path: str, body: Any
) -> None:
    response = client.post(f"/client/v4/accounts/acc/workflows/wf/instances{path}", json=body)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["code"] == 10113 and error["message"].startswith("instance.id_reserved: ")
    assert response.headers["x-should-retry"] == "false"
