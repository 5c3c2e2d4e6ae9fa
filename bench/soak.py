"""`make soak` / `python -m bench.soak`: the service's memory over a few hundred thousand commands.

Starts its own Kafka broker (bench/infra.py) and a fresh event store, runs the all-in-one
service (`python -m services.cli serve`, every role) as a child process, so that the RSS
measured is the service's alone, then publishes SOAK_COMMANDS commands in waves. Each wave is
published at once; the next starts when every command of the wave has its reply and the
projection lag is 0 (and 20 instances of the wave answer 200 over HTTP). The service's RSS is
sampled after the warm-up, after every wave, then while it idles, and the table, the figures
(first, peak, last, idle, and the slope over the second half of the run in MiB per 100k
commands) and the JSON results file `bench/results/soak-<UTC timestamp>.json` (git-ignored,
like the bench's) say whether memory stays flat.

The mix, per wave: CreateInstance for fresh instances (three in four with a chosen instance_id,
one in four with a minted one, keyed by its command_id), and, for every SOAK_RUN_EVERY-th
instance created, one command per wave of its run over the 8 waves that follow its creation:
StartRun, BeginStep, BeginAttempt, EndAttempt, ChangeStatus pause, ChangeStatus resume, EndStep,
CompleteRun. In steady state a wave is 1/3 creates and 2/3 progress on existing instances
(SOAK_RUN_EVERY=4). Every command has its own command_id and the Kafka key
`contracts.keys.raw_command_key` gives it.

Environment:

- SOAK_COMMANDS (default 300000): commands published in all, the warm-up not counted.
- SOAK_WAVE (6000): commands per wave in steady state (the first 8 waves ramp up).
- SOAK_RUN_EVERY (4): every n-th instance created also runs (8 more commands).
- SOAK_IDLE_S (30): idle time after the last wave, sampled every 5 s.
- SOAK_STORE (sqlite): or `postgresql` (a local durable cluster, or
  FLOWLEDGER_TEST_POSTGRES_DSN as for the bench).
- SOAK_WAVE_TIMEOUT_S (600): a wave not replied and projected by then fails the run.
- SOAK_TRACEMALLOC (0): 1 serves through `bench.soak_serve` (tracemalloc on from the start) and
  reports the allocation sites, by file:line, that grew over the second half of the run and
  since the warm-up (snapshots after the warm-up, at half the commands, after the idle time).
  Tracing slows the service several times over: use fewer commands (e.g. 120000).
- SOAK_TRACEMALLOC_FRAMES (1): frames kept per traced allocation; more (e.g. 8) add the call
  stacks of the top growing sites to the report, and slow the service further (~10x at 8).
- FLOWLEDGER_*: passed through to the service (e.g. FLOWLEDGER_AGGREGATE_CACHE_SIZE).

RSS is read with psutil when installed, else from /proc/<pid>/status (VmRSS; VmHWM is the
kernel's own peak). Exit status 1 when the service died, a wave timed out or a command was
rejected; the service's log is then kept in the temporary directory named.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from bench import report
from bench.infra import kafka_broker, postgres_server, store_url
from bench.load import ACCOUNT, WORKFLOW, Command, Probe, _publish_all, _started, probe, producer
from bench.service import (
    BANNER,
    REPO,
    STARTUP_TIMEOUT_S,
    TOKEN,
    Deployment,
    Member,
    _die_with_parent,
)
from contracts.keys import minted_instance_id
from contracts.keys import raw_command_key as command_key
from contracts.topics import Topics
from services.infra.kafka_topics import ensure_topics
from services.settings import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WARM_UP_COMMANDS = 200
LINGER_MS = 5
READ_SAMPLE = 20
IDLE_SAMPLE_S = 5.0
SNAPSHOT_TIMEOUT_S = 300.0
MIB = 2**20

# The run of every SOAK_RUN_EVERY-th instance, one command per wave after its creation.
RUN_SCRIPT: tuple[dict[str, Any], ...] = (
    {"type": "StartRun"},
    {"type": "BeginStep", "name": "charge", "step_type": "step"},
    {"type": "BeginAttempt", "name": "charge"},
    {"type": "EndAttempt", "name": "charge", "success": True, "output": {"charged": 42}},
    {"type": "ChangeStatus", "action": "pause"},
    {"type": "ChangeStatus", "action": "resume"},
    {"type": "EndStep", "name": "charge", "success": True, "output": {"charged": 42}},
    {"type": "CompleteRun", "output": {"ok": True}, "outcome": "approved"},
)


@dataclass(frozen=True)
class Plan:
    commands: int
    wave: int
    run_every: int
    idle_s: float
    store: str
    wave_timeout_s: float
    tracemalloc: bool
    tracemalloc_frames: int
    partitions: int

    @classmethod
    def from_env(cls) -> Plan:
        env = os.environ.get
        store = env("SOAK_STORE", "sqlite")
        if store not in ("sqlite", "postgresql"):
            raise SystemExit(f"SOAK_STORE must be sqlite or postgresql, not {store!r}")
        return cls(
            commands=int(env("SOAK_COMMANDS", "300000")),
            wave=max(10, int(env("SOAK_WAVE", "6000"))),
            run_every=max(1, int(env("SOAK_RUN_EVERY", "4"))),
            idle_s=float(env("SOAK_IDLE_S", "30")),
            store=store,
            wave_timeout_s=float(env("SOAK_WAVE_TIMEOUT_S", "600")),
            tracemalloc=env("SOAK_TRACEMALLOC", "") not in ("", "0"),
            tracemalloc_frames=int(env("SOAK_TRACEMALLOC_FRAMES", "1")),
            partitions=Settings().partitions,
        )

    @property
    def creates_per_wave(self) -> int:
        """Steady state: creates + (creates / run_every) * len(RUN_SCRIPT) = wave."""
        return max(1, round(self.wave / (1 + len(RUN_SCRIPT) / self.run_every)))


def say(message: str) -> None:
    print(f"soak: {message}", flush=True)


# --- the commands ------------------------------------------------------------------------


def _command(body: dict[str, Any], counts: dict[str, int]) -> Command:
    body = {
        "command_id": str(uuid.uuid4()),
        "account_id": ACCOUNT,
        "workflow_name": WORKFLOW,
        **body,
    }
    instance_id = str(body.get("instance_id") or minted_instance_id(body["command_id"]))
    counts[body["type"]] = counts.get(body["type"], 0) + 1
    return Command(
        body["command_id"], instance_id, command_key(body).encode(), msgspec.json.encode(body)
    )


@dataclass
class Mix:
    """Generates the waves: fresh creates, and the runs of earlier instances, one step a wave."""

    plan: Plan
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    created: int = 0
    running: deque[tuple[str, int]] = field(default_factory=deque)  # (instance id, next step)
    counts: dict[str, int] = field(default_factory=dict)

    def wave(self, limit: int) -> list[Command]:
        commands: list[Command] = []
        for _ in range(len(self.running)):
            if len(commands) >= limit:
                break
            instance_id, step = self.running.popleft()
            body = {**RUN_SCRIPT[step], "instance_id": instance_id}
            commands.append(_command(body, self.counts))
            if step + 1 < len(RUN_SCRIPT):
                self.running.append((instance_id, step + 1))
        fresh: list[tuple[str, int]] = []
        for _ in range(min(self.plan.creates_per_wave, limit - len(commands))):
            n = self.created
            self.created += 1
            runs = n % self.plan.run_every == 0
            body: dict[str, Any] = {"type": "CreateInstance", "params": {"order": n, "amount": 42}}
            if runs or n % 2:  # a run needs its id up front; one in 4 creates gets a minted one
                body["instance_id"] = f"soak-{self.tag}-{n}"
            command = _command(body, self.counts)
            commands.append(command)
            if runs:
                fresh.append((command.instance_id, 0))
        self.running.extend(fresh)  # they start with the next wave, once created
        return commands


# --- the service process and its memory ----------------------------------------------------


def rss_bytes(pid: int) -> dict[str, int]:
    """RSS (psutil if installed, else /proc), with the kernel's peak, threads and open fds."""
    figures: dict[str, int] = {}
    status = Path(f"/proc/{pid}/status")
    with contextlib.suppress(OSError):
        for line in status.read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(value.split()[0]) * 1024
            elif name == "Threads":
                figures["threads"] = int(value)
    with contextlib.suppress(OSError):
        figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    try:
        import psutil  # type: ignore[import-untyped]

        figures["rss"] = int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        figures["rss"] = figures.get("VmRSS", 0)
    return figures


