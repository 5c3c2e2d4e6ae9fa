"""The project's own PostgreSQL bootstrap, against a real server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit
from uuid import UUID

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from services.dev_provisioning import postgres
from services.dev_provisioning.postgres import (
    LocalPostgres,
    PostgresProvisioningError,
    create_database,
    create_database_on,
    drop_database,
    drop_database_on,
    remove_postgres,
    start_postgres,
    stop_postgres,
)

_USER_TABLES = (
    "SELECT count(*) FROM information_schema.tables "
    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
)


class Counter(Aggregate):
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


def _current_database(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def test_fresh_database_accepts_a_connection_and_is_empty(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute(_USER_TABLES).fetchone()
        name = conn.execute("SELECT current_database()").fetchone()
    assert row == (0,)
    assert name is not None
    assert name[0] == unquote(urlsplit(postgres_dsn).path.lstrip("/"))
    assert name[0].startswith("t_test_fresh_database")


_seen_databases: list[str] = []


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_its_own_database(postgres_dsn: str, turn: str) -> None:
    name = _current_database(postgres_dsn)
    assert name not in _seen_databases
    with psycopg.connect(postgres_dsn) as conn:
        # A table left by the other turn would mean the database was shared.
        row = conn.execute(_USER_TABLES).fetchone()
        assert row == (0,)
        conn.execute("CREATE TABLE marker (turn text)")
        conn.execute("INSERT INTO marker VALUES (%s)", (turn,))
    _seen_databases.append(name)


def test_create_and_drop_on_admin_dsn(postgres_admin_dsn: str) -> None:
    first = create_database_on(postgres_admin_dsn, "t_admin_a")
    second = create_database_on(postgres_admin_dsn, "t_admin_b")
    try:
        assert first != second
        assert _current_database(first) == "t_admin_a"
        assert _current_database(second) == "t_admin_b"
        # A session still open must not block the drop (WITH (FORCE)).
        lingering = psycopg.connect(first)
        drop_database_on(postgres_admin_dsn, "t_admin_a")
        with pytest.raises(psycopg.OperationalError):
            lingering.execute("SELECT 1")
        lingering.close()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(first, connect_timeout=5)
    finally:
        drop_database_on(postgres_admin_dsn, "t_admin_a")
        drop_database_on(postgres_admin_dsn, "t_admin_b")


def test_database_names_postgres_would_truncate_are_refused(postgres_admin_dsn: str) -> None:
    with pytest.raises(ValueError, match="1..63 bytes"):
        create_database_on(postgres_admin_dsn, "x" * 64)


def test_eventsourcing_postgres_store_round_trip(postgres_dsn: str) -> None:
    url = urlsplit(postgres_dsn)
    app: Application[UUID] = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(url.path.lstrip("/")),
            "POSTGRES_HOST": url.hostname or "",
            "POSTGRES_PORT": str(url.port),
            "POSTGRES_USER": unquote(url.username or ""),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            "CREATE_TABLE": "y",
        }
    )
    try:
        counter = Counter("ledger")
        counter.increment()
        counter.increment()
        app.save(counter)
        loaded: Aggregate = app.repository.get(counter.id)
        assert isinstance(loaded, Counter)
        assert (loaded.name, loaded.count, loaded.version) == ("ledger", 2, 3)
    finally:
        app.close()
    # The events really are in this database (the library names the table after the app).
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM application_events").fetchone()
    assert row == (3,)


def _local_server_or_skip(data_dir: Path) -> LocalPostgres:
    try:
        return start_postgres(data_dir)
    except PostgresProvisioningError as exc:
        if os.environ.get("FLOWLEDGER_REQUIRE_BACKENDS", "") == "1":
            pytest.fail(f"PostgreSQL required (FLOWLEDGER_REQUIRE_BACKENDS=1): {exc}")
        pytest.skip(f"no local PostgreSQL: {exc}")


def test_start_postgres_on_a_running_data_dir_returns_the_same_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "cluster"
    server = _local_server_or_skip(data_dir)
    try:
        postmaster_pid = (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0]
        again = start_postgres(data_dir)
        assert again == server
        assert (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0] == (
            postmaster_pid
        )
        assert (data_dir / "port").read_text().strip() == str(server.port)
        assert server.dsn() == f"postgresql://flowledger@127.0.0.1:{server.port}/postgres"
        dsn = create_database(server, "t_local")
        assert dsn == server.dsn("t_local")
        assert _current_database(dsn) == "t_local"
        drop_database(server, "t_local")
    finally:
        assert stop_postgres(data_dir) is True
    assert stop_postgres(data_dir) is False
    assert not (data_dir / "port").exists()
    # A stopped cluster starts again (new port) with its data intact.
    restarted = start_postgres(data_dir)
    assert _current_database(restarted.dsn()) == "postgres"
    remove_postgres(data_dir)
    assert not (data_dir / "pgdata").exists()
    assert not (data_dir / "pgdata").is_symlink()


def test_cluster_survives_its_data_dir_becoming_private(tmp_path: Path) -> None:
    # Every new pytest session resets /tmp/pytest-of-<user> to 0700. As root the server runs
    # as another user, and its checkpoints must still reach the cluster afterwards.
    data_dir = tmp_path / "cluster"
    server = _local_server_or_skip(data_dir)
    mode = tmp_path.stat().st_mode
    try:
        tmp_path.chmod(0o700)
        dsn = create_database(server, "t_private")
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        assert _current_database(dsn) == "t_private"
        drop_database(server, "t_private")
        assert start_postgres(data_dir) == server
    finally:
        tmp_path.chmod(mode)
        remove_postgres(data_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="clusters are relocated only when running as root")
def test_a_cluster_whose_data_dir_is_gone_is_stopped_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    abandoned = tmp_path / "abandoned"
    server = _local_server_or_skip(abandoned)
    home = (abandoned / "pgdata").resolve().parent
    pid = int((home / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
    shutil.rmtree(abandoned)  # what pytest's tmp dir rotation does
    monkeypatch.setattr(postgres, "_ORPHAN_MIN_AGE_SECONDS", 0.0)
    successor = tmp_path / "successor"
    try:
        start_postgres(successor)
        assert not home.exists()
        assert not postgres._is_postmaster_of(pid, home / "pgdata")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn(), connect_timeout=2)
    finally:
        remove_postgres(successor)


def test_missing_binaries_name_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(postgres, "_FALLBACK_BINDIR_GLOBS", ())
    with pytest.raises(PostgresProvisioningError, match=r"install PostgreSQL") as info:
        start_postgres(tmp_path / "cluster")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cluster" / "pgdata").exists()


def test_env_dsn_wins_and_its_cleanup_does_nothing(
    postgres_admin_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWLEDGER_TEST_POSTGRES_DSN", postgres_admin_dsn)
    dsn, cleanup = postgres.resolve_postgres_admin_dsn(tmp_path)
    assert dsn == postgres_admin_dsn
    cleanup()
    assert list(tmp_path.iterdir()) == []
    assert _current_database(postgres_admin_dsn) == "postgres"


def test_unreachable_env_dsn_is_a_provisioning_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWLEDGER_TEST_POSTGRES_DSN", "postgresql://nobody@127.0.0.1:1/postgres")
    with pytest.raises(PostgresProvisioningError, match="FLOWLEDGER_TEST_POSTGRES_DSN is set"):
        postgres.resolve_postgres_admin_dsn(tmp_path)
