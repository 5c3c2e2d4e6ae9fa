"""`make bench`: the real service over the real broker, on SQLite and PostgreSQL, beside its
baselines measured in the same run. See bench/README.md for what each figure means.

Environment: BENCH_SECONDS (length of each measured phase, default 10), BENCH_RATE (offered
load of the latency phase, default 1000/s), BENCH_STORES (default "sqlite,postgresql"),
BENCH_TOPOLOGIES (default "all_in_one,two_members"), BENCH_COMMANDS (size of the throughput
burst; default from the store-only rate), BENCH_PROFILE=1 (py-spy over each store's all-in-one
throughput run), BENCH_PHASES (which phases, default "kafka,store_only,commands,workflow"),
BENCH_WORKERS / BENCH_WORKER_CONCURRENCY (the workflow phase's worker processes, default 1 / 256),
BENCH_WORKFLOW_RUNS (the workflow burst, default BENCH_SECONDS x 100), BENCH_LONG_STEPS (the
long-instance phase's steps, default 3000; that phase runs in the all-in-one and per-role
topologies only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from aiokafka.errors import KafkaError
from eventsourcing.persistence import PersistenceError

from bench import baselines, long_instance, report, workflow_phase
from bench.infra import kafka_broker, postgres_server, store_url
from bench.load import Probe, probe
from bench.profile import Profiler, hot_spots
from bench.service import TOPOLOGIES, Deployment, cpu_by_member, start, start_workers
from contracts.topics import Topics
from services.infra.kafka_topics import ensure_topics
from services.settings import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WARM_UP_COMMANDS = 200
WARM_UP_RUNS = 20
PHASES = ("kafka", "store_only", "commands", "workflow", "long_instance")


@dataclass(frozen=True)
class Plan:
    bench_seconds: float
    rate: float
    sample_every: int
    poll_ms: float
    stores: tuple[str, ...]
    topologies: tuple[str, ...]
    commands: int | None
    profile: bool
    partitions: int
    phases: tuple[str, ...] = PHASES
    workers: int = 1
    worker_concurrency: int = 256
    workflow_runs: int | None = None
    long_steps: int = 3000

    @classmethod
    def from_env(cls) -> Plan:
        env = os.environ.get
        return cls(
            bench_seconds=float(env("BENCH_SECONDS", "10")),
            rate=float(env("BENCH_RATE", "1000")),
            sample_every=int(env("BENCH_SAMPLE_EVERY", "10")),
            poll_ms=float(env("BENCH_POLL_MS", "2")),
            stores=tuple(env("BENCH_STORES", "sqlite,postgresql").split(",")),
            topologies=tuple(env("BENCH_TOPOLOGIES", "all_in_one,two_members").split(",")),
            commands=int(env("BENCH_COMMANDS", "0")) or None,
            profile=env("BENCH_PROFILE", "") not in ("", "0"),
            partitions=Settings().partitions,
            phases=_phases(env("BENCH_PHASES", ",".join(PHASES))),
            workers=int(env("BENCH_WORKERS", "1")),
            worker_concurrency=int(env("BENCH_WORKER_CONCURRENCY", "256")),
            workflow_runs=int(env("BENCH_WORKFLOW_RUNS", "0")) or None,
            long_steps=int(env("BENCH_LONG_STEPS", "3000")),
        )

    @property
    def workflow_burst(self) -> int:
        return self.workflow_runs or max(100, int(self.bench_seconds * 100))

    def burst_size(self, store_only_per_s: float) -> int:
        """About `bench_seconds` of work if the service ran at half the store-only rate."""
        if self.commands:
            return self.commands
        size = int(self.bench_seconds * store_only_per_s / 2 / 100) * 100
        return min(200_000, max(1000, size))


def _phases(text: str) -> tuple[str, ...]:
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = set(chosen) - set(PHASES)
    if unknown:
        raise SystemExit(f"BENCH_PHASES: unknown {sorted(unknown)}; choose from {PHASES}")
    return chosen


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


async def latency_phase(client: Probe, plan: Plan, rate: float, seconds: float) -> dict[str, Any]:
    say(f"  latency: {rate:,.0f} cmd/s for {seconds:g}s")
    figures = await client.latency(
        rate, seconds, plan.sample_every, plan.poll_ms / 1000, drain_s=max(10.0, seconds)
    )
    p99 = figures["readable_p99_ms"]
    unread = figures["readable_missing"]
    say(f"  -> readable p99 {p99} ms" + (f" ({unread} sampled reads never done)" if unread else ""))
    return figures


async def run_topology(
    plan: Plan,
    topology: str,
    store: str,
    bootstrap: str,
    run_dir: Path,
    burst: int,
    profile_to: Path | None,
) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    # Declared before anyone subscribes: a consumer must never auto-create a 1-partition topic.
    await ensure_topics(bootstrap, dict.fromkeys(Topics(prefix).all(), plan.partitions))
    deployment = Deployment(topology, prefix)
    profilers: list[Profiler] = []
    try:
        await start(deployment, store, bootstrap, run_dir)
        if profile_to is not None:
            # The api's process; with one process per role, every process, one file each.
            members = deployment.members if topology == "per_role" else [deployment.api]
            profilers = [
                Profiler(m.process.pid, _profile_file(profile_to, m.roles, topology))
                for m in members
            ]
        async with probe(bootstrap, deployment) as client:
            await client.wait_started()
            await client.register_and_warm_up(WARM_UP_COMMANDS)
            measured: dict[str, Any] = {}
            if "workflow" in plan.phases:  # first: its worker reads the events from the start
                measured["workflow"] = await run_workflows(plan, client, deployment, run_dir)
            if "long_instance" in plan.phases and topology != "two_members":
                say(f"  long instance: {plan.long_steps:,} RecordStep, one at a time")
                long = await long_instance.long_instance(client, plan.long_steps, timeout_s=900)
                say(f"  -> ms/step {long['early']['ms_per_step']} -> {long['late']['ms_per_step']}")
                measured["long_instance"] = long
            if "commands" not in plan.phases:
                return measured
            if profilers and not all([p.start() for p in profilers]):
                say("py-spy not found: `pip install -e '.[bench]'`; no profile")
                profilers = []
            say(f"  throughput: {burst:,} creates at once")
            cpu_before = cpu_by_member(deployment)
            throughput = await client.throughput(burst, timeout_s=4 * plan.bench_seconds + 60)
            throughput["cpu_us_per_command"] = cpu_per_command(
                cpu_before, cpu_by_member(deployment), throughput["replied"]
            )
            for profiler in profilers:
                profiler.stop()
            say(f"  -> {throughput['e2e_commands_per_s']:,} cmd/s")
            # At half the measured capacity first (no backlog: the pipeline's own latency),
            # then at the offered load of the goal, which may exceed capacity and queue.
            sustained_rate = max(10.0, round(throughput["e2e_commands_per_s"] / 2, -1))
            sustained = await latency_phase(client, plan, sustained_rate, plan.bench_seconds / 2)
            latency = await latency_phase(client, plan, plan.rate, plan.bench_seconds)
            return {
                "throughput": throughput,
                "latency": latency,
                "sustained": sustained,
                **measured,
            }
    finally:
        for profiler in profilers:
            profiler.stop()
        deployment.stop()


def cpu_per_command(
    before: dict[str, float], after: dict[str, float], commands: int
) -> dict[str, float]:
    """Microseconds of CPU (user + system) each service process spent per command applied
    during the throughput burst (the bench's HTTP reads of the api included)."""
    if commands <= 0:
        return {}
    return {
        name: round(1e6 * (after[name] - before.get(name, 0.0)) / commands, 1) for name in after
    }


async def run_workflows(
    plan: Plan, client: Probe, deployment: Deployment, run_dir: Path
) -> dict[str, Any]:
    """The workflow phase (bench/workflow_phase.py), its workers stopped after it."""
    say(f"  workflow: {plan.workers} worker(s), concurrency {plan.worker_concurrency}")
    try:
        await start_workers(
            deployment,
            run_dir,
            workflow=workflow_phase.WORKFLOW,
            account="bench",
            count=plan.workers,
            concurrency=plan.worker_concurrency,
        )
        events = workflow_phase.completions(client.bootstrap, deployment.prefix, plan.partitions)
        async with events as seen:
            await workflow_phase.warm_up(client, seen, WARM_UP_RUNS, timeout_s=90)
            burst = plan.workflow_burst
            say(f"  workflow throughput: {burst:,} one-step runs created at once")
            cpu_before = cpu_by_member(deployment)
            runs = await workflow_phase.throughput(
                client, seen, burst, timeout_s=4 * plan.bench_seconds + 60
            )
            # Per run, not per command: a run is `commands_per_run` commands.
            runs["cpu_us_per_run"] = cpu_per_command(cpu_before, cpu_by_member(deployment), burst)
            say(f"  -> {runs['runs_per_s']:,} runs/s ({runs['commands_per_run']} commands/run)")
            rate, seconds = workflow_phase.WORKFLOW_RATE, plan.bench_seconds / 2
            say(f"  workflow latency: {rate:,.0f} runs/s for {seconds:g}s")
            paced = await workflow_phase.latency(
                client,
                seen,
                rate,
                seconds,
                plan.sample_every,
                plan.poll_ms / 1000,
                drain_s=max(10.0, seconds),
            )
            say(f"  -> create->complete readable p99 {paced['readable_p99_ms']} ms")
            return {"throughput": runs, "latency": paced}
    finally:
        deployment.stop_workers()


async def measure(
    plan: Plan, bootstrap: str, pg_admin: str | None, run_dir: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {"stores": {}, "profiles": {}, "failures": 0}
    if "kafka" in plan.phases:
        say("baseline: Kafka round trip")
        results["kafka_roundtrip"] = await baselines.kafka_roundtrip(
            bootstrap,
            plan.partitions,
            burst=max(10_000, int(plan.bench_seconds * 10_000)),
            rate=plan.rate,
            seconds=max(2.0, plan.bench_seconds / 2),
        )
    for store in plan.stores:
        runs: dict[str, Any] = {}
        results["stores"][store] = runs
        if "store_only" in plan.phases:
            with store_url(store, run_dir, pg_admin, "storeonly") as url:
                say(f"{store}: baseline: store only")
                runs["store_only"] = await asyncio.to_thread(
                    baselines.store_only, url, max(2.0, plan.bench_seconds / 2)
                )
        burst = plan.burst_size(runs.get("store_only", {}).get("store_only_per_s", 0.0))
        for topology in plan.topologies:
            say(f"{store}: {topology}")
            profile_to = (
                run_dir / f"profile-{store}.txt"
                if plan.profile and topology in ("all_in_one", "per_role")
                else None
            )
            try:
                with store_url(store, run_dir, pg_admin, topology) as url:
                    runs[topology] = await run_topology(
                        plan, topology, url, bootstrap, run_dir, burst, profile_to
                    )
            except (RuntimeError, OSError, KafkaError, PersistenceError) as error:
                # One broken configuration must not cost the figures of the others.
                say(f"{store}: {topology} FAILED: {error}")
                runs[topology] = {"error": f"{type(error).__name__}: {error}"[:2000]}
                results["failures"] += 1
            if profile_to is not None and topology == "all_in_one" and profile_to.exists():
                results["profiles"][store] = _kept_profile(profile_to, store)
            if profile_to is not None and topology == "per_role":
                results.setdefault("role_profiles", {})[store] = {
                    role: _kept_profile(raw, f"{store}-{role}")
                    for role in TOPOLOGIES["per_role"]
                    if (raw := _profile_file(profile_to, role, topology)).exists()
                }
    return results


def _profile_file(profile_to: Path, roles: str, topology: str) -> Path:
    if topology != "per_role":
        return profile_to
    return profile_to.with_name(f"{profile_to.stem}-{roles}{profile_to.suffix}")


def _kept_profile(raw: Path, name: str) -> dict[str, Any]:
    """Its hot spots, the raw file copied beside the results."""
    spots = hot_spots(raw)
    kept = RESULTS_DIR / f"profile-{name}-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    shutil.copyfile(raw, kept)
    spots["raw"] = str(kept.relative_to(RESULTS_DIR.parent.parent))
    return spots


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: children, broker, PG


def main() -> int:
    plan = Plan.from_env()
    # Our own clients' transient complaints (e.g. a leader not yet elected) are not results.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _terminate)
    host, code = report.machine(), report.code_version()
    run_dir = Path(tempfile.mkdtemp(prefix="flowledger-bench-"))
    started = time.perf_counter()
    ok = False
    try:
        with contextlib.ExitStack() as stack:
            say("starting Kafka")
            bootstrap = stack.enter_context(kafka_broker(run_dir / "kafka"))
            pg_admin = None
            if "postgresql" in plan.stores:
                say("starting PostgreSQL")
                pg_admin = stack.enter_context(postgres_server(run_dir))
            measured = asyncio.run(measure(plan, bootstrap, pg_admin, run_dir))
        ok = measured["failures"] == 0
    finally:
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            say(f"something failed: service logs kept in {run_dir}")
    results = {
        "machine": {**host, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {**asdict(plan), "stores": list(plan.stores), "phases": list(plan.phases)},
        "code": code,
        "elapsed_s": round(time.perf_counter() - started, 1),
        **measured,
    }
    results["settings"]["bench_seconds"] = plan.bench_seconds
    path = report.write_results(results, RESULTS_DIR)
    results["results_file"] = str(path.relative_to(RESULTS_DIR.parent.parent))
    print(report.table(results), flush=True)
    print(json.dumps(report.summary(results)), flush=True)
    return 1 if measured["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
