"""A real PostgreSQL for tests and benchmarks, provisioned by the project itself.

Resolution order (:func:`resolve_postgres_admin_dsn`): an admin DSN in
``FLOWLEDGER_TEST_POSTGRES_DSN``; else testcontainers' PostgreSQL when a Docker engine answers;
else a throwaway cluster built from the machine's own PostgreSQL binaries with ``initdb`` and
``pg_ctl``. Production points ``FLOWLEDGER_STORE`` at its own server and never runs this.

Layout of a local cluster's ``data_dir`` (the directory handed to :func:`start_postgres`)::

    data_dir/pgdata/         the cluster itself (PGDATA)
    data_dir/run/            its Unix socket, so it never collides with a system server's socket
    data_dir/postgres.log    server log; its first FATAL line is quoted in start-up errors
    data_dir/port            the TCP port of the running server, for humans and shell scripts

Running as root. PostgreSQL refuses to run as root, so ``initdb`` and the server run as the
``postgres`` OS user, and that user must reach the cluster by path for as long as the server
runs (the checkpointer opens ``<PGDATA>/global/pg_control`` by absolute path). A ``data_dir``
under pytest's tmp dirs cannot promise that: every pytest session that starts resets
``/tmp/pytest-of-root`` to 0700, and the next checkpoint then PANICs the server. So as root the
cluster's files live in ``$TMPDIR/flowledger-postgres/cluster-*/`` (owned by ``postgres``), and
``data_dir/pgdata`` and ``data_dir/postgres.log`` are symlinks to them. A cluster whose
``data_dir`` has gone away (pytest rotating its tmp dirs) is stopped and deleted the next time
a cluster is created. Status and stop are done from this process (``postmaster.pid`` and
signals), never through ``pg_ctl`` as the server user.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import grp
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from services.dev_provisioning.docker_engine import docker_available

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
    "remove_postgres",
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
_RELOCATION_DIR_NAME = "flowledger-postgres"
# A cluster home younger than this may still be being set up by another process.
_ORPHAN_MIN_AGE_SECONDS = 120.0
# sockaddr_un.sun_path is 108 bytes including the NUL on Linux.
_MAX_SOCKET_PATH = 107
_START_ATTEMPTS = 3
_START_WAIT_SECONDS = 60.0
_STOP_WAIT_SECONDS = 60.0
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
    globbed = [Path(found) for pattern in _FALLBACK_BINDIR_GLOBS for found in glob.glob(pattern)]
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


def _can_traverse(path: Path, os_user: pwd.struct_passwd) -> bool:
    groups = {os_user.pw_gid} | {g.gr_gid for g in grp.getgrall() if os_user.pw_name in g.gr_mem}
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == os_user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


# --------------------------------------------------------------------------------------------
# Where a cluster's files live


@dataclass(frozen=True)
class _Home:
    """The directory holding pgdata/, run/ and postgres.log: data_dir, or a relocated one."""

    path: Path

    @property
    def pgdata(self) -> Path:
        return self.path / "pgdata"

    @property
    def log(self) -> Path:
        return self.path / "postgres.log"

    @property
    def run(self) -> Path:
        return self.path / "run"


def _existing_home(data_dir: Path) -> _Home | None:
    link = data_dir / "pgdata"
    if link.is_symlink():
        home = _Home(Path(os.readlink(link)).parent)
        return home if home.path.is_dir() else None
    if (link / "PG_VERSION").exists():
        return _Home(data_dir)
    return None


def _relocation_base(os_user: pwd.struct_passwd) -> Path:
    base = Path(tempfile.gettempdir()) / _RELOCATION_DIR_NAME
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o711)
    st = os.lstat(base)
    # A shared temp dir: refuse anything we did not create ourselves (symlink games).
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PostgresProvisioningError(
            f"{base} is not a directory owned by uid {os.geteuid()}: remove it and retry"
        )
    os.chmod(base, 0o711)
    if not _can_traverse(base, os_user):
        raise PostgresProvisioningError(
            f"the '{os_user.pw_name}' OS user cannot reach {base}: set TMPDIR to a directory "
            "it can traverse (e.g. /tmp)"
        )
    return base


def _new_home(data_dir: Path, os_user: pwd.struct_passwd | None) -> _Home:
    if os_user is None:
        return _Home(data_dir)
    base = _relocation_base(os_user)
    _sweep_orphans(base)
    home = _Home(Path(tempfile.mkdtemp(prefix="cluster-", dir=base)))
    # Written first: the sweep uses it to tell a live cluster home from a leftover one.
    (home.path / "origin").write_text(f"{data_dir}\n")
    os.chown(home.path, os_user.pw_uid, os_user.pw_gid)
    for name in ("pgdata", "postgres.log"):
        _remove(data_dir / name)
        (data_dir / name).symlink_to(home.path / name)
    return home


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _discard_home(data_dir: Path, home: _Home) -> None:
    if home.path == data_dir:
        shutil.rmtree(home.pgdata, ignore_errors=True)
        shutil.rmtree(home.run, ignore_errors=True)
        home.log.unlink(missing_ok=True)
    else:
        shutil.rmtree(home.path, ignore_errors=True)
        for name in ("pgdata", "postgres.log"):
            _remove(data_dir / name)
    (data_dir / "port").unlink(missing_ok=True)


def _sweep_orphans(base: Path) -> None:
    """Stop and delete relocated clusters whose data_dir no longer points at them."""
    now = time.time()
    for candidate in base.glob("cluster-*"):
        home = _Home(candidate)
        try:
            if now - candidate.stat().st_mtime < _ORPHAN_MIN_AGE_SECONDS:
                continue
            origin = Path((candidate / "origin").read_text().strip())
            link = origin / "pgdata"
            if link.is_symlink() and Path(os.readlink(link)) == home.pgdata:
                continue
        except OSError:
            pass
        running = _running(home.pgdata)
        if running is not None:
            log.warning("stopping orphaned PostgreSQL (pid %s) in %s", running.pid, candidate)
            with contextlib.suppress(PostgresProvisioningError):
                _shutdown(home.pgdata, running.pid)
        shutil.rmtree(candidate, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Cluster lifecycle


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


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int
    status: str


def _read_postmaster_pid(pgdata: Path) -> _Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        # Lines: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
        return _Postmaster(
            pid=int(lines[0]),
            port=int(lines[3]),
            status=lines[7].strip() if len(lines) > 7 else "",
        )
    except (OSError, IndexError, ValueError):
        return None


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live process working in ``pgdata`` (not a zombie, not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not Path("/proc/self").exists():
        # No procfs: trust the pid file, as pg_ctl does.
        return True
    proc = Path(f"/proc/{pid}")
    try:
        # Orphans can linger as zombies where PID 1 does not reap them (some sandboxes).
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        # A stale pid file can name a pid since reused by an unrelated process.
        return os.path.samefile(proc / "cwd", pgdata)
    except (OSError, IndexError):
        return False


def _running(pgdata: Path) -> _Postmaster | None:
    postmaster = _read_postmaster_pid(pgdata)
    if postmaster is None or not _is_postmaster_of(postmaster.pid, pgdata):
        return None
    return postmaster


def _clear_stale_locks(home: _Home) -> None:
    # Called only when no postmaster runs here. PostgreSQL ignores a lock naming a dead pid, but
    # not one naming a zombie, so a crashed server's locks would block every later start.
    (home.pgdata / "postmaster.pid").unlink(missing_ok=True)
    if home.run.is_dir():
        for leftover in home.run.glob(".s.PGSQL.*"):
            leftover.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_size(home: _Home) -> int:
    try:
        return home.log.stat().st_size
    except OSError:
        return 0


def _log_since(home: _Home, offset: int) -> str:
    try:
        with open(home.log, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _first_fatal(text: str) -> str:
    for line in text.splitlines():
        if "FATAL:" in line or "PANIC:" in line:
            return line.strip()
    return ""


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}, no output"


def _server_options(home: _Home, port: int, durable: bool) -> str:
    # A too-long socket path makes the postmaster exit; clients here use TCP anyway.
    if len(str(home.run)) + len(f"/.s.PGSQL.{port}") > _MAX_SOCKET_PATH:
        socket_setting = "unix_socket_directories="
    else:
        socket_setting = f"unix_socket_directories={home.run}"
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


def _initdb(bindir: Path, home: _Home, os_user: pwd.struct_passwd | None, *, durable: bool) -> None:
    argv = [
        str(bindir / "initdb"),
        "-D",
        str(home.pgdata),
        "-U",
        SUPERUSER,
        # trust for local and host (127.0.0.1/::1) lines: the server only listens on loopback.
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
    ]
    if not durable:
        argv.append("--no-sync")
    result = _run(argv, os_user=os_user, cwd=home.path, timeout=300)
    if result.returncode != 0:
        raise PostgresProvisioningError(f"initdb failed for {home.pgdata}: {_last_line(result)}")


def _wait_until_ready(home: _Home, port: int, log_offset: int, timeout: float) -> str:
    """Empty string once the postmaster reports ready on ``port``, else why it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        postmaster = _running(home.pgdata)
        if postmaster is not None and postmaster.port == port and postmaster.status == "ready":
            return ""
        fatal = _first_fatal(_log_since(home, log_offset))
        if fatal:
            return fatal
        time.sleep(0.05)
    return f"not ready within {timeout:.0f}s"