async def launch(
    deployment: Deployment, store: str, bootstrap: str, run_dir: Path, trace_dir: Path | None
) -> None:
    """The all-in-one service, as bench.service.start runs it (the same environment), through
    bench.soak_serve when tracing."""
    env = {
        **os.environ,
        "FLOWLEDGER_KAFKA_BOOTSTRAP": bootstrap,
        "FLOWLEDGER_STORE": store,
        "FLOWLEDGER_TOPIC_PREFIX": deployment.prefix,
        "FLOWLEDGER_API_TOKENS": f"{TOKEN}=*",
        # Configured tokens make a deployment, which needs its sdk-token secret.
        "FLOWLEDGER_SDK_TOKEN_SECRET": os.environ.get("FLOWLEDGER_SDK_TOKEN_SECRET")
        or secrets.token_hex(32),
        "FLOWLEDGER_KEY_ENCRYPTION_KEYS": base64.b64encode(os.urandom(32)).decode(),
        "FLOWLEDGER_HTTP_PORT": str(deployment.port),
        "FLOWLEDGER_HTTP_HOST": "127.0.0.1",
        "FLOWLEDGER_STATE_DIR": str(run_dir / "state"),
        "PYTHONUNBUFFERED": "1",
    }
    if trace_dir is not None:
        env["SOAK_TRACEMALLOC_DIR"] = str(trace_dir)
        command = [sys.executable, "-m", "bench.soak_serve"]
    else:
        # One process (not the supervisor and its children): its RSS is the whole service's.
        command = [sys.executable, "-m", "services.cli", "serve", "--single-process"]
    log = run_dir / f"{deployment.prefix}-service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    deployment.members.append(Member("all", process, log))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while BANNER not in log.read_text(errors="replace"):
        deployment.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not start: {deployment.api.log_tail()}")
        await asyncio.sleep(0.1)


