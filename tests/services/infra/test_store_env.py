"""FLOWLEDGER_STORE URL -> eventsourcing settings."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from services.infra.store_env import (
    DEFAULT_MAX_OVERFLOW,
    DEFAULT_POOL_SIZE,
    STORED_FORMAT,
    eventsourcing_env,
)


class Tally(Aggregate):
    def __init__(self) -> None:
        self.total = 0

    @event("Added")
    def add(self, amount: int) -> None:
        self.total += amount


def _round_trip(env: dict[str, str]) -> None:
    app: Application[UUID] = Application(env=env)
    try:
        tally = Tally()
        tally.add(5)
        app.save(tally)
        loaded: Aggregate = app.repository.get(tally.id)
        assert isinstance(loaded, Tally)
        assert loaded.total == 5
    finally:
        app.close()


@pytest.mark.parametrize(
    ("url", "dbname"),
    [
        ("sqlite:///flowledger.db", "flowledger.db"),
        ("sqlite:///.flowledger/store.db", ".flowledger/store.db"),
        ("sqlite:////var/lib/flowledger/store.db", "/var/lib/flowledger/store.db"),
        ("sqlite:///with%20space.db", "with space.db"),
    ],
)
def test_sqlite_urls(url: str, dbname: str) -> None:
    assert eventsourcing_env(url) == {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": dbname,
        "CREATE_TABLE": "y",
        **STORED_FORMAT,
    }


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///x.db?a=1"]
)
def test_malformed_sqlite_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite store URL"):
        eventsourcing_env(url)


def test_postgres_url_maps_every_part() -> None:
    assert eventsourcing_env("postgresql://svc:s3cret@db.internal:6543/ledger") == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "ledger",
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "svc",
        "POSTGRES_PASSWORD": "s3cret",
        "POSTGRES_POOL_SIZE": str(DEFAULT_POOL_SIZE),
        "POSTGRES_MAX_OVERFLOW": str(DEFAULT_MAX_OVERFLOW),
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "CREATE_TABLE": "y",
        **STORED_FORMAT,
    }


def test_postgres_url_without_password_or_port() -> None:
    env = eventsourcing_env("postgres://flowledger@127.0.0.1/postgres")
    # The library rejects a missing POSTGRES_PASSWORD but accepts an empty one.
    assert env["POSTGRES_PASSWORD"] == ""
    assert env["POSTGRES_PORT"] == "5432"
    assert env["POSTGRES_USER"] == "flowledger"


def test_postgres_url_percent_decoding_and_ipv6() -> None:
    env = eventsourcing_env("postgresql://us%40er:p%3Aw%2Fd@[::1]:5432/my%20db")
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]) == ("us@er", "p:w/d")
    assert env["POSTGRES_HOST"] == "::1"
    assert env["POSTGRES_DBNAME"] == "my db"


def test_postgres_query_parameters() -> None:
    env = eventsourcing_env("postgresql://u@h/db?pool_size=10&max_overflow=0&schema=fl")
    assert env["POSTGRES_POOL_SIZE"] == "10"
    assert env["POSTGRES_MAX_OVERFLOW"] == "0"
    assert env["POSTGRES_SCHEMA"] == "fl"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@h/db?sslmode=require", "unsupported parameter 'sslmode'"),
        ("postgresql://u@h/db?pool_size=many", "pool_size must be a whole number"),
        ("postgresql://u@/db", "needs a host"),
        ("postgresql://h:5432/db", "needs a user"),
        ("postgresql://u@h:5432/", "needs a database name"),
        ("postgresql://u@h:99999/db", "invalid port"),
    ],
)
def test_malformed_postgres_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        eventsourcing_env(url)


@pytest.mark.parametrize("url", ["mysql://u:pw@h/db", "/plain/path.db", "", "http://x"])
def test_other_schemes_are_refused_with_the_supported_ones(url: str) -> None:
    with pytest.raises(ValueError, match=r"use sqlite:///path\.db or postgresql://"):
        eventsourcing_env(url)


def test_errors_do_not_leak_the_password() -> None:
    with pytest.raises(ValueError) as info:
        eventsourcing_env("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError) as info:
        eventsourcing_env("postgresql://u:hunter2@h/db?bogus=1")
    assert "hunter2" not in str(info.value)


def test_sqlite_env_drives_the_library(tmp_path: Path) -> None:
    _round_trip(eventsourcing_env(f"sqlite:///{tmp_path / 'store.db'}"))
    assert (tmp_path / "store.db").exists()


def test_postgres_env_drives_the_library(postgres_dsn: str) -> None:
    _round_trip(eventsourcing_env(postgres_dsn))