def _launch(
    bindir: Path,
    home: _Home,
    os_user: pwd.struct_passwd | None,
    durable: bool,
    port: int | None = None,
) -> int:
    """Start the postmaster on `port` (else a free one) and wait until it is ready; return
    the port. A fixed port lets a test restart the server where its clients look for it."""
    wanted = port
    _clear_stale_locks(home)
    home.run.mkdir(exist_ok=True)
    if os_user is not None:
        # The postmaster creates its socket and socket lock file there.
        os.chown(home.run, os_user.pw_uid, os_user.pw_gid)
    failure = "no attempt made"
    for _ in range(_START_ATTEMPTS):
        port = wanted or _free_port()
        log_offset = _log_size(home)
        failure = _pg_ctl_start(bindir, home, os_user, durable, port, log_offset)
        if not failure:
            return port
        half_started = _running(home.pgdata)
        if half_started is not None:
            _shutdown(home.pgdata, half_started.pid)
        _clear_stale_locks(home)
        # Another process may have taken the port between probe and bind: worth another try.
        if "Address already in use" not in _log_since(home, log_offset):
            break
    raise PostgresProvisioningError(
        f"PostgreSQL did not start in {home.pgdata} (see {home.log}): {failure}"
    )


def _pg_ctl_start(
    bindir: Path,
    home: _Home,
    os_user: pwd.struct_passwd | None,
    durable: bool,
    port: int,
    log_offset: int,
) -> str:
    """One start of the server on `port`: what went wrong, or "" once it is ready."""
    # -W: readiness is checked from here (postmaster.pid), not by pg_ctl as the server user.
    options = _server_options(home, port, durable)
    result = _run(
        [str(bindir / "pg_ctl"), "start", "-D", str(home.pgdata), "-l", str(home.log)]
        + ["-W", "-o", options],
        os_user=os_user,
        cwd=home.path,
        timeout=60,
    )
    if result.returncode != 0:
        return _last_line(result)
    return _wait_until_ready(home, port, log_offset, _START_WAIT_SECONDS)