async def snapshot(deployment: Deployment, trace_dir: Path, n: int) -> dict[str, Any]:
    """Asks bench.soak_serve for its n-th tracemalloc snapshot and reads what it wrote."""
    path = trace_dir / f"snapshot-{n}.json"
    deployment.api.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
    while not path.exists():
        deployment.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no tracemalloc snapshot {n} in {SNAPSHOT_TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.2)
    result: dict[str, Any] = json.loads(path.read_text())
    return result


# --- the run ----------------------------------------------------------------------------


@dataclass
class Sample:
    phase: str  # warm-up, wave, idle
    commands: int
    rss_mib: float
    hwm_mib: float | None
    threads: int | None
    fds: int | None
    seconds: float = 0.0  # the wave's, publish to projected
    per_s: float = 0.0
    at_s: float = 0.0  # since the first sample


def take(pid: int, phase: str, commands: int, t0: float, seconds: float = 0.0) -> Sample:
    raw = rss_bytes(pid)
    return Sample(
        phase=phase,
        commands=commands,
        rss_mib=round(raw.get("rss", 0) / MIB, 1),
        hwm_mib=round(raw["VmHWM"] / MIB, 1) if "VmHWM" in raw else None,
        threads=raw.get("threads"),
        fds=raw.get("fds"),
        seconds=round(seconds, 2),
        at_s=round(time.perf_counter() - t0, 1),
    )


def row(sample: Sample) -> str:
    wave = f"{sample.seconds:7.1f} {sample.per_s:7,.0f}" if sample.phase == "wave" else " " * 15
    hwm = f"{sample.hwm_mib:8.1f}" if sample.hwm_mib is not None else "       -"
    return (
        f"{sample.phase:>8} {sample.commands:>9,} {wave} {sample.rss_mib:8.1f} {hwm} "
        f"{sample.threads or '-':>7} {sample.fds or '-':>5} {sample.at_s:8.1f}"
    )


HEADER = (
    f"{'phase':>8} {'commands':>9} {'wave s':>7} {'cmd/s':>7} {'RSS MiB':>8} {'HWM MiB':>8} "
    f"{'threads':>7} {'fds':>5} {'at s':>8}"
)


