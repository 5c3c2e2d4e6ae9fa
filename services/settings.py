"""All configuration, from FLOWLEDGER_* environment variables, in one object."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import Topics


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOWLEDGER_", extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,host:port]; unset = provision a broker (DESIGN.md)"
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
    poll_interval_s: float = Field(
        default=0.05,
        gt=0,
        description="how often the relay and projections look for new events when no save in "
        "their own process woke them (roles in separate processes)",
    )
    write_timeout_s: float = Field(default=5.0, gt=0)
    public_url: str = Field(
        default="", description="base URL readers reach the api at; default http://host:port"
    )
    sdk_token_secret: str = Field(
        default="", description="signs Onfido sdk_tokens; default derived from api_tokens"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line (instance_key, command_id)"
    )
    ops_port: int | None = Field(
        default=None,
        description="serves /healthz, /readyz, /metrics for roles without the api; unset = none",
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
            if not token or not accounts:
                raise ValueError(f"FLOWLEDGER_API_TOKENS entry {pair!r} is not token=account[,...]")
            table[token.strip()] = frozenset(a.strip() for a in accounts.split(",") if a.strip())
        return table
