"""compose.yaml and the Dockerfile, validated statically.

There is no Docker engine on the development machine, so nothing here builds an image or
starts a container: the files are parsed and checked against the code they configure (the
settings it reads, the routes its health checks call, the package and console script the
image installs). What only a real engine would show (image pulls, networking, the KRaft
broker booting) stays unproven here.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from services.api.app import create_api
from services.api.ops_routes import create_ops_app
from services.bootstrap import ROLES
from services.dev_provisioning.kafka import KAFKA_IMAGE
from services.infra.store_env import eventsourcing_env
from services.observability.metrics import Metrics
from services.roles.role import DRAIN_TIMEOUT_S
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed = yaml.safe_load((ROOT / "compose.yaml").read_text())  # merge keys (<<) resolved
    assert isinstance(parsed, dict)
    return parsed


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


# Required variables whose value has a shape: a stand-in of that shape.
SHAPED_STAND_INS = {
    "FLOWLEDGER_KEY_ENCRYPTION_KEYS": base64.b64encode(b"k" * 32).decode(),
    "FLOWLEDGER_API_TOKENS": "required-token=*",
}


def interpolate(value: Any) -> str:
    """Compose's `${VAR:-default}` with the defaults (and a stand-in for required ones)."""
    return VARIABLE.sub(
        lambda m: (
            m.group(3)
            if m.group(2) == "-"
            else SHAPED_STAND_INS.get(m.group(1), f"required-{m.group(1).lower()}-{'x' * 32}")
        ),
        str(value),
    )


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=value form
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(value) for key, value in env.items()}


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", duration))


def test_compose_names_only_settings_the_service_reads() -> None:
    text = (ROOT / "compose.yaml").read_text()
    known = {f"FLOWLEDGER_{name.upper()}" for name in Settings.model_fields}
    referenced = set(re.findall(r"\bFLOWLEDGER_[A-Z0-9_]+\b", text))
    assert referenced, "compose.yaml configures nothing"
    assert referenced <= known, f"not read by services/settings.py: {referenced - known}"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_a_service_that_runs_it(services: dict[str, Any], role: str) -> None:
    service = services[role]
    assert service["command"] == ["flowledger", "serve", "--role", role]
    assert service["build"] == "."
    for backend in ("kafka", "postgres"):
        assert service["depends_on"][backend] == {"condition": "service_healthy"}
    assert seconds(service["stop_grace_period"]) > DRAIN_TIMEOUT_S  # room to drain on SIGTERM


@pytest.mark.parametrize("role", ROLES)
def test_each_roles_settings_parse(
    services: dict[str, Any], role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in environment(services[role]).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    env = eventsourcing_env(settings.store)
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    postgres = environment(services["postgres"])
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"]) == ("postgres", "5432")
    assert env["POSTGRES_USER"] == postgres["POSTGRES_USER"]
    assert env["POSTGRES_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert env["POSTGRES_DBNAME"] == postgres["POSTGRES_DB"]
    kafka = environment(services["kafka"])
    assert settings.kafka_bootstrap in {
        urlsplit(listener).netloc for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    assert settings.http_host == "0.0.0.0"  # reachable by the other containers
    if role == "api":
        assert settings.api_tokens and settings.tokens()
        settings.check_api_role()  # the api role would start: its sdk-token secret is set
    else:
        assert settings.ops_port is not None  # its health check and /metrics live there


@pytest.mark.parametrize("role", ROLES)
async def test_health_checks_call_a_route_the_role_serves(
    services: dict[str, Any], role: str
) -> None:
    service = services[role]
    check = " ".join(service["healthcheck"]["test"])
    url = re.search(r"http://[^'\" ]+", check)
    assert url, check
    port, path = urlsplit(url.group()).port, urlsplit(url.group()).path
    env = environment(service)
    expected_port = env["FLOWLEDGER_HTTP_PORT" if role == "api" else "FLOWLEDGER_OPS_PORT"]
    assert port == int(expected_port)

    def readiness() -> dict[str, Any]:
        return {"ready": True}

    app = (
        create_api(tokens={}, views={}, readiness=readiness)
        if role == "api"
        else create_ops_app(Metrics(), readiness)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://check") as client:
        assert (await client.get(path)).status_code == 200


def test_kafka_is_a_single_kraft_node_of_the_pinned_image(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == KAFKA_IMAGE  # the version the local broker and tests run
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    listeners = {urlsplit(x).scheme.upper() for x in env["KAFKA_LISTENERS"].split(",")}
    protocols = dict(
        pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert listeners <= set(protocols)  # every listener has a security protocol
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"  # one broker
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the service declares its topics
    assert "healthcheck" in kafka


def test_postgres_has_a_health_check(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_replicas_follow_the_scaling_rules(services: dict[str, Any]) -> None:
    partitions = int(environment(services["commands"])["FLOWLEDGER_PARTITIONS"])
    assert 1 <= services["commands"]["deploy"]["replicas"] <= partitions
    assert services["relay"]["deploy"]["replicas"] == 1
    assert services["projections"]["deploy"]["replicas"] == 1
    every = {environment(services[r])["FLOWLEDGER_PARTITIONS"] for r in ROLES}
    assert len(every) == 1  # one partition count: they declare the same topics


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


def test_the_image_installs_this_project_and_runs_flowledger_serve() -> None:
    instructions = dockerfile_instructions()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "flowledger"
    assert project["scripts"]["flowledger"] == "services.cli:main"

    copied = {shlex.split(arg)[0] for op, arg in instructions if op == "COPY"}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in packages["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied  # every package of the project is in the image
    assert project["readme"] in " ".join(arg for op, arg in instructions if op == "COPY")
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert re.search(r"pip install (\S+ )*\.(\s|$)", runs), runs  # this directory: the project

    entrypoint = [json.loads(arg) for op, arg in instructions if op == "ENTRYPOINT"]
    cmd = [json.loads(arg) for op, arg in instructions if op == "CMD"]
    argv = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    assert argv[:2] == ["flowledger", "serve"]  # exec form: SIGTERM reaches the service
    assert ("STOPSIGNAL", "SIGTERM") in instructions