async def wait_wave(client: Probe, ids: list[str], instances: list[str], timeout_s: float) -> None:
    """Every reply in, projection lag 0, and a sample of the wave's instances readable."""
    deadline = time.perf_counter() + timeout_s
    replied = await client.wait_replies(ids, deadline)
    if replied != len(ids):
        raise RuntimeError(f"{len(ids) - replied} of {len(ids)} commands unanswered")
    while await client.projection_lag() != 0:
        client.deployment.check_alive()
        if time.perf_counter() > deadline:
            raise RuntimeError("the projections did not catch up")
        await asyncio.sleep(0.05)
    sample = instances[-READ_SAMPLE:]
    checks = await asyncio.gather(*(client.readable(i) for i in sample))
    if not all(checks):
        raise RuntimeError(f"{checks.count(False)} of {len(sample)} instances unreadable")


def slope_per_100k(samples: list[Sample]) -> float | None:
    """Least-squares slope of RSS over commands, MiB per 100,000 commands."""
    if len(samples) < 2:
        return None
    xs = [s.commands for s in samples]
    ys = [s.rss_mib for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if not var:
        return None
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 1e5, 2)


def summarize(samples: list[Sample], total: int) -> dict[str, Any]:
    waves = [s for s in samples if s.phase == "wave"]
    idle = [s for s in samples if s.phase == "idle"]
    second_half = [s for s in waves if s.commands >= total / 2]
    last, peak = waves[-1] if waves else samples[-1], max(samples, key=lambda s: s.rss_mib)
    hwm = [s.hwm_mib for s in samples if s.hwm_mib is not None]
    first_half = [s for s in samples if s.phase != "idle" and s.commands < total / 2]
    first_half_end = max(first_half, key=lambda s: s.commands)
    return {
        "first_rss_mib": samples[0].rss_mib,
        "after_first_wave_rss_mib": waves[0].rss_mib if waves else None,
        "peak_rss_mib": peak.rss_mib,
        "peak_at_commands": peak.commands,
        "last_rss_mib": last.rss_mib,
        "idle_rss_mib": idle[-1].rss_mib if idle else None,
        "kernel_peak_rss_mib": max(hwm) if hwm else None,
        "second_half_slope_mib_per_100k": slope_per_100k(second_half),
        "whole_run_slope_mib_per_100k": slope_per_100k(waves),
        "second_half_growth_mib": round(last.rss_mib - first_half_end.rss_mib, 1)
        if waves
        else None,
        "second_half_from_commands": first_half_end.commands if waves else None,
        "commands": last.commands,
    }


async def soak(plan: Plan, bootstrap: str, store: str, run_dir: Path) -> dict[str, Any]:
    prefix = f"soak{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, dict.fromkeys(Topics(prefix).all(), plan.partitions))
    deployment = Deployment("all_in_one", prefix)
    trace_dir = run_dir / "tracemalloc" if plan.tracemalloc else None
    results: dict[str, Any] = {"samples": [], "tracemalloc": {}}
    samples: list[Sample] = []
    mix = Mix(plan)
    try:
        say("starting the service" + (" under tracemalloc" if trace_dir else ""))
        await launch(deployment, store, bootstrap, run_dir, trace_dir)
        pid = deployment.api.process.pid
        async with probe(bootstrap, deployment) as client:
            await client.wait_started()
            await client.register_and_warm_up(WARM_UP_COMMANDS)
            client.arrivals.clear()
            t0 = time.perf_counter()
            samples.append(take(pid, "warm-up", 0, t0))
            if trace_dir is not None:
                results["tracemalloc"]["baseline"] = await snapshot(deployment, trace_dir, 1)
            say(f"{plan.commands:,} commands in waves of {plan.wave:,}, service pid {pid}")
            print(HEADER, flush=True)
            print(row(samples[-1]), flush=True)
            sent, half_taken = 0, False
            async with _started(producer(bootstrap, LINGER_MS)) as send:
                while sent < plan.commands:
                    commands = mix.wave(min(plan.wave, plan.commands - sent))
                    start = time.perf_counter()
                    await _publish_all(send, client.topics.commands, commands)
                    await wait_wave(
                        client,
                        [c.command_id for c in commands],
                        [c.instance_id for c in commands],
                        plan.wave_timeout_s,
                    )
                    seconds = time.perf_counter() - start
                    sent += len(commands)
                    client.arrivals.clear()  # the bench's own memory stays flat too
                    sample = take(pid, "wave", sent, t0, seconds)
                    sample.per_s = round(len(commands) / seconds) if seconds else 0.0
                    samples.append(sample)
                    print(row(sample), flush=True)
                    if trace_dir is not None and not half_taken and sent >= plan.commands / 2:
                        half_taken = True
                        results["tracemalloc"]["half"] = await snapshot(deployment, trace_dir, 2)
            idle_until = time.perf_counter() + plan.idle_s
            while (left := idle_until - time.perf_counter()) > 0:
                await asyncio.sleep(min(IDLE_SAMPLE_S, left))
                deployment.check_alive()
                samples.append(take(pid, "idle", sent, t0))
                print(row(samples[-1]), flush=True)
            if trace_dir is not None:
                n = 3 if half_taken else 2
                results["tracemalloc"]["end"] = await snapshot(deployment, trace_dir, n)
            results["outcomes"] = dict(client.outcomes)
            results["mix"] = dict(mix.counts)
    finally:
        results["samples"] = [asdict(s) for s in samples]
        deployment.stop()
    return results


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: the service, the broker


