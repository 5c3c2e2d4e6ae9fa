"""A real PostgreSQL for tests and benchmarks, provisioned by the project itself.

Resolution order (DESIGN.md, "Infrastructure"): an admin DSN in ``FLOWLEDGER_TEST_POSTGRES_DSN``;
else testcontainers' PostgreSQL when a Docker engine answers; else a throwaway cluster built from
the machine's own PostgreSQL binaries with ``initdb`` and ``pg_ctl``.

Layout of a local cluster's ``data_dir`` (the directory handed to :func:`start_postgres`)::

    data_dir/pgdata/         the cluster itself (PGDATA)
    data_dir/run/            its Unix socket, so it never collides with a system server's socket
    data_dir/postgres.log    server log; the tail is quoted in start-up errors
    data_dir/port            the TCP port of the running server, for humans and shell scripts

PostgreSQL refuses to run as root. When this process is root, ``initdb`` and ``pg_ctl`` run as
the ``postgres`` OS user: ``data_dir`` is chowned to it, and any ancestor of ``data_dir`` that
user could not traverse (pytest's ``/tmp/pytest-of-root`` is 0700) gets the others-execute bit
only, which allows reaching known paths but not listing directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = [
    "ENV_ADMIN_DSN",
    "SUPERUSER",
    "LocalPostgres",
    "PostgresProvisioningError",
    "create_database",
    "create_database_on",
    "docker_available",
    "drop_database",
    "drop_database_on",
    "find_postgres_bindir",
    "resolve_postgres_admin_dsn",
    "start_postgres",
    "stop_postgres",
]

log = logging.getLogger(__name__)

ENV_ADMIN_DSN = "FLOWLEDGER_TEST_POSTGRES_DSN"
SUPERUSER = "flowledger"
CONTAINER_IMAGE = "postgres:15"

_OS_USER_WHEN_ROOT = "postgres"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
# Debian/Ubuntu and RHEL/PGDG install server binaries outside PATH, one directory per major.
_FALLBACK_BINDIR_GLOBS: tuple[str, ...] = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin")
# sockaddr_un.sun_path is 108 bytes including the NUL on Linux.
_MAX_SOCKET_PATH = 107
_START_ATTEMPTS = 3
_PG_CTL_WAIT_SECONDS = 60
_DB_NAME_MAX_BYTES = 63


class PostgresProvisioningError(RuntimeError):
    """PostgreSQL could not be had; the message says what to do about it."""


@dataclass
class LocalPostgres:
    host: str
    port: int
    user: str
    data_dir: Path

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{quote(self.user, safe='')}@{self.host}:{self.port}/" + quote(
            dbname, safe=""
        )

    @property
    def pgdata(self) -> Path:
        return _pgdata(self.data_dir)


# --------------------------------------------------------------------------------------------
# Binaries and OS user


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (newest major wins)."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        # /usr/local/bin/pg_ctl is often a symlink into the real bindir next to initdb/postgres.
        candidates.append(Path(on_path).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    globbed: list[Path] = []
    for pattern in _FALLBACK_BINDIR_GLOBS:
        root = Path(pattern.split("*", 1)[0]).parent
        globbed.extend(root.glob(pattern[len(str(root)) + 1 :]))
    candidates.extend(sorted(globbed, key=_major_version_key, reverse=True))

    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in _REQUIRED_BINARIES):
            return bindir
    raise PostgresProvisioningError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, via pg_config "
        "or under /usr/lib/postgresql/*/bin: install PostgreSQL (e.g. `apt-get install "
        f"postgresql`) or set {ENV_ADMIN_DSN} to an existing server's admin DSN"
    )


def _major_version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", str(bindir))) or (0,)


def _server_os_user() -> pwd.struct_passwd | None:
    """The account to run the server as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_OS_USER_WHEN_ROOT)
    except KeyError:
        raise PostgresProvisioningError(
            "running as root and PostgreSQL refuses to run as root: create an unprivileged "
            f"'{_OS_USER_WHEN_ROOT}' OS user (e.g. `useradd --system {_OS_USER_WHEN_ROOT}`) "
            "or run as a non-root user"
        ) from None


