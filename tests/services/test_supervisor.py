"""`flowledger serve` supervises one child process per role (services/supervisor.py).

The loop's tests run a real supervisor process over tiny `python -c` children standing in for
roles, and read what it did from its log; the last test runs the real `flowledger serve` over
the real broker. Deadlines only bound the waiting; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import ROLES
from services.supervisor import SUPERVISED_ROLES, ChildSpec, RestartPolicy, Supervisor, child_specs
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import FLOWLEDGER, free_port, role_env
from tests.fixtures.service import TOKEN, make_settings

REPO = Path(__file__).resolve().parents[2]
STARTED = re.compile(r"started role (\w+) \(pid (\d+)\)")

# A role that drains on SIGTERM (exits 0), one that ignores it, and one that crashes at once.
DRAINS = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "while True: time.sleep(1)"
)
IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('deaf to SIGTERM', flush=True)\n"
    "while True: time.sleep(1)"
)
CRASHES = "import sys; sys.exit(3)"
# Says ready on the supervisor's pipe (as `flowledger serve` does) once the file argv names exists.
READY_WHEN = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "while not os.path.exists({path!r}): time.sleep(0.05)\n"
    "os.write(int(os.environ['FLOWLEDGER_READY_FD']), b'ready\\n')\n"
    "while True: time.sleep(1)"
)

# The supervisor under test, as its own process: signals and exit codes are real.
DRIVER = """
import json, logging, os, sys
from services.supervisor import ChildSpec, RestartPolicy, Supervisor
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
config = json.loads(sys.argv[1])
specs = [
    ChildSpec(name, [sys.executable, "-c", code], dict(os.environ))
    for name, code in config["children"].items()
]
policy = RestartPolicy(**config["policy"])
announce = lambda: print("EVERY ROLE READY", flush=True)
supervisor = Supervisor(specs, policy, config["stop_timeout_s"], on_all_ready=announce)
raise SystemExit(supervisor.run())
"""
QUICK: dict[str, Any] = {
    "first_delay_s": 0.05,
    "max_delay_s": 0.2,
    "stable_after_s": 60.0,
    "max_crashes": 3,
}


class Supervised:
    """A supervisor process and its log (stdout and stderr together)."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def starts(self, role: str) -> list[int]:
        """The pids `role` was started with, in order."""
        return [int(pid) for name, pid in STARTED.findall(self.output()) if name == role]

    def wait_until(self, condition: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"supervisor exited {self.proc.returncode} before {what}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what}:\n{self.output()}")
            time.sleep(0.05)

    def exit_code(self) -> int:
        try:
            return self.proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"supervisor did not exit:\n{self.output()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its children get SIGTERM from the kernel (PDEATHSIG)
            self.proc.wait()


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def run(children: dict[str, str], stop_timeout_s: float = 30.0, **policy: float) -> Supervised:
        config = {"children": children, "policy": QUICK | policy, "stop_timeout_s": stop_timeout_s}
        argv = [sys.executable, "-c", DRIVER, json.dumps(config)]
        started.append(Supervised(argv, tmp_path / f"supervisor-{len(started)}.log"))
        return started[-1]

    yield run
    for supervisor in started:
        supervisor.stop()


