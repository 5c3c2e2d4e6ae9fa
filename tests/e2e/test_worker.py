"""Workflows that run: the worker (`flowledger worker`) beside the whole service, scheduler
included, over the real broker, on SQLite and PostgreSQL. Instances are created and moved over
real HTTP (the official `cloudflare` SDK for the example), and read back from the Cloudflare
view: nothing but the worker and the scheduler drives them.

Durations are short and real (a second or two); the only waits are deadlines for what must
happen, never assertions on how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from aiokafka.partitioner import DefaultPartitioner
from cloudflare import Cloudflare

from contracts.keys import instance_key
from services.bootstrap import Service, start_service
from services.worker.process import start_worker, stop_worker
from services.worker.runtime import WorkerRuntime
from tests.e2e import worker_flows
from tests.fixtures.deadline import DEADLINE_S
from tests.fixtures.processes import FLOWLEDGER, role_env, until
from tests.fixtures.service import TOKEN, make_settings

pytestmark = pytest.mark.kafka
T = TypeVar("T")
SCENARIOS = "tests.e2e.worker_flows:Scenarios"
TERMINAL = ("complete", "errored", "terminated")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Deployment:
    service: Service
    worker: WorkerRuntime | None
    http: httpx.AsyncClient
    base_url: str
    account: str
    workflow: str

    def path(self, instance: str = "") -> str:
        base = f"/client/v4/accounts/{self.account}/workflows/{self.workflow}/instances"
        return f"{base}/{instance}" if instance else base

    async def create(self, instance: str, params: Any) -> None:
        body = {"instance_id": instance, "params": params}
        response = await self.http.post(self.path(), json=body)
        assert response.status_code == 200, response.text

    async def get(self, instance: str) -> dict[str, Any]:
        response = await self.http.get(self.path(instance))
        assert response.status_code == 200, response.text
        return json.loads(response.content)["result"]  # type: ignore[no-any-return]

    async def status(self, instance: str, action: str, **extra: Any) -> dict[str, Any]:
        response = await self.http.patch(
            self.path(instance) + "/status", json={"status": action, **extra}
        )
        assert response.status_code == 200, response.text
        return json.loads(response.content)["result"]  # type: ignore[no-any-return]

    async def send_event(self, instance: str, event_type: str, payload: Any) -> None:
        response = await self.http.post(self.path(instance) + f"/events/{event_type}", json=payload)
        assert response.status_code == 200, response.text

    async def reaches(
        self,
        instance: str,
        condition: Callable[[dict[str, Any]], bool],
        what: str,
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while True:
            got = await self.get(instance)
            if condition(got):
                return got
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{instance} never {what}: {got}")
            await asyncio.sleep(0.2)

    async def ends(self, instance: str) -> dict[str, Any]:
        return await self.reaches(instance, lambda d: d["status"] in TERMINAL, "ended")


def _loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def deployment(
    store_url: str, kafka_bootstrap: str, target: str | None, workflow: str
) -> AsyncIterator[Deployment]:
    """Every role (the scheduler too) served over real HTTP, and one worker of `target` in
    this process (none without a target: the test starts its own)."""
    account = f"acc{uuid.uuid4().hex[:8]}"
    sock = _loopback()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(store_url, public_url=base_url)
    service = await start_service(settings, kafka_bootstrap)
    config = uvicorn.Config(service.api, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    worker = None
    try:
        if target is not None:
            worker = await start_worker(
                settings, kafka_bootstrap, target, workflow, [account], name="w1"
            )
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as http:
            yield Deployment(service, worker, http, base_url, account, workflow)
    finally:
        if worker is not None:
            await stop_worker(worker)
        server.should_exit = True
        await serving
        await service.stop()
        sock.close()


@pytest.fixture
async def scenarios(store_url: str, kafka_bootstrap: str) -> AsyncIterator[Deployment]:
    async with deployment(store_url, kafka_bootstrap, SCENARIOS, "scenarios") as deployed:
        yield deployed


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_the_example_created_through_the_cloudflare_sdk_runs_to_complete(
    store_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    async with deployment(
        store_url, kafka_bootstrap, "examples.checkout:Checkout", "checkout"
    ) as deployed:
        cf = Cloudflare(api_token=TOKEN, base_url=f"{deployed.base_url}/client/v4", max_retries=0)
        account, order = deployed.account, f"order-{uuid.uuid4().hex[:6]}"
        registered = await call(cf.workflows.get, "checkout", account_id=account)
        assert registered.class_name == "Checkout"  # the worker registered it
        params = {"order_id": "42", "amount": 1999, "items": 2}
        created = await call(
            cf.workflows.instances.create,
            "checkout",
            account_id=account,
            instance_id=order,
            params=params,  # type: ignore[arg-type]  # typed str in v5, sent as given
        )
        assert created.id == order

        await deployed.reaches(
            order, lambda d: d["status"] == "waiting" and len(d["steps"]) == 4, "waited"
        )
        await call(
            cf.workflows.instances.events.create,
            "approved",
            account_id=account,
            workflow_name="checkout",
            instance_id=order,
            body={"by": "ann"},
        )
        await deployed.ends(order)
        got = await call(
            cf.workflows.instances.get, order, account_id=account, workflow_name="checkout"
        )
        cf.close()

    assert got.status == "complete", got
    output = json.loads(got.output) if isinstance(got.output, str) else got.output
    assert output == {
        "order_id": "42",
        "stock": {"reserved": 2, "warehouse": "north"},
        "payment": {"charged": 1999, "attempt": 2},
        "approved_by": "ann",
        "shipment": {"shipped_from": "north", "tracking": f"TRK-{order}"},
    }
    steps = [step.to_dict() for step in got.steps]
    assert [(s["type"], s["name"]) for s in steps] == [
        ("step", "reserve stock"),
        ("step", "charge card"),
        ("sleep", "fraud window"),
        ("waitForEvent", "shipping approval"),
        ("step", "ship"),
    ]
    charge = steps[1]
    assert [a["success"] for a in charge["attempts"]] == [False, True]
    assert json.loads(charge["output"]) == {"charged": 1999, "attempt": 2}


async def test_retries_non_retryable_errors_sleeps_and_waits_behave(
    scenarios: Deployment,
) -> None:
    d = scenarios
    ids = {kind: f"{kind}-{uuid.uuid4().hex[:6]}" for kind in ("flaky", "fatal", "sleep")}
    for kind, instance in ids.items():
        await d.create(instance, {"scenario": kind})
    waited, timed_out = f"wait-{uuid.uuid4().hex[:6]}", f"late-{uuid.uuid4().hex[:6]}"
    await d.create(waited, {"scenario": "wait", "timeout": "1 hour"})
    await d.create(timed_out, {"scenario": "wait", "timeout": "1 second"})

    await d.reaches(waited, lambda doc: doc["status"] == "waiting", "waited for its event")
    await d.send_event(waited, "approved", {"by": "ann"})

    flaky = await d.ends(ids["flaky"])
    assert flaky["status"] == "complete" and json.loads(flaky["output"]) == {"attempt": 3}
    attempts = flaky["steps"][0]["attempts"]
    assert [a["success"] for a in attempts] == [False, False, True]
    assert attempts[0]["error"]["name"] == "ConnectionError"
    assert worker_flows.RUNS[(ids["flaky"], "flaky")] == 3

    fatal = await d.ends(ids["fatal"])
    assert fatal["status"] == "errored"
    assert fatal["error"] == {
        "name": "NonRetryableError",
        "message": "the card was declined for good",
    }
    assert len(fatal["steps"][0]["attempts"]) == 1
    assert worker_flows.RUNS[(ids["fatal"], "fatal")] == 1

    slept = await d.ends(ids["sleep"])
    assert slept["status"] == "complete" and json.loads(slept["output"]) == "rested"
    assert slept["steps"][0]["type"] == "sleep" and slept["steps"][0]["finished"] is True

    got = await d.ends(waited)
    assert json.loads(got["output"]) == {"by": "ann", "type": "approved"}
    late = await d.ends(timed_out)
    assert json.loads(late["output"]) == {"timed_out": "WaitTimeoutError"}


async def test_pause_resume_terminate_and_restart_act_on_running_workflows(
    scenarios: Deployment,
) -> None:
    d = scenarios
    paused, doomed = f"pause-{uuid.uuid4().hex[:6]}", f"term-{uuid.uuid4().hex[:6]}"
    long = {"scenario": "long", "count": 4, "seconds": 0.5}
    await d.create(paused, long)

    def ran(instance: str, count: int) -> Callable[[dict[str, Any]], bool]:
        return lambda doc: sum(1 for s in doc["steps"] if s.get("success")) >= count

    await d.reaches(paused, ran(paused, 1), "ran its first step")
    await d.status(paused, "pause")
    at_pause = await d.reaches(paused, lambda doc: doc["status"] == "paused", "paused")
    done_at_pause = len(at_pause["steps"])
    # Paused at a step boundary: no attempt left running. (The pause may land after a step
    # began and before its first attempt: the worker acknowledges it there, the step open.)
    assert all(a.get("end") for s in at_pause["steps"] for a in s.get("attempts") or [])
    await asyncio.sleep(1.5)  # nothing moves while paused
    assert len((await d.get(paused))["steps"]) == done_at_pause
    await d.status(paused, "resume")
    resumed = await d.ends(paused)
    assert resumed["status"] == "complete" and json.loads(resumed["output"]) == [0, 1, 2, 3]

    await d.create(doomed, long)
    await d.reaches(doomed, ran(doomed, 1), "ran its first step")
    await d.status(doomed, "terminate")
    ended = await d.ends(doomed)
    assert ended["status"] == "terminated"
    await asyncio.sleep(1.5)
    steps_after = len((await d.get(doomed))["steps"])
    assert steps_after < 4 and steps_after == len(ended["steps"])

    # Restart from the third step: the two before it are replayed, not run again.
    runs_before = dict(worker_flows.RUNS)
    await d.status(paused, "restart", **{"from": {"name": "part 2"}})
    last = (paused, "part 3")
    await until(lambda: worker_flows.RUNS[last] > runs_before[last], "no second run", DEADLINE_S)
    again = await d.ends(paused)
    assert again["status"] == "complete"
    assert json.loads(again["output"]) == [0, 1, 2, 3]
    for part in ("part 0", "part 1"):
        assert worker_flows.RUNS[(paused, part)] == runs_before[(paused, part)]
    for part in ("part 2", "part 3"):
        assert worker_flows.RUNS[(paused, part)] == runs_before[(paused, part)] + 1


def _spread_over_partitions(d: Deployment, count: int) -> list[str]:
    """Instance ids whose keys land on every partition of the events topic (as Kafka's default
    partitioner places them), so that whichever partitions the second worker is given, it
    has instances to run: six random ids all missed its share about one run in ten."""
    partitions = list(range(d.service.settings.partitions))
    chosen: dict[int, list[str]] = {p: [] for p in partitions}
    while sum(map(len, chosen.values())) < count:
        instance = f"shared-{uuid.uuid4().hex[:6]}"
        key = instance_key(d.account, d.workflow, instance).encode()
        partition = DefaultPartitioner()(key, partitions, partitions)
        if len(chosen[partition]) < -(-count // len(partitions)):
            chosen[partition].append(instance)
    return [i for ids in chosen.values() for i in ids]


async def test_two_workers_share_instances_and_never_run_one_at_once(
    scenarios: Deployment, kafka_bootstrap: str
) -> None:
    d = scenarios
    ids = _spread_over_partitions(d, 6)
    for instance in ids:
        await d.create(instance, {"scenario": "long", "count": 6, "seconds": 1})
    await until(lambda: any(t[0] in ids for t in worker_flows.TRACE), "no step ran", DEADLINE_S)
    # A second worker joins the group: the first hands over the partitions it loses at a
    # step boundary, and the second carries on from the recorded history.
    second = await start_worker(
        d.service.settings, kafka_bootstrap, SCENARIOS, d.workflow, [d.account], name="w2"
    )
    try:
        for instance in ids:
            got = await d.ends(instance)
            assert got["status"] == "complete" and json.loads(got["output"]) == list(range(6))
    finally:
        await stop_worker(second)

    trace = [t for t in worker_flows.TRACE if t[0] in ids]
    assert {t[2] for t in trace} == {"w1", "w2"}  # both worked
    for instance in ids:
        runs = sorted((t for t in trace if t[0] == instance), key=lambda t: t[3])
        assert [t[1] for t in runs] == [f"part {n}" for n in range(6)]  # each step ran once
        for before, after in zip(runs, runs[1:], strict=False):
            assert before[4] <= after[3], f"{instance} ran on two workers at once: {runs}"


BLOCK_S = 15.0  # how long a step blocks its thread
OTHERS_WITHIN_S = 10.0  # the acceptance bound for another instance's step meanwhile


async def test_a_step_that_blocks_does_not_hold_up_the_workers_other_instances(
    scenarios: Deployment,
) -> None:
    """A sync step sleeping and an async step calling time.sleep, 15 s each: another instance
    of the same worker runs a step and completes within 10 s meanwhile."""
    d = scenarios
    blockers = {how: f"block-{how}-{uuid.uuid4().hex[:6]}" for how in ("sync", "async")}
    for how, instance in blockers.items():
        await d.create(instance, {"scenario": "block", "how": how, "seconds": BLOCK_S})
    await until(
        lambda: all(worker_flows.RUNS[(b, "block")] for b in blockers.values()),
        "the blocking steps never began",
        DEADLINE_S,
    )
    quick = f"quick-{uuid.uuid4().hex[:6]}"
    began = asyncio.get_running_loop().time()
    await d.create(quick, {"scenario": "quick"})
    got = await d.ends(quick)
    took = asyncio.get_running_loop().time() - began
    assert got["status"] == "complete" and json.loads(got["output"]) == "done"
    assert took < OTHERS_WITHIN_S, f"another instance waited {took:.1f} s for the blocked ones"
    for instance in blockers.values():
        assert (await d.get(instance))["status"] not in TERMINAL  # still inside its step
    for how, instance in blockers.items():
        ended = await d.ends(instance)
        assert ended["status"] == "complete" and json.loads(ended["output"]) == how


async def test_a_run_that_spins_is_reported_and_its_wake_up_failed_then_retried(
    scenarios: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    d = scenarios
    assert d.worker is not None
    spinner = f"spin-{uuid.uuid4().hex[:6]}"
    blocked_before = d.worker.metrics.blocked.labels(d.workflow)._value.get()
    with caplog.at_level(logging.WARNING, logger="flowledger.worker"):
        await d.create(spinner, {"scenario": "spin", "seconds": 60})
        got = await d.ends(spinner)
    # Not errored for it: the wake-up after the back-off ran it again, and it did not spin.
    assert got["status"] == "complete" and json.loads(got["output"]) == 2
    assert worker_flows.RUNS[(spinner, "spin")] == 2
    failed = [o for key, o in d.worker.outcomes if key.endswith(f"/{spinner}")]
    assert [o.kind for o in failed][:1] == ["error"]
    assert failed[0].detail.startswith("BlockedWakeError: run() did not give its event loop")
    assert d.worker.metrics.blocked.labels(d.workflow)._value.get() == blocked_before + 1
    reported = [r.getMessage() for r in caplog.records if spinner in r.getMessage()]
    assert any("wake-up failed" in line and "BlockedWakeError" in line for line in reported)


WORKER_READY = "Flowledger worker is running"


async def test_a_worker_killed_mid_step_loses_nothing(
    store_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """kill -9 of the worker process inside a step: the next worker of the group takes the
    attempt over; every step's output is recorded once, each step's code runs at most twice."""
    async with deployment(store_url, kafka_bootstrap, None, "scenarios") as d:
        env = role_env(d.service.settings, kafka_bootstrap)
        command = [str(FLOWLEDGER), "worker", SCENARIOS, "--workflow", d.workflow]
        command += ["--account", d.account]
        first = _Process(command, env, tmp_path / "worker-1.log")
        second = _Process(command, env, tmp_path / "worker-2.log")
        try:
            first.start()
            await first.ready()
            instance = f"killed-{uuid.uuid4().hex[:6]}"
            marks = tmp_path / "marks"
            marks.mkdir()
            await d.create(
                instance, {"scenario": "long", "count": 3, "seconds": 2, "marks": str(marks)}
            )
            ran = marks / instance
            await until(
                lambda: ran.exists() and "part 1" in ran.read_text(),
                f"the second step never began:\n{first.output()[-3000:]}",
                DEADLINE_S,
            )
            first.kill9()  # in the middle of "part 1"
            second.start()
            await second.ready()
            got = await d.ends(instance)
        finally:
            first.stop()
            second.stop()
    assert got["status"] == "complete", second.output()[-3000:]
    assert json.loads(got["output"]) == [0, 1, 2]
    lines = ran.read_text().split()
    counts = {f"part {n}": ran.read_text().count(f"part {n}\n") for n in range(3)}
    # Killed inside "part 1": its code ran again on the next owner, which took the attempt
    # in flight over (one attempt recorded, not a timed-out one and a retry).
    assert (counts["part 0"], counts["part 1"], counts["part 2"]) == (1, 2, 1), lines
    steps = got["steps"]
    assert [(s["name"], s["success"]) for s in steps] == [
        ("part 0", True),
        ("part 1", True),
        ("part 2", True),
    ]
    assert [json.loads(s["output"]) for s in steps] == [0, 1, 2]  # each recorded once
    assert [len(s["attempts"]) for s in steps] == [1, 1, 1]


@dataclass
class _Process:
    command: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=ROOT,  # MODULE:CLASS is imported from the current directory
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def ready(self) -> None:
        def alive() -> None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the worker exited:\n{self.output()[-3000:]}")

        await until(
            lambda: WORKER_READY in self.output(),
            f"the worker did not start:\n{self.output()[-3000:]}",
            DEADLINE_S,
            check=alive,
        )

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
