"""The service under test: `flowledger serve` subprocesses in one of two topologies."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TOKEN = "bench-token"
REPO = Path(__file__).resolve().parent.parent
BANNER = "Flowledger is running"
STARTUP_TIMEOUT_S = 90.0
WORKER_BANNER = "Flowledger worker is running"
# The workflow phase's workflow (bench/one_step.py), run by `flowledger worker` processes.
WORKER_TARGET = "bench.one_step:OneStep"

# topology -> the roles of each process; the process that runs the api is listed last.
TOPOLOGIES: dict[str, list[str]] = {
    "all_in_one": ["all"],
    "two_members": ["commands", "commands", "relay,projections,api"],
    # One process per role, as the supervised `flowledger serve` runs them: the CPU time each
    # process spends is that role's cost (`cpu_us_per_command_<role>`, docs/scaling.md).
    "per_role": ["commands", "relay", "projections", "scheduler", "api"],
}


@dataclass
class Member:
    roles: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Deployment:
    topology: str
    prefix: str
    port: int = field(default_factory=lambda: free_port())
    members: list[Member] = field(default_factory=list)
    workers: list[Member] = field(default_factory=list)  # `flowledger worker` processes
    env: dict[str, str] = field(default_factory=dict)  # the processes' (workers share it)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> Member:
        return self.members[-1]

    def check_alive(self) -> None:
        for member in self.members + self.workers:
            if member.process.poll() is not None:
                raise RuntimeError(
                    f"service process ({member.roles}) exited with {member.process.returncode}:\n"
                    f"{member.log_tail()}"
                )

    def all_started(self) -> bool:
        """Every process printed its banner: its roles, consumers included, are up."""
        return all(BANNER in m.log.read_text(errors="replace") for m in self.members)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (the service drains), then SIGKILL whatever is left."""
        self.stop_workers(timeout_s)
        _terminate([m.process for m in self.members], timeout_s)

    def stop_workers(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (instances stop at a step boundary), then SIGKILL; forgets them."""
        _terminate([w.process for w in self.workers], timeout_s)
        self.workers.clear()


def _terminate(processes: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM to every process still running, then SIGKILL those not gone by the deadline."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat); 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_member(deployment: Deployment) -> dict[str, float]:
    """CPU seconds of each service process, by its roles (a role run twice sums)."""
    seconds: dict[str, float] = {}
    for member in deployment.members:
        name = "all" if member.roles == "all" else member.roles.replace(",", "+")
        seconds[name] = seconds.get(name, 0.0) + cpu_seconds(member.process.pid)
    return seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None]:
    """A preexec hook asking Linux to SIGTERM the child if the benchmark dies (even SIGKILLed)."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the hook only calls it
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _command(roles: str) -> list[str]:
    if roles == "all":  # every role in this one process, not one supervised child each
        return [sys.executable, "-m", "services.cli", "serve", "--single-process"]
    if "," not in roles:
        return [sys.executable, "-m", "services.cli", "serve", "--role", roles]
    return [sys.executable, "-m", "bench.serve_roles", roles]


async def start(deployment: Deployment, store: str, bootstrap: str, run_dir: Path) -> None:
    """Starts the processes one after the other, each once the previous printed its banner: on a
    new SQLite file, processes creating the tables at the same moment fail ("database is
    locked"), so the followers and api start first, then each commands member. Whatever was
    started is in `deployment.members`, for `stop()`, even when this fails."""
    env = deployment.env = _env(deployment, store, bootstrap, run_dir)
    hook = _die_with_parent()
    *commands_members, api_member = TOPOLOGIES[deployment.topology]
    for n, roles in enumerate([api_member, *commands_members]):
        log = run_dir / f"{deployment.prefix}-{n}-{roles.replace(',', '+')}.log"
        member = _spawn(_command(roles), env, log, roles, hook)
        deployment.members.insert(-1 if n else 0, member)  # the api's process stays last
        await _started(deployment, member, BANNER)


async def start_workers(
    deployment: Deployment,
    run_dir: Path,
    *,
    workflow: str,
    account: str,
    count: int,
    concurrency: int,
) -> None:
    """`count` `flowledger worker` processes of WORKER_TARGET in one group, each started once
    the previous printed its banner (registered in `account`, consuming), with the service's
    environment (its store, prefix and keys)."""
    env = deployment.env
    hook = _die_with_parent()
    for n in range(count):
        command = [sys.executable, "-m", "services.cli", "worker", WORKER_TARGET]
        command += ["--workflow", workflow, "--account", account]
        command += ["--concurrency", str(concurrency)]
        log = run_dir / f"{deployment.prefix}-worker-{n}.log"
        worker = _spawn(command, env, log, f"worker {n}", hook)
        deployment.workers.append(worker)
        await _started(deployment, worker, WORKER_BANNER)


def _spawn(
    command: list[str], env: dict[str, str], log: Path, roles: str, hook: Callable[[], None]
) -> Member:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the terminal's Ctrl-C reaches the bench, which stops us
            preexec_fn=hook,
        )
    return Member(roles, process, log)


async def _started(deployment: Deployment, member: Member, banner: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while banner not in member.log.read_text(errors="replace"):
        deployment.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{member.roles} did not start: {member.log_tail()}")
        await asyncio.sleep(0.1)


def _env(deployment: Deployment, store: str, bootstrap: str, run_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FLOWLEDGER_KAFKA_BOOTSTRAP": bootstrap,
        "FLOWLEDGER_STORE": store,
        "FLOWLEDGER_TOPIC_PREFIX": deployment.prefix,
        "FLOWLEDGER_API_TOKENS": f"{TOKEN}=*",
        # Tokens set make it a deployment, which needs its sdk-token secret.
        "FLOWLEDGER_SDK_TOKEN_SECRET": uuid.uuid4().hex * 2,
        "FLOWLEDGER_KEY_ENCRYPTION_KEYS": base64.b64encode(os.urandom(32)).decode(),
        "FLOWLEDGER_HTTP_PORT": str(deployment.port),
        "FLOWLEDGER_HTTP_HOST": "127.0.0.1",
        "FLOWLEDGER_STATE_DIR": str(run_dir / "state"),
        "PYTHONUNBUFFERED": "1",
    }
