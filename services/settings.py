"""All configuration, from FLOWLEDGER_* environment variables, in one object."""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.limits import DEFAULT_MAX_STEPS_PER_INSTANCE, MAX_STEPS_PER_INSTANCE_CEILING
from contracts.topics import Topics

log = logging.getLogger(__name__)

MIN_SECRET_CHARS = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOWLEDGER_", extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port]; unset = a local broker (services/dev_provisioning)",
    )
    store: str = Field(
        default="sqlite:///.flowledger/flowledger.db",
        description="sqlite:///path.db or a postgresql:// DSN",
    )
    topic_prefix: str = "flowledger"
    partitions: int = Field(default=4, ge=1, le=256)
    api_tokens: str = Field(default="", description="token=account[,account];... ('*' = all)")
    http_host: str = "127.0.0.1"
    http_port: int = 8787
    group_id: str = Field(
        default="", description="commands consumer group; default {prefix}.commands-role"
    )
    state_dir: Path = Path(".flowledger")
    batch_max_records: int = Field(default=500, ge=1)
    aggregate_cache_size: int = Field(default=10_000, ge=0)
    max_steps_per_instance: int = Field(
        default=DEFAULT_MAX_STEPS_PER_INSTANCE,
        ge=1,
        le=MAX_STEPS_PER_INSTANCE_CEILING,
        description="the most steps one run of an instance may have (Cloudflare's default "
        "10,000; at most 25,000); BeginStep or RecordStep past it: instance.step_limit",
    )
    poll_interval_s: float = Field(
        default=0.05,
        gt=0,
        description="how often the relay and projections look for new events when no save in "
        "their own process woke them (roles in separate processes)",
    )
    write_timeout_s: float = Field(default=5.0, gt=0)
    stuck_after_s: float = Field(
        default=15.0,
        gt=0,
        description="a relay or projections follower failing this long makes /readyz fail",
    )
    public_url: str = Field(
        default="", description="base URL readers reach the api at; default http://host:port"
    )
    sdk_token_secret: str = Field(
        default="",
        description="signs Onfido sdk_tokens (at least 32 characters); unset = random per "
        "process, refused when api_tokens are set",
    )
    sdk_token_ttl_s: float = Field(
        default=3600.0, gt=0, description="how long an Onfido sdk_token stays valid"
    )
    console_session_idle_s: float = Field(
        default=8 * 3600.0, gt=0, description="a console session ends after this long unused"
    )
    console_session_max_s: float = Field(
        default=24 * 3600.0, gt=0, description="a console session ends this long after sign-in"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line (instance_key, command_id)"
    )
    log_content: bool = Field(
        default=False,
        description="the worker's logs carry user content (error messages); unset = exception "
        "types and step names only (docs/erasure.md)",
    )
    worker_cache_size: int = Field(
        default=1_000,
        ge=0,
        description="instances a worker keeps the history of between wake-ups (LRU; 0 = none)",
    )
    ops_port: int | None = Field(
        default=None,
        description="serves /healthz, /readyz, /metrics for roles without the api; unset = none "
        "(under the supervisor, its non-api children take this port and the next ones)",
    )
    single_process: bool = Field(
        default=False,
        description="`flowledger serve` runs every role in one process instead of one supervised "
        "child process per role (services/supervisor.py); as `--single-process`",
    )
    ready_fd: int | None = Field(
        default=None,
        description="internal: the pipe on which a supervised child says it is ready, so that "
        "the supervisor prints one banner once every role is (set by services/supervisor.py)",
    )
    dev_token: str = Field(
        default="",
        description="the api role's token for every account when FLOWLEDGER_API_TOKENS is unset; "
        "unset = a random one per start (the supervisor sets one, so a restarted api keeps it)",
    )

    key_encryption_keys: str = Field(
        default="",
        description="base64 of 32-byte keys, comma-separated, newest first: they wrap each "
        "instance's data key (docs/erasure.md); unset = a fixed dev key, refused in a deployment",
    )
    events_carry_content: bool = Field(
        default=False,
        description="publish params, outputs and payloads on the events topic in clear; they "
        "can then never be erased from it (docs/erasure.md)",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_name(cls, value: str) -> str:
        if not value or not all(ch.isalnum() or ch in "._-" for ch in value):
            raise ValueError("topic prefix may hold letters, digits, '.', '_' and '-' only")
        return value

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def commands_group(self) -> str:
        return self.group_id or f"{self.topic_prefix}.commands-role"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.http_host}:{self.http_port}"

    def tokens(self) -> dict[str, frozenset[str]]:
        """token -> the accounts it may see ('*' for all)."""
        table: dict[str, frozenset[str]] = {}
        for pair in filter(None, (p.strip() for p in self.api_tokens.split(";"))):
            token, _, accounts = pair.partition("=")
            token = token.strip()
            if not token or not accounts:
                raise ValueError("a FLOWLEDGER_API_TOKENS entry is not token=account[,...]")
            if not _sendable(token):
                # Never echoed: the value is a secret. HTTP headers carry it as latin-1, so a
                # token outside printable ASCII could never be presented as configured.
                raise ValueError("a FLOWLEDGER_API_TOKENS token is not printable ASCII")
            table[token] = frozenset(a.strip() for a in accounts.split(",") if a.strip())
        return table

    @property
    def is_deployment(self) -> bool:
        """Tokens were configured: a deployment, where api replicas may sit behind one address,
        rather than `make run`'s one process with a generated dev token."""
        return bool(self.api_tokens.strip())

    def check_api_role(self) -> None:
        """Raises UnsafeSettings when the api role must not start with these settings: in a
        deployment every replica has to sign sdk_tokens with one configured, strong secret.
        (Checked here rather than by a validator, whose error would echo the secret.)"""
        secret = self.sdk_token_secret
        if self.is_deployment and not secret:
            raise UnsafeSettings(
                f"FLOWLEDGER_SDK_TOKEN_SECRET is required when FLOWLEDGER_API_TOKENS is set: "
                f"{_SECRET_HOW}"
            )
        if secret and len(secret) < MIN_SECRET_CHARS:
            raise UnsafeSettings(f"FLOWLEDGER_SDK_TOKEN_SECRET is too short: {_SECRET_HOW}")
        self.keks()

    def keks(self) -> list[bytes]:
        """The key-encryption keys, newest first (never echoed: they are secrets)."""
        keys = [k.strip() for k in self.key_encryption_keys.split(",") if k.strip()]
        if not keys:
            if self.is_deployment:
                raise UnsafeSettings(
                    "FLOWLEDGER_KEY_ENCRYPTION_KEYS is required when FLOWLEDGER_API_TOKENS is "
                    f"set: {_KEK_HOW}"
                )
            _warn_dev_kek()
            return [DEV_KEK]
        decoded = []
        for number, key in enumerate(keys, start=1):
            try:
                raw = base64.b64decode(key, validate=True)
            except binascii.Error:
                raw = b""
            if len(raw) != KEK_BYTES:
                raise UnsafeSettings(
                    f"FLOWLEDGER_KEY_ENCRYPTION_KEYS entry {number} is not base64 of "
                    f"{KEK_BYTES} bytes: {_KEK_HOW}"
                )
            decoded.append(raw)
        return decoded


@functools.cache
def _warn_dev_kek() -> None:  # once per process, not once per store opened
    log.warning("FLOWLEDGER_KEY_ENCRYPTION_KEYS is unset: using the dev key (%s)", _KEK_HOW)


# Known to everyone, so it protects nothing: `make run` and tests only.
DEV_KEK = b"flowledger dev key: not a secret"
KEK_BYTES = 32
_KEK_HOW = "32 random bytes in base64, e.g. from `openssl rand -base64 32`"

_SECRET_HOW = (
    f"{MIN_SECRET_CHARS} random characters or more, the same on every api replica "
    "(e.g. from `openssl rand -hex 32`)"
)


class UnsafeSettings(ValueError):
    """The settings lack something the chosen roles need to run safely."""


def _sendable(token: str) -> bool:
    return token.isascii() and token.isprintable()