@dataclass(frozen=True)
class _Started:
    server: LocalPostgres
    started: bool  # this call started the server (it was not running)
    created: bool  # this call ran initdb


def _start(data_dir: Path, *, durable: bool, port: int | None = None) -> _Started:
    bindir = find_postgres_bindir()
    os_user = _server_os_user()
    data_dir = data_dir.absolute()
    with _locked(data_dir):
        home = _existing_home(data_dir)
        if home is not None:
            running = _running(home.pgdata)
            if running is not None:
                server = LocalPostgres("127.0.0.1", running.port, SUPERUSER, data_dir)
                _wait_until_accepting(server, timeout=30)
                return _Started(server, started=False, created=False)

        if home is not None and not (home.pgdata / "PG_VERSION").exists():
            # Left half-made by an interrupted initdb: start over.
            _discard_home(data_dir, home)
            home = None
        created = home is None
        if home is None:
            home = _new_home(data_dir, os_user)
            try:
                _initdb(bindir, home, os_user, durable=durable)
            except BaseException:
                _discard_home(data_dir, home)
                raise

        port = _launch(bindir, home, os_user, durable, port)
        server = LocalPostgres("127.0.0.1", port, SUPERUSER, data_dir)
        _wait_until_accepting(server, timeout=30)
        (data_dir / "port").write_text(f"{port}\n")
        return _Started(server, started=True, created=created)


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