def _run(
    argv: list[str],
    *,
    os_user: pwd.struct_passwd | None,
    cwd: Path,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    # Inherited PG* variables (PGDATA, PGPORT, PGOPTIONS...) would silently retarget pg_ctl.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    if os_user is None:
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    env["HOME"] = os_user.pw_dir
    env["USER"] = env["LOGNAME"] = os_user.pw_name
    # extra_groups=[] drops root's supplementary groups, which the server must not keep.
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        user=os_user.pw_uid,
        group=os_user.pw_gid,
        extra_groups=[],
    )


def _prepare_data_dir(data_dir: Path, os_user: pwd.struct_passwd | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if os_user is None:
        return
    os.chown(data_dir, os_user.pw_uid, os_user.pw_gid)
    groups = {os_user.pw_gid} | {g.gr_gid for g in grp.getgrall() if os_user.pw_name in g.gr_mem}
    for ancestor in data_dir.resolve().parents:
        st = ancestor.stat()
        if st.st_uid == os_user.pw_uid:
            allowed = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            allowed = bool(st.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(st.st_mode & stat.S_IXOTH)
        if not allowed:
            log.info(
                "granting others-execute on %s so '%s' can reach %s",
                ancestor,
                os_user.pw_name,
                data_dir,
            )
            os.chmod(ancestor, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


# --------------------------------------------------------------------------------------------
# Cluster lifecycle


def _pgdata(data_dir: Path) -> Path:
    return data_dir / "pgdata"


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    # Serialises start/stop between processes (e.g. pytest-xdist workers sharing a state dir).
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _running_port(data_dir: Path, bindir: Path, os_user: pwd.struct_passwd | None) -> int | None:
    """The port of the server running on ``data_dir``'s cluster, or None when it is down."""
    pgdata = _pgdata(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        return None
    status = _run(
        [str(bindir / "pg_ctl"), "status", "-D", str(pgdata)],
        os_user=os_user,
        cwd=data_dir,
        timeout=30,
    )
    if status.returncode != 0:
        return None
    try:
        # postmaster.pid line 4 is the port the running postmaster actually bound.
        return int((pgdata / "postmaster.pid").read_text().splitlines()[3])
    except (OSError, IndexError, ValueError):
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_size(data_dir: Path) -> int:
    try:
        return (data_dir / "postgres.log").stat().st_size
    except OSError:
        return 0


def _log_since(data_dir: Path, offset: int) -> str:
    try:
        with open(data_dir / "postgres.log", "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _log_summary(text: str) -> str:
    """The line that explains a failed start: the first FATAL/PANIC, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "FATAL:" in line or "PANIC:" in line:
            return line
    return lines[-1] if lines else ""


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}, no output"


def _server_options(data_dir: Path, port: int, durable: bool) -> str:
    socket_dir = data_dir / "run"
    # A too-long socket path makes the postmaster exit; clients here use TCP anyway.
    if len(str(socket_dir)) + len(f"/.s.PGSQL.{port}") > _MAX_SOCKET_PATH:
        socket_setting = "unix_socket_directories="
    else:
        socket_setting = f"unix_socket_directories={socket_dir}"
    settings = [
        "listen_addresses=127.0.0.1",
        socket_setting,
        # Each test opens its own pools (eventsourcing recorders, projections, the api).
        "max_connections=200",
    ]
    if not durable:
        # Test-speed choice: this cluster is disposable, so crash safety buys nothing and
        # fsync/commit flushes dominate the cost of the many tiny transactions tests make.
        settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    parts = ["-p", str(port)]
    for setting in settings:
        parts += ["-c", setting]
    # pg_ctl hands -o to /bin/sh, so quote for the shell.
    return " ".join(shlex.quote(part) for part in parts)


def _start(data_dir: Path, *, durable: bool) -> tuple[LocalPostgres, bool]:
    """Start (or find running) the cluster; also says whether this call started it."""
    bindir = find_postgres_bindir()
    os_user = _server_os_user()
    data_dir = data_dir.absolute()
    _prepare_data_dir(data_dir, os_user)
    with _locked(data_dir):
        port = _running_port(data_dir, bindir, os_user)
        if port is not None:
            server = LocalPostgres("127.0.0.1", port, SUPERUSER, data_dir)
            _wait_until_accepting(server, timeout=30)
            return server, False

        pgdata = _pgdata(data_dir)
        if not (pgdata / "PG_VERSION").exists():
            _initdb(bindir, data_dir, os_user, durable=durable)
        (data_dir / "run").mkdir(exist_ok=True)
        if os_user is not None:
            # The postmaster creates its socket and lock file there.
            os.chown(data_dir / "run", os_user.pw_uid, os_user.pw_gid)

        started = False
        last_error = "no attempt made"
        for _ in range(_START_ATTEMPTS):
            port = _free_port()
            log_offset = _log_size(data_dir)
            result = _run(
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "-D",
                    str(pgdata),
                    "-l",
                    str(data_dir / "postgres.log"),
                    "-w",
                    "-t",
                    str(_PG_CTL_WAIT_SECONDS),
                    "-o",
                    _server_options(data_dir, port, durable),
                ],
                os_user=os_user,
                cwd=data_dir,
                timeout=_PG_CTL_WAIT_SECONDS + 15,
            )
            if result.returncode == 0:
                started = True
                break
            attempt_log = _log_since(data_dir, log_offset)
            last_error = _log_summary(attempt_log) or _last_line(result)
            # Another process may have taken the port between probe and bind: try another.
            if "Address already in use" not in attempt_log:
                break
        if not started:
            raise PostgresProvisioningError(
                f"pg_ctl could not start PostgreSQL in {pgdata} (see {data_dir}/postgres.log): "
                f"{last_error}"
            )

        server = LocalPostgres("127.0.0.1", port, SUPERUSER, data_dir)
        _wait_until_accepting(server, timeout=30)
        (data_dir / "port").write_text(f"{port}\n")
        return server, True


def _initdb(
    bindir: Path, data_dir: Path, os_user: pwd.struct_passwd | None, *, durable: bool
) -> None:
    argv = [
        str(bindir / "initdb"),
        "-D",
        str(_pgdata(data_dir)),
        "-U",
        SUPERUSER,
        # trust for local and host (127.0.0.1/::1) lines: the server only listens on loopback.
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
    ]
    if not durable:
        argv.append("--no-sync")
    result = _run(argv, os_user=os_user, cwd=data_dir, timeout=300)
    if result.returncode != 0:
        raise PostgresProvisioningError(
            f"initdb failed for {_pgdata(data_dir)}: {_last_line(result)}"
        )


def _wait_until_accepting(server: LocalPostgres, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.dsn(), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PostgresProvisioningError(
                    f"PostgreSQL on 127.0.0.1:{server.port} did not accept connections within "
                    f"{timeout:.0f}s: {str(exc).strip().splitlines()[-1]}"
                ) from exc
            time.sleep(0.1)


def start_postgres(data_dir: Path, *, durable: bool = False) -> LocalPostgres:
    """Initialise (first time) and start a loopback-only cluster under ``data_dir``.

    Idempotent: if that cluster is already running, it is returned as is. ``durable=False``
    (the default) turns off fsync and friends for speed; see :func:`_server_options`.
    """
    server, _ = _start(data_dir, durable=durable)
    return server


def stop_postgres(data_dir: Path) -> bool:
    """Stop the cluster under ``data_dir`` (fast shutdown); False if it was not running."""
    data_dir = data_dir.absolute()
    if not (_pgdata(data_dir) / "PG_VERSION").exists():
        return False
    bindir = find_postgres_bindir()
    os_user = _server_os_user()
    with _locked(data_dir):
        if _running_port(data_dir, bindir, os_user) is None:
            return False
        result = _run(
            [
                str(bindir / "pg_ctl"),
                "stop",
                "-D",
                str(_pgdata(data_dir)),
                "-m",
                "fast",
                "-w",
                "-t",
                str(_PG_CTL_WAIT_SECONDS),
            ],
            os_user=os_user,
            cwd=data_dir,
            timeout=_PG_CTL_WAIT_SECONDS + 15,
        )
        if result.returncode != 0:
            raise PostgresProvisioningError(
                f"pg_ctl could not stop PostgreSQL in {_pgdata(data_dir)}: {_last_line(result)}"
            )
        with contextlib.suppress(FileNotFoundError):
            (data_dir / "port").unlink()
        return True


# --------------------------------------------------------------------------------------------
# Databases


def _dsn_with_dbname(admin_dsn: str, dbname: str) -> str:
    parts = urlsplit(admin_dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise PostgresProvisioningError(
            f"admin DSN must be a postgresql:// URL (got scheme {parts.scheme!r}); "
            f"fix {ENV_ADMIN_DSN}"
        )
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


def _check_db_name(admin_dsn: str, name: str) -> None:
    if not name or len(name.encode()) > _DB_NAME_MAX_BYTES:
        # PostgreSQL would silently truncate, and the returned DSN would name a missing database.
        raise ValueError(f"database name must be 1..{_DB_NAME_MAX_BYTES} bytes: {name!r}")
    if urlsplit(admin_dsn).path.lstrip("/") == name:
        raise ValueError(f"database {name!r} is the admin DSN's own database")


def create_database_on(admin_dsn: str, name: str) -> str:
    """Create database ``name`` on the server behind ``admin_dsn``; return its DSN."""
    _check_db_name(admin_dsn, name)
    dsn = _dsn_with_dbname(admin_dsn, name)
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return dsn


def drop_database_on(admin_dsn: str, name: str) -> None:
    """Drop database ``name`` (if it exists), disconnecting whoever still uses it."""
    _check_db_name(admin_dsn, name)
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        if conn.info.server_version >= 130000:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            return
        # Before 13 there is no FORCE: end the existing sessions, then drop.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def create_database(server: LocalPostgres, name: str) -> str:
    return create_database_on(server.dsn(), name)


def drop_database(server: LocalPostgres, name: str) -> None:
    drop_database_on(server.dsn(), name)


# --------------------------------------------------------------------------------------------
# Resolution: env DSN -> Docker -> local cluster


def docker_available(timeout: float = 0.5) -> bool:
    """Whether a Docker engine answers ``/_ping``; fast when there is none."""
    docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
    try:
        if docker_host.startswith("unix://"):
            path = docker_host[len("unix://") :]
            if not os.path.exists(path):
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = path
        elif docker_host.startswith("tcp://"):
            parts = urlsplit(docker_host)
            if not parts.hostname:
                return False
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (parts.hostname, parts.port or 2375)
        else:
            return False
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(request)
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _noop() -> None:
    return None


def _start_container() -> tuple[str, Callable[[], None]]:
    # Imported lazily: testcontainers pulls in the docker SDK, slow and pointless without Docker.
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        CONTAINER_IMAGE,
        username=SUPERUSER,
        password=SUPERUSER,
        dbname="postgres",
        driver=None,
    )
    container.start()
    return container.get_connection_url(), container.stop


def _check_reachable(admin_dsn: str) -> None:
    # Fail once, here, rather than in every test that would try to create its database.
    _dsn_with_dbname(admin_dsn, "postgres")
    try:
        with psycopg.connect(admin_dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise PostgresProvisioningError(
            f"{ENV_ADMIN_DSN} is set but that server does not answer: {reason}"
        ) from exc


def resolve_postgres_admin_dsn(state_dir: Path) -> tuple[str, Callable[[], None]]:
    """An admin DSN (database ``postgres``, may CREATE DATABASE) and its cleanup.

    ``FLOWLEDGER_TEST_POSTGRES_DSN`` (cleanup does nothing) -> a testcontainers PostgreSQL when
    Docker answers (cleanup removes it) -> the local cluster under ``state_dir/postgres``
    (cleanup stops it, but only if this call was the one that started it).
    """
    env_dsn = os.environ.get(ENV_ADMIN_DSN, "").strip()
    if env_dsn:
        _check_reachable(env_dsn)
        return env_dsn, _noop

    docker_error: Exception | None = None
    if docker_available():
        try:
            return _start_container()
        except Exception as exc:  # whatever broke in Docker, the local cluster may still do
            docker_error = exc
            log.warning("Docker PostgreSQL failed, falling back to a local cluster: %s", exc)

    data_dir = state_dir / "postgres"
    try:
        server, started = _start(data_dir, durable=False)
    except PostgresProvisioningError as exc:
        if docker_error is not None:
            raise PostgresProvisioningError(
                f"{exc} (the Docker route failed too: {docker_error})"
            ) from exc
        raise

    def cleanup() -> None:
        if started:
            stop_postgres(data_dir)

    return server.dsn(), cleanup
