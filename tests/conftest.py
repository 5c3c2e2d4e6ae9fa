"""Shared fixtures. Real backends come from tests/fixtures (one Kafka broker and one PostgreSQL
server per session); every test makes its own ids, topics and databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.service",
    "tests.fixtures.live_server",
    "tests.fixtures.browser",
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both event stores: a real SQLite file and a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flowledger.db'}"
    return str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
def new_id() -> str:
    return uuid.uuid4().hex[:12]
