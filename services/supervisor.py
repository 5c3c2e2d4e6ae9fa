"""`flowledger serve` on every core: each role in its own child process, kept running.

One Python process runs its roles on one core (the GIL); the roles already work as separate
processes (compose.yaml runs them so, coordinating through the store and Kafka only), so the
all-in-one `flowledger serve` starts one child per role (`flowledger serve --role R`) and
watches them:

- a child that exits while nobody asked it to is restarted after a back-off that doubles from
  `first_delay_s` up to `max_delay_s`, logged on one line (role, exit code, restart number);
- a child that crashes `max_crashes` times in a row, each within `stable_after_s` of its start,
  is a crash loop (bad settings, a store that refuses us): every role is stopped and the
  supervisor exits 1, so that whatever runs *it* (systemd, a container runtime) sees the failure;
- SIGTERM or SIGINT is passed on to every child as SIGTERM; each drains (finishes its batch,
  commits) and exits; after `stop_timeout_s` the rest are killed. A second signal kills at once.

Children run in their own session, so a terminal's Ctrl-C reaches only the supervisor (a child
would otherwise get SIGINT from the terminal *and* SIGTERM from here, and take the second signal
as "exit without draining"). On Linux each child also asks the kernel to SIGTERM it when the
supervisor dies, so even `kill -9` of the supervisor leaves no orphaned role behind.

Followers in other processes are not woken by a save (the in-process `Wakeup`): they poll the
store every FLOWLEDGER_POLL_INTERVAL_S (0.05 s), as they do under compose.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType

from services.banner import print_banner
from services.settings import Settings, UnsafeSettings

log = logging.getLogger("flowledger.supervisor")

# One child per role. Kept here rather than imported from services.bootstrap, which would load
# the whole service (FastAPI, eventsourcing, Kafka clients) into a process that only waits;
# tests/services/test_supervisor.py checks the two lists agree. The api child, which owns the
# HTTP port, starts last; the order does not matter otherwise (the schema lock serialises
# table creation, and each child declares the topics it needs).
SUPERVISED_ROLES = ("commands", "relay", "projections", "scheduler", "api")

# Below `make run`'s 30 s (services/dev_provisioning/run_local.py), which then kills us; above
# one role's own drain bound (DRAIN_TIMEOUT_S, 15 s), so a draining child is not cut short.
STOP_TIMEOUT_S = 25.0
# How often the loop looks at its children: cheap (a waitpid each), and restarts need no better.
POLL_S = 0.1


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # A child that ran this long before it exited was healthy: its crash count starts again.
    stable_after_s: float = 60.0
    # Crashes in a row (each before `stable_after_s`) tolerated; one more and we give up.
    max_crashes: int = 5

    def delay(self, crashes: int) -> float:
        """Seconds before the restart that follows crash number `crashes` (1, 2, ...)."""
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** max(0, crashes - 1)))


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    crashes: int = 0  # in a row, each soon after its start
    restart_at: float | None = None  # set while it waits out its back-off
    ready: bool = False  # said so at least once (see `_hear_ready`)
    ready_pipe: int | None = None  # the read end of the pipe it says so on

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Supervisor:
    specs: list[ChildSpec]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    stop_timeout_s: float = STOP_TIMEOUT_S
    # Called once, when every child has said it is ready: the one banner of `flowledger serve`.
    on_all_ready: Callable[[], None] = lambda: None
    children: list[Child] = field(init=False)
    _announced: bool = field(default=False, init=False)
    _signals: int = field(default=0, init=False)
    _killed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.children = [Child(spec) for spec in self.specs]

    def run(self) -> int:
        """Starts every child and keeps them running until a signal (0, or 1 if a child had
        to be killed) or a crash loop or a start that fails (1)."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        try:
            for child in self.children:
                self._start(child)
        except OSError as error:
            log.error("could not start role %s: %s; stopping", child.spec.name, error)
            self._stop()
            return 1
        while not self._signals:
            if not self._watch(time.monotonic()):
                self._stop()
                return 1
            time.sleep(POLL_S)
        log.info("stopping: every role drains")
        return self._stop()

    def _watch(self, now: float) -> bool:
        """One look at every child: schedule the restart of those that exited, start those
        whose back-off is over. False when one is crash-looping or cannot be started."""
        for child in self.children:
            self._hear_ready(child)
            if child.running:
                continue
            if child.restart_at is None:
                if not self._schedule_restart(child, now):
                    return False
            elif now >= child.restart_at:
                try:
                    self._start(child)
                except OSError as error:
                    log.error("could not restart role %s: %s; stopping", child.spec.name, error)
                    return False
        if not self._announced and all(child.ready for child in self.children):
            self._announced = True
            self.on_all_ready()
        return True

    def _hear_ready(self, child: Child) -> None:
        """Reads the child's readiness pipe without blocking: a line once it serves."""
        if child.ready_pipe is None:
            return
        try:
            said = os.read(child.ready_pipe, 64)
        except BlockingIOError:
            return  # nothing yet
        os.close(child.ready_pipe)  # it says so once, or it exited (end of file)
        child.ready_pipe = None
        if said.startswith(b"ready"):
            if child.ready:  # the banner was printed long ago: one line for a restart
                log.info("role %s is ready again", child.spec.name)
            child.ready = True

    def _schedule_restart(self, child: Child, now: float) -> bool:
        assert child.process is not None
        code = child.process.returncode
        if now - child.started_at >= self.policy.stable_after_s:
            child.crashes = 0
        child.crashes += 1
        if child.crashes > self.policy.max_crashes:
            log.error(
                "role %s exited with code %s, %d times in a row within %.0f s of its start; "
                "giving up: stopping every role",
                child.spec.name,
                _describe(code),
                child.crashes,
                self.policy.stable_after_s,
            )
            return False
        delay = self.policy.delay(child.crashes)
        child.restarts += 1
        child.restart_at = now + delay
        log.warning(
            "role %s (pid %d) exited with code %s; restart %d in %.1f s",
            child.spec.name,
            child.process.pid,
            _describe(code),
            child.restarts,
            delay,
        )
        return True

    def _start(self, child: Child) -> None:
        if child.ready_pipe is not None:
            os.close(child.ready_pipe)
        # The child says "ready" on this pipe once it serves (services/server.py): it alone
        # knows, and a pipe needs no port, no polling of HTTP, and ends when the child does.
        child.ready_pipe, write_end = os.pipe()
        os.set_blocking(child.ready_pipe, False)
        try:
            child.process = subprocess.Popen(
                child.spec.argv,
                env={**child.spec.env, "FLOWLEDGER_READY_FD": str(write_end)},
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # the terminal's Ctrl-C is ours to pass on, once
                preexec_fn=_die_with_parent(),
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("started role %s (pid %d)", child.spec.name, child.process.pid)

    def _stop(self) -> int:
        """SIGTERM to every running child, then waits for them, killing those still running
        after `stop_timeout_s`. 0 when every child drained, 1 when one had to be killed."""
        running = [child for child in self.children if child.running]
        for child in running:
            _send(child, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "role %s did not stop within %.0f s; killing it",
                    child.spec.name,
                    self.stop_timeout_s,
                )
                self._killed = True
                _send(child, signal.SIGKILL)
                child.process.wait()
        log.info("every role stopped%s", " (some killed)" if self._killed else "")
        return 1 if self._killed else 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:  # a second signal: exit now, as one process would
            log.warning("second signal: killing every role without draining")
            self._killed = True
            for child in self.children:
                if child.running:
                    _send(child, signal.SIGKILL)


def _send(child: Child, sig: signal.Signals) -> None:
    assert child.process is not None
    with contextlib.suppress(ProcessLookupError):  # it exited in between: nothing to stop
        child.process.send_signal(sig)


def _describe(code: int | None) -> str:
    """`-9 (SIGKILL)` for a child killed by a signal, else the exit code."""
    if code is not None and code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return str(code)


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when the supervisor dies, however it
    dies; the child then drains as on any SIGTERM. libc is loaded here, before the fork: the
    hook itself only makes the one system call."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def child_specs(settings: Settings, bootstrap: str, environ: Mapping[str, str]) -> list[ChildSpec]:
    """One `flowledger serve --role R` per role, all against the one broker resolved here.

    The api child owns FLOWLEDGER_HTTP_PORT. With FLOWLEDGER_OPS_PORT=P the others serve their
    /healthz, /readyz and /metrics on P, P+1, ... in SUPERVISED_ROLES order (commands P, relay
    P+1, projections P+2, scheduler P+3): one port cannot be bound by four processes, and each
    process's /metrics counts only its own work. Without a dev token configured, one is chosen
    here, so a restarted api child keeps accepting the token the first one printed."""
    base = {**environ, "FLOWLEDGER_KAFKA_BOOTSTRAP": bootstrap, **pinned_keys(settings)}
    base.pop("FLOWLEDGER_OPS_PORT", None)
    argv = [sys.executable, "-m", "services.cli", "serve", "--supervised", "--role"]
    specs = []
    for index, role in enumerate(r for r in SUPERVISED_ROLES if r != "api"):
        env = dict(base)
        if settings.ops_port is not None:
            env["FLOWLEDGER_OPS_PORT"] = str(settings.ops_port + index)
        specs.append(ChildSpec(role, [*argv, role], env))
    api_env = dict(base)
    if not settings.is_deployment:
        # Development: stable across restarts of the api child. (A deployment configures both.)
        api_env["FLOWLEDGER_DEV_TOKEN"] = settings.dev_token or "dev-" + secrets.token_urlsafe(12)
        api_env["FLOWLEDGER_SDK_TOKEN_SECRET"] = settings.sdk_token_secret or secrets.token_hex(32)
    specs.append(ChildSpec("api", [*argv, "api"], api_env))
    return specs


def serve_supervised(settings: Settings) -> int:
    """`flowledger serve`: every role as a supervised child process; the exit code."""
    try:
        settings.check_api_role()  # once, before anything starts, rather than in a crash loop
    except UnsafeSettings as unsafe:
        print(f"flowledger serve: {unsafe}", file=sys.stderr)
        return 2
    if (refused := _refused_keys(settings)) is not None:
        print(f"flowledger serve: {refused}", file=sys.stderr)
        return 2
    bootstrap, release = settings.kafka_bootstrap or "", _nothing_to_release
    if not bootstrap:
        # Development only: resolved once here, or every child would start its own broker.
        from services.dev_provisioning.kafka import KafkaProvisioningError, resolve_bootstrap

        try:
            bootstrap, release = resolve_bootstrap(settings.state_dir / "kafka")
        except KafkaProvisioningError as error:
            print(f"flowledger serve: {error}", file=sys.stderr)
            return 1
    try:
        specs = child_specs(settings, bootstrap, os.environ)
        log.info(
            "supervising %d processes (%s); --single-process runs them in one",
            len(specs),
            ", ".join(spec.name for spec in specs),
        )
        return Supervisor(specs, on_all_ready=lambda: _banner(settings, bootstrap, specs)).run()
    finally:
        release()  # after every child stopped: a broker started here goes last


def _refused_keys(settings: Settings) -> str | None:
    """Why the store refuses the configured KEKs, checked once here: one error rather than
    every child's. A store that cannot be reached now is left to the children, which check
    at their own start and are restarted meanwhile."""
    from services.application.kek_checks import KeyEncryptionKeyMismatch
    from services.bootstrap import check_keys

    try:
        check_keys(settings)
    except KeyEncryptionKeyMismatch as refused:
        return str(refused)
    except Exception as error:
        log.warning("the key-encryption keys could not be checked yet (%s); each role will", error)
    return None


def pinned_keys(settings: Settings) -> dict[str, str]:
    """The key-encryption keys resolved here, for the children: when they are the dev key,
    this process warned once, and five children sharing its output need not warn again."""
    keks = ",".join(base64.b64encode(key).decode() for key in settings.keks())
    return {"FLOWLEDGER_KEY_ENCRYPTION_KEYS": keks}


def _banner(settings: Settings, bootstrap: str, specs: list[ChildSpec]) -> None:
    api = next(spec for spec in specs if spec.name == "api")
    dev_token = api.env.get("FLOWLEDGER_DEV_TOKEN")
    print_banner(settings, bootstrap, tuple(spec.name for spec in specs), dev_token)


def _nothing_to_release() -> None:
    """A broker Flowledger did not start is not Flowledger's to stop."""