def _shutdown(pgdata: Path, pid: int) -> None:
    # SIGINT is pg_ctl's "fast" mode; SIGQUIT ("immediate") only if fast does not finish.
    for sig, timeout in ((signal.SIGINT, _STOP_WAIT_SECONDS), (signal.SIGQUIT, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _is_postmaster_of(pid, pgdata):
                return
            time.sleep(0.05)
    raise PostgresProvisioningError(
        f"PostgreSQL (pid {pid}) in {pgdata} did not shut down: kill it, then remove "
        f"{pgdata}/postmaster.pid"
    )


def start_postgres(
    data_dir: Path, *, durable: bool = False, port: int | None = None
) -> LocalPostgres:
    """Initialise (first time) and start a loopback-only cluster for ``data_dir``.

    Idempotent: if that cluster is already running, it is returned as is. ``durable=False``
    (the default) turns off fsync and friends for speed; see :func:`_server_options`.
    """
    return _start(data_dir, durable=durable, port=port).server


def stop_postgres(data_dir: Path) -> bool:
    """Stop the cluster of ``data_dir`` (fast shutdown); False if it was not running."""
    data_dir = data_dir.absolute()
    home = _existing_home(data_dir)
    if home is None:
        return False
    with _locked(data_dir):
        running = _running(home.pgdata)
        if running is None:
            return False
        _shutdown(home.pgdata, running.pid)
        (data_dir / "port").unlink(missing_ok=True)
        return True


def remove_postgres(data_dir: Path) -> None:
    """Stop the cluster of ``data_dir`` if it runs, and delete its files (relocated ones too)."""
    data_dir = data_dir.absolute()
    stop_postgres(data_dir)
    home = _existing_home(data_dir)
    if home is None and (data_dir / "pgdata").is_symlink():
        # Relocated home already gone: only the links are left.
        home = _Home(Path(os.readlink(data_dir / "pgdata")).parent)
    if home is not None:
        with _locked(data_dir):
            _discard_home(data_dir, home)


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
    Docker answers (cleanup removes it) -> the local cluster of ``state_dir/postgres``
    (cleanup stops it only if this call started it, and deletes it only if this call created
    it: a cluster someone else left running or initialised is left as found).
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
        outcome = _start(data_dir, durable=False)
    except PostgresProvisioningError as exc:
        if docker_error is not None:
            raise PostgresProvisioningError(
                f"{exc} (the Docker route failed too: {docker_error})"
            ) from exc
        raise

    def cleanup() -> None:
        if outcome.created:
            remove_postgres(data_dir)
        elif outcome.started:
            stop_postgres(data_dir)

    return outcome.server.dsn(), cleanup