def write_results(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"soak-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def print_summary(summary: dict[str, Any], outcomes: dict[str, int]) -> None:
    def mib(key: str) -> str:
        value = summary.get(key)
        return "-" if value is None else f"{value:,.1f} MiB"

    say(
        f"RSS first {mib('first_rss_mib')} (after warm-up), peak {mib('peak_rss_mib')} "
        f"(at {summary['peak_at_commands']:,} commands), last {mib('last_rss_mib')}, "
        f"idle {mib('idle_rss_mib')}; kernel peak (VmHWM) {mib('kernel_peak_rss_mib')}"
    )
    say(
        f"second half ({summary['second_half_from_commands']:,} -> {summary['commands']:,} "
        f"commands): {summary['second_half_growth_mib']:+.1f} MiB, slope "
        f"{summary['second_half_slope_mib_per_100k']} MiB per 100k commands "
        f"(whole run {summary['whole_run_slope_mib_per_100k']})"
    )
    say(f"replies: {outcomes}")


def print_tracemalloc(traced: dict[str, Any]) -> None:
    end = traced.get("end")
    if not end:
        return
    for key, title in (
        ("grown_since_previous", "grown over the second half"),
        ("grown_since_first", "grown since the warm-up"),
    ):
        say(f"tracemalloc: {title} (traced now {end['traced_mib']} MiB)")
        for site in end.get(key, [])[:15]:
            say(
                f"  {site['grown_kib']:>10,.1f} KiB {site['grown_blocks']:>+9,} blocks  "
                f"{site['site']}  {site['code']}"
            )
    say("live objects grown over the second half, by type (gc-tracked objects only)")
    for kind in end.get("objects_grown_since_previous", [])[:12]:
        say(f"  {kind['grown']:>+9,} (now {kind['now']:>9,})  {kind['type']}")
    for chains in end.get("holders", {}).values():
        for chain in chains[:1]:
            say(f"  held: {' <- '.join(chain)}")


def main() -> int:
    plan = Plan.from_env()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _terminate)
    host, code = report.machine(), report.code_version()
    run_dir = Path(tempfile.mkdtemp(prefix="flowledger-soak-"))
    started = time.perf_counter()
    ok = False
    measured: dict[str, Any] = {}
    error: str | None = None
    try:
        with contextlib.ExitStack() as stack:
            say("starting Kafka")
            bootstrap = stack.enter_context(kafka_broker(run_dir / "kafka"))
            pg_admin = None
            if plan.store == "postgresql":
                say("starting PostgreSQL")
                pg_admin = stack.enter_context(postgres_server(run_dir))
            url = stack.enter_context(store_url(plan.store, run_dir, pg_admin, "soak"))
            try:
                measured = asyncio.run(soak(plan, bootstrap, url, run_dir))
            except RuntimeError as failure:
                error = str(failure)[:2000]
                say(f"FAILED: {error}")
        ok = error is None and not measured.get("outcomes", {}).get("rejected")
    finally:
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            say(f"something failed: the service log is kept in {run_dir}")
    samples = [Sample(**s) for s in measured.get("samples", [])]
    results: dict[str, Any] = {
        "machine": {**host, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": asdict(plan),
        "code": code,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "error": error,
        **measured,
    }
    if any(s.phase == "wave" for s in samples):
        results["summary"] = summarize(samples, plan.commands)
    path = write_results(results)
    if "summary" in results:
        print_summary(results["summary"], results.get("outcomes", {}))
        print_tracemalloc(results.get("tracemalloc", {}))
    say(f"results: {path.relative_to(REPO)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
