"""Credentials: whatever arrives as one answers 401 unless it is valid, sdk_tokens expire, api
tokens are compared without an early exit, and the api role neither prints configured tokens
nor starts as a deployment without its sdk-token secret. No broker is needed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from projections import agent_run, cloudflare_instance, onfido_run, staged_instance, workflows
from services.api import sdk_tokens
from services.api.app import create_api
from services.api.auth import ApiTokens
from services.banner import print_banner
from services.server import serve
from services.settings import DEV_KEK, Settings, UnsafeSettings

SECRET = uuid.uuid4().hex * 2
KEK = base64.b64encode(os.urandom(32)).decode()
FLOWLEDGER = Path(sys.executable).parent / "flowledger"


class EmptyView:
    """A view holding no documents: a request that gets past the token finds nothing (404)."""

    def get(self, key: str) -> None:
        return None

    def get_many(self, keys: Any) -> dict[str, Any]:
        return {}

    def find(self, query: Any) -> list[Any]:
        return []

    def find_summaries(self, query: Any) -> list[Any]:
        return []

    def count(self, query: Any) -> int:
        return 0


def app_with(tokens: dict[str, frozenset[str]], **options: Any) -> FastAPI:
    views: Any = {
        name: EmptyView()
        for name in (
            cloudflare_instance.VIEW_NAME,
            onfido_run.VIEW_NAME,
            agent_run.VIEW_NAME,
            staged_instance.VIEW_NAME,
            workflows.VIEW_NAME,
        )
    }
    return create_api(tokens=tokens, views=views, readiness=lambda: {"ready": True}, **options)


@pytest.fixture
def account() -> str:
    return f"acc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def token() -> str:
    return f"tok-{uuid.uuid4().hex}"


@pytest.fixture
async def client(account: str, token: str) -> AsyncIterator[httpx.AsyncClient]:
    app = app_with({token: frozenset({account})}, sdk_secret=SECRET)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowledger") as http:
        yield http


def reads(account: str) -> list[str]:
    """One read of each API: the token check is shared, the error shapes are not."""
    some = str(uuid.uuid4())
    return [
        f"/client/v4/accounts/{account}/workflows/wf/instances/i-1",
        f"/client/v4/accounts/{account}/workflows",
        f"/v3.6/workflow_runs/{some}",
        f"/v1/runs/{some}",
        f"/v1/workflow-instances?account_id={account}",
    ]


MALFORMED: list[bytes] = [
    "Bearer sdk_x.é".encode(),  # UTF-8 on the wire
    "Bearer sdk_x.é".encode("latin-1"),
    b"Bearer \xff\xfe\xfd",
    'Token token="é"'.encode(),
    b"Bearer sdk_!!!.!!!",
    b"Bearer sdk_.",
    b"Bearer sdk_",
    b"Bearer sdk_a",
    b"Bearer sdk_YQ.YQ",  # valid base64, not a signature
    b"Bearer sdk_" + b"A" * 5 + b"." + b"B" * 43,  # base64 of a length no encoder makes
    b"Token token=",
    b"Bearer " + b"x" * 20_000,
]


async def test_every_malformed_credential_answers_401_in_each_dialect(
    client: httpx.AsyncClient, account: str, token: str
) -> None:
    malformed = [*MALFORMED, f"Bearer {token}é".encode(), f"Bearer {token}".encode()[:-1]]
    for path in reads(account):
        for header in malformed:
            response = await client.get(path, headers={"authorization": header})

            where = (path, header[:40])
            assert response.status_code == 401, (where, response.text)
            assert response.headers["www-authenticate"] == "Bearer", where
            if path.startswith("/v3.6"):
                assert response.json()["error"]["type"] == "authorization_error", where
            else:
                assert response.json()["errors"][0]["code"] == 10401, where


async def test_the_configured_token_is_let_in_by_every_dialect(
    client: httpx.AsyncClient, account: str, token: str
) -> None:
    for path in reads(account):
        for header in (f"Bearer {token}", f"Token token={token}", f'Token token="{token}"'):
            response = await client.get(path, headers={"authorization": header})

            # Empty views: a read finds nothing (404) or lists nothing (200).
            assert response.status_code in (200, 404), (path, header, response.text)


async def test_an_expired_sdk_token_answers_401_where_a_fresh_one_is_let_in(
    client: httpx.AsyncClient, account: str
) -> None:
    run = str(uuid.uuid4())
    fresh = sdk_tokens.mint(SECRET, account, run, ttl_s=600)
    expired = sdk_tokens.mint(SECRET, account, run, ttl_s=-1)
    stranger = sdk_tokens.mint(uuid.uuid4().hex * 2, account, run, ttl_s=600)

    def get(sdk_token: str) -> Any:
        headers = {"authorization": f"Token token={sdk_token}"}
        return client.get(f"/v3.6/workflow_runs/{run}", headers=headers)

    assert (await get(fresh)).status_code == 404  # let in; the run is not in this view
    assert (await get(expired)).status_code == 401
    assert (await get(stranger)).status_code == 401


def test_an_sdk_token_reads_its_run_until_its_expiry_and_not_after() -> None:
    token = sdk_tokens.mint(SECRET, "acc", "run-1", ttl_s=60, now=1_000)

    assert sdk_tokens.verify(SECRET, token, now=1_000) == ("acc", "run-1")
    assert sdk_tokens.verify(SECRET, token, now=1_059) == ("acc", "run-1")
    assert sdk_tokens.verify(SECRET, token, now=1_060) is None
    assert sdk_tokens.verify("another secret" * 3, token, now=1_000) is None


def test_an_sdk_token_altered_or_of_the_unexpiring_kind_is_refused() -> None:
    token = sdk_tokens.mint(SECRET, "acc", "run-1", ttl_s=60, now=1_000)
    body, _, signature = token.removeprefix("sdk_").partition(".")
    other = base64.urlsafe_b64encode(b"other\nrun-1\n1060").decode().rstrip("=")
    # The format before expiry: the account and run id alone, signed the same way.
    old_payload = b"acc\nrun-1"
    old_signature = hmac.new(SECRET.encode(), old_payload, hashlib.sha256).digest()
    unexpiring = "sdk_{}.{}".format(
        *(
            base64.urlsafe_b64encode(part).decode().rstrip("=")
            for part in (old_payload, old_signature)
        )
    )

    for refused in (f"sdk_{other}.{signature}", f"sdk_{body}.{signature[:-2]}", unexpiring):
        assert sdk_tokens.verify(SECRET, refused, now=1_000) is None, refused
    for garbage in MALFORMED:
        assert sdk_tokens.verify(SECRET, garbage.decode("latin-1"), now=1_000) is None


def test_without_a_configured_secret_each_process_signs_with_its_own_random_one() -> None:
    first, second = app_with({}), app_with({})
    token = sdk_tokens.mint(first.state.sdk_secret, "acc", "run-1")

    assert len(first.state.sdk_secret) >= 32
    assert first.state.sdk_secret != second.state.sdk_secret
    assert sdk_tokens.verify(second.state.sdk_secret, token) is None
    assert sdk_tokens.verify(first.state.sdk_secret, token) == ("acc", "run-1")


def test_api_tokens_compare_the_presented_token_with_every_configured_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configured = {f"tok-{n}-{uuid.uuid4().hex}": frozenset({f"acc-{n}"}) for n in range(5)}
    tokens = ApiTokens(configured)
    compared: list[int] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    first = next(iter(configured))
    for presented, accounts in [
        (first, frozenset({"acc-0"})),  # a match stops nothing: the rest are compared too
        ("unknown", None),
        ("tok-é\udcff", None),  # not even encodable as strict UTF-8
    ]:
        compared.clear()
        assert tokens.accounts_of(presented) == accounts
        assert len(compared) == len(configured)


# --- settings, banner, start-up --------------------------------------------------------------


def test_a_deployment_needs_a_strong_sdk_token_secret_and_make_run_does_not() -> None:
    unsafe = [
        Settings(api_tokens="tok-configured=*"),
        Settings(api_tokens="tok-configured=*", sdk_token_secret="short-secret"),
    ]
    for settings in unsafe:
        with pytest.raises(UnsafeSettings, match="FLOWLEDGER_SDK_TOKEN_SECRET") as raised:
            settings.check_api_role()
        assert "tok-configured" not in str(raised.value)
        assert "short-secret" not in str(raised.value)

    Settings(
        api_tokens="tok-configured=*", sdk_token_secret=SECRET, key_encryption_keys=KEK
    ).check_api_role()
    Settings(api_tokens="").check_api_role()  # make run: a dev token and a random secret


def test_a_deployment_needs_its_own_key_encryption_keys_and_make_run_does_not() -> None:
    deployment = {"api_tokens": "tok-configured=*", "sdk_token_secret": SECRET}
    for keys in ("", "not-base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(UnsafeSettings, match="FLOWLEDGER_KEY_ENCRYPTION_KEYS") as raised:
            Settings(**deployment, key_encryption_keys=keys).check_api_role()
        assert not keys or keys not in str(raised.value)  # a key is never echoed

    newest, older = base64.b64encode(b"n" * 32).decode(), base64.b64encode(b"o" * 32).decode()
    configured = Settings(**deployment, key_encryption_keys=f"{newest}, {older}")
    assert configured.keks() == [b"n" * 32, b"o" * 32]
    assert Settings(api_tokens="").keks() == [DEV_KEK]  # make run: the dev key, with a warning


def test_a_configured_token_that_no_header_can_carry_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="printable ASCII") as raised:
        Settings(api_tokens="tök-secret=acc").tokens()

    assert "tök-secret" not in str(raised.value)


def test_the_banner_never_prints_configured_tokens_nor_the_store_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(
        api_tokens="tok-first-secret=acc-a;tok-second-secret=*",
        store="postgresql://flowledger:pw-secret@db:5432/flowledger",
        sdk_token_secret=SECRET,
    )

    print_banner(settings, "kafka:9092", ("api",))

    printed = capsys.readouterr().out
    assert "Flowledger is running" in printed
    for secret in ("tok-first-secret", "tok-second-secret", "pw-secret", SECRET):
        assert secret not in printed
    assert "2 from FLOWLEDGER_API_TOKENS" in printed


def test_the_banner_prints_a_generated_dev_token(capsys: pytest.CaptureFixture[str]) -> None:
    dev_token = f"dev-{uuid.uuid4().hex}"
    settings = Settings(api_tokens=f"{dev_token}=*")

    print_banner(settings, "kafka:9092", ("api",), dev_token)

    assert dev_token in capsys.readouterr().out


async def test_serve_refuses_the_api_role_of_a_deployment_without_the_secret(
    tmp_path: Path,
) -> None:
    settings = Settings(
        api_tokens="tok-configured=*",
        kafka_bootstrap="127.0.0.1:9",  # never reached
        store=f"sqlite:///{tmp_path / 'never.db'}",
        state_dir=tmp_path / "state",
    )

    with pytest.raises(SystemExit, match="FLOWLEDGER_SDK_TOKEN_SECRET is required"):
        await serve(settings, ("api",))

    assert not any(tmp_path.iterdir())  # refused before anything was created


def test_the_cli_exits_with_the_reason_when_a_deployment_lacks_the_secret(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env.update(
        FLOWLEDGER_API_TOKENS="tok-configured-secret=*",
        FLOWLEDGER_KAFKA_BOOTSTRAP="127.0.0.1:9",
        FLOWLEDGER_STORE=f"sqlite:///{tmp_path / 'never.db'}",
        FLOWLEDGER_STATE_DIR=str(tmp_path / "state"),
    )

    done = subprocess.run(
        [str(FLOWLEDGER), "serve", "--role", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode != 0
    assert "FLOWLEDGER_SDK_TOKEN_SECRET is required" in done.stderr
    assert "tok-configured-secret" not in done.stderr + done.stdout
    assert not any(tmp_path.iterdir())