def gone(pid: int) -> bool:
    """The process no longer exists (exited and reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie has exited: only its parent has yet to reap it
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except FileNotFoundError:
        return True


def wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if not gone(p)]}"
        time.sleep(0.05)


def test_a_child_killed_with_sigkill_is_restarted_and_logged(
    supervise: Callable[..., Supervised],
) -> None:
    supervisor = supervise({"relay": DRAINS, "projections": DRAINS})
    supervisor.wait_until(
        lambda: supervisor.starts("relay") and supervisor.starts("projections"), "starts"
    )
    [first] = supervisor.starts("projections")
    os.kill(first, signal.SIGKILL)

    supervisor.wait_until(lambda: len(supervisor.starts("projections")) == 2, "restart")
    assert f"role projections (pid {first}) exited with code -9 (SIGKILL); restart 1 in" in (
        supervisor.output()
    )
    second = supervisor.starts("projections")[-1]
    assert second != first and not gone(second)
    assert len(supervisor.starts("relay")) == 1  # the others are left alone

    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.exit_code() == 0


def test_the_banner_waits_for_every_child_and_is_printed_once(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.touch()
    supervisor = supervise(
        {"relay": READY_WHEN.format(path=str(fast)), "api": READY_WHEN.format(path=str(slow))}
    )
    supervisor.wait_until(lambda: supervisor.starts("relay") and supervisor.starts("api"), "starts")
    [relay] = supervisor.starts("relay")
    os.kill(relay, signal.SIGKILL)  # ready, killed, restarted: still no banner without the api
    supervisor.wait_until(lambda: len(supervisor.starts("relay")) == 2, "the relay's restart")
    assert "EVERY ROLE READY" not in supervisor.output()

    slow.touch()
    supervisor.wait_until(lambda: "EVERY ROLE READY" in supervisor.output(), "the banner")
    os.kill(supervisor.starts("relay")[-1], signal.SIGKILL)
    supervisor.wait_until(lambda: "role relay is ready again" in supervisor.output(), "again")
    assert supervisor.output().count("EVERY ROLE READY") == 1

    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.exit_code() == 0


def test_sigterm_to_the_supervisor_drains_every_child_and_exits_0(
    supervise: Callable[..., Supervised],
) -> None:
    roles = {role: DRAINS for role in SUPERVISED_ROLES}
    supervisor = supervise(roles)
    supervisor.wait_until(lambda: all(supervisor.starts(r) for r in roles), "every start")
    pids = [supervisor.starts(role)[0] for role in roles]

    supervisor.proc.send_signal(signal.SIGTERM)

    assert supervisor.exit_code() == 0
    wait_gone(pids)
    assert "exited with code" not in supervisor.output()  # a requested stop is no crash


def test_a_child_that_does_not_drain_in_time_is_killed_and_the_exit_is_1(
    supervise: Callable[..., Supervised],
) -> None:
    supervisor = supervise({"api": DRAINS, "commands": IGNORES_SIGTERM}, stop_timeout_s=0.5)
    supervisor.wait_until(
        lambda: supervisor.starts("api") and supervisor.starts("commands"), "starts"
    )
    supervisor.wait_until(lambda: "deaf to SIGTERM" in supervisor.output(), "the handler set")
    pids = [supervisor.starts("api")[0], supervisor.starts("commands")[0]]

    supervisor.proc.send_signal(signal.SIGTERM)

    assert supervisor.exit_code() == 1
    assert "role commands did not stop within" in supervisor.output()
    wait_gone(pids)


def test_a_child_crashing_at_once_repeatedly_makes_the_supervisor_give_up(
    supervise: Callable[..., Supervised],
) -> None:
    supervisor = supervise({"relay": DRAINS, "commands": CRASHES}, max_crashes=3)

    assert supervisor.exit_code() == 1
    output = supervisor.output()
    for restart in (1, 2, 3):
        assert re.search(
            rf"role commands \(pid \d+\) exited with code 3; restart {restart} in", output
        )
    assert "role commands exited with code 3, 4 times in a row" in output
    assert "giving up" in output
    wait_gone(supervisor.starts("relay"))  # the healthy roles are stopped with it


def test_killing_the_supervisor_leaves_no_child_behind(
    supervise: Callable[..., Supervised],
) -> None:
    supervisor = supervise({"relay": DRAINS, "api": DRAINS})
    supervisor.wait_until(lambda: supervisor.starts("relay") and supervisor.starts("api"), "starts")
    pids = [supervisor.starts("relay")[0], supervisor.starts("api")[0]]

    supervisor.proc.kill()
    supervisor.proc.wait()

    wait_gone(pids)  # SIGTERMed by the kernel when their parent died


def test_a_role_that_cannot_be_started_fails_the_supervisor_and_stops_the_rest() -> None:
    sleeper = ChildSpec("relay", [sys.executable, "-c", DRAINS], dict(os.environ))
    missing = ChildSpec("api", [str(REPO / "no-such-program")], dict(os.environ))
    supervisor = Supervisor([sleeper, missing], RestartPolicy(**QUICK))

    assert supervisor.run() == 1
    process = supervisor.children[0].process
    assert process is not None and process.poll() is not None


def test_the_back_off_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_delay_s=0.5, max_delay_s=4.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_one_child_per_role_the_api_owns_http_and_the_others_get_distinct_ops_ports() -> None:
    settings = make_settings("sqlite:///x.db", ops_port=9464)
    specs = {spec.name: spec for spec in child_specs(settings, "broker:9092", {"PATH": "/bin"})}

    assert set(specs) == set(SUPERVISED_ROLES) == set(ROLES)
    for name, spec in specs.items():
        assert spec.argv[-3:] == ["--supervised", "--role", name]
        assert spec.env["FLOWLEDGER_KAFKA_BOOTSTRAP"] == "broker:9092"
    ops = {name: spec.env.get("FLOWLEDGER_OPS_PORT") for name, spec in specs.items()}
    assert ops == {
        "commands": "9464",
        "relay": "9465",
        "projections": "9466",
        "scheduler": "9467",
        "api": None,
    }


def test_without_tokens_the_api_child_gets_one_dev_token_for_all_its_restarts() -> None:
    settings = make_settings("sqlite:///x.db", api_tokens="", sdk_token_secret="")
    [api] = [s for s in child_specs(settings, "broker:9092", {}) if s.name == "api"]
    assert api.env["FLOWLEDGER_DEV_TOKEN"].startswith("dev-")
    assert len(api.env["FLOWLEDGER_SDK_TOKEN_SECRET"]) >= 32
    # A deployment configures its own tokens and secret; nothing is added.
    deployed = make_settings("sqlite:///x.db")
    [api] = [s for s in child_specs(deployed, "broker:9092", {}) if s.name == "api"]
    assert "FLOWLEDGER_DEV_TOKEN" not in api.env


V4 = "/client/v4/accounts"


@pytest.mark.kafka
async def test_flowledger_serve_restarts_a_killed_role_and_drains_on_sigterm(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # As `make run` serves: no tokens configured, so the api takes the dev token (fixed here,
    # where the supervisor would choose one) and development defaults for the secrets.
    settings = make_settings(
        f"sqlite:///{tmp_path / 'store.db'}", api_tokens="", sdk_token_secret=""
    )
    port = free_port()
    env = role_env(
        settings,
        kafka_bootstrap,
        FLOWLEDGER_DEV_TOKEN=TOKEN,
        FLOWLEDGER_HTTP_PORT=str(port),
        FLOWLEDGER_STATE_DIR=str(tmp_path / "state"),
    )
    serve = Supervised([str(FLOWLEDGER), "serve"], tmp_path / "serve.log", env)
    account, workflow = f"acc{uuid.uuid4().hex[:8]}", "orders"
    base = f"{V4}/{account}/workflows/{workflow}/instances"
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        ) as http:
            await until_ok(serve, lambda: http.get("/readyz"), "the api ready")
            await until_ok(
                serve,
                lambda: http.put(
                    f"{V4}/{account}/workflows/{workflow}", json={"class_name": "Demo"}
                ),
                "the workflow registered",
            )
            await create_and_read(serve, http, base, "first")
            pids = {role: serve.starts(role)[-1] for role in SUPERVISED_ROLES}

            os.kill(pids["projections"], signal.SIGKILL)
            await asyncio.to_thread(
                serve.wait_until, lambda: len(serve.starts("projections")) == 2, "a restart"
            )
            assert re.search(
                r"role projections \(pid \d+\) exited with code -9 \(SIGKILL\); "
                r"restart 1 in",
                serve.output(),
            )
            # Read back only once the new projections child folded it: the restart works.
            await create_and_read(serve, http, base, "second")
            await asyncio.to_thread(
                serve.wait_until, lambda: "projections is ready again" in serve.output(), "ready"
            )
            # One banner, once every role served; no child printed its own.
            assert serve.output().count("Flowledger is running") == 1, serve.output()[-3000:]

        children = [pid for role in SUPERVISED_ROLES for pid in serve.starts(role)]
        serve.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(serve.exit_code) == 0, serve.output()[-3000:]
        await asyncio.to_thread(wait_gone, children)
    finally:
        serve.stop()


async def until_ok(
    serve: Supervised, request: Callable[[], Awaitable[httpx.Response]], what: str
) -> httpx.Response:
    """Repeats `request` until it answers 200; a deadline, not a timing assertion."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while True:
        if serve.proc.poll() is not None:
            raise AssertionError(f"serve exited {serve.proc.returncode}:\n{serve.output()[-3000:]}")
        try:
            response = await request()
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not {what}:\n{serve.output()[-3000:]}")
        await asyncio.sleep(0.2)


async def create_and_read(
    serve: Supervised, http: httpx.AsyncClient, base: str, instance_id: str
) -> None:
    created = await http.post(base, json={"instance_id": instance_id, "params": {"n": 1}})
    assert created.status_code in (200, 202), created.text  # 202: answered, not yet projected
    got = await until_ok(serve, lambda: http.get(f"{base}/{instance_id}"), f"{instance_id} read")
    assert got.json()["result"]["params"] == {"n": 1}
