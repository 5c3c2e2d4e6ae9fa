"""A service restarted with a key-encryption key its store does not know refuses to start: it
never says ready, takes no write, exits non-zero and says why on stderr. Real processes over the
real broker, on a SQLite store (the check itself runs on both stores in
tests/services/application/test_kek_checks.py)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.application.kek_checks import kek_id
from tests.fixtures.cli import run_cli
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import FLOWLEDGER, free_port, role_env, until
from tests.fixtures.service import TOKEN, make_settings

pytestmark = pytest.mark.kafka

KEK_A, KEK_B = b"A" * 32, b"B" * 32
REFUSAL = "none of the configured key-encryption keys opens this store's data keys"


def _env(store: str, bootstrap: str, kek: bytes, port: int) -> dict[str, str]:
    settings = make_settings(store, key_encryption_keys=base64.b64encode(kek).decode())
    return role_env(settings, bootstrap, FLOWLEDGER_HTTP_PORT=str(port))


@pytest.fixture
def serving() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by the test, stopped however it ends."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except httpx.TransportError:
        return False


async def _write_under(
    env: dict[str, str], port: int, log: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """Serves with `env` until an instance is created, then stops it (SIGTERM, drained)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(FLOWLEDGER), "serve", "--single-process"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started.append(proc)

    def alive() -> None:
        assert proc.poll() is None, log.read_text()[-3000:]

    await until(lambda: _ready(port), "the first service never became ready", DEADLINE_S, alive)
    base = f"http://127.0.0.1:{port}/client/v4/accounts/acc/workflows/wf"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert (await http.put(base, json={"class_name": "F"})).status_code == 200
        created = await http.post(f"{base}/instances", json={"instance_id": "i", "params": {}})
        assert created.status_code in (200, 202), created.text
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=DEADLINE_S) == 0, log.read_text()[-3000:]


async def test_a_service_restarted_with_an_unknown_kek_does_not_start_and_says_why(
    kafka_bootstrap: str, tmp_path: Path, serving: list[subprocess.Popen[bytes]]
) -> None:
    store, port = f"sqlite:///{tmp_path / 'flowledger.db'}", free_port()
    await _write_under(_env(store, kafka_bootstrap, KEK_A, port), port, tmp_path / "a.log", serving)

    refused = await run_cli(
        "serve", "--single-process", env=_env(store, kafka_bootstrap, KEK_B, port)
    )

    assert refused.code != 0
    assert REFUSAL in refused.err, refused.err[-3000:]
    assert f"the store knows KEK ids {kek_id(KEK_A)}" in refused.err
    assert f"FLOWLEDGER_KEY_ENCRYPTION_KEYS has {kek_id(KEK_B)}" in refused.err
    assert "Traceback" not in refused.err
    assert "Flowledger is running" not in refused.out + refused.err
    with pytest.raises(httpx.ConnectError):  # nothing listens: no write can be taken
        httpx.post(f"http://127.0.0.1:{port}/client/v4/accounts/acc/workflows/wf/instances")


async def test_the_supervised_serve_refuses_once_and_starts_no_role(
    kafka_bootstrap: str, tmp_path: Path, serving: list[subprocess.Popen[bytes]]
) -> None:
    store, port = f"sqlite:///{tmp_path / 'flowledger.db'}", free_port()
    await _write_under(_env(store, kafka_bootstrap, KEK_A, port), port, tmp_path / "a.log", serving)

    refused = await run_cli("serve", env=_env(store, kafka_bootstrap, KEK_B, port))

    assert refused.code != 0
    assert refused.err.count(REFUSAL) == 1, refused.err[-3000:]  # one error, no crash loop
    assert "started role" not in refused.err + refused.out
