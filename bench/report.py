"""The machine's description, the human-readable table, the summary JSON and the results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GOALS = {
    "sqlite_commands_per_s": 5000,
    "postgresql_commands_per_s": 3000,
    "readable_p99_ms_at_1000_per_s": 100,
    "ratio": 0.25,
    # Issue 17: one-step workflow runs, created -> complete and readable, on two cores; the
    # p99 at a paced 200 runs/s is two commands at their 100 ms goal plus 50 ms for the
    # worker's hop (event delivered, history read, step run).
    "workflow_runs_per_s": 1000,
    "workflow_p99_ms": 250,
    # Issue 28: a step at step 3,000 of an instance costs at most 1.5x one at step 100.
    "long_instance_ratio": 1.5,
}
STORE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
TOPOLOGY_NAMES = {
    "all_in_one": "all-in-one",
    "two_members": "two members",
    "per_role": "one process per role",
}


def machine() -> dict[str, Any]:
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(memory_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor(),
        # Shared machine: what else ran (tests, other benches) shows in the load average.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and how many files differed from it (a shared working tree)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        except OSError:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD") or None, "modified_files": len(changed)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _ratio(e2e: float | None, kafka: float | None) -> float | None:
    return round(e2e / kafka, 3) if e2e and kafka else None


def topology_figures(run: dict[str, Any], kafka_per_s: float | None) -> dict[str, Any]:
    throughput, latency = run.get("throughput", {}), run.get("latency", {})
    sustained = run.get("sustained", {})
    e2e = throughput.get("e2e_commands_per_s")
    failure = {"error": run["error"]} if "error" in run else {}
    return {
        **failure,
        "e2e_commands_per_s": e2e,
        "e2e_complete": throughput.get("complete"),
        "e2e_p50_ms": latency.get("readable_p50_ms"),
        "e2e_p95_ms": latency.get("readable_p95_ms"),
        "e2e_p99_ms": latency.get("readable_p99_ms"),
        "reply_p50_ms": latency.get("reply_p50_ms"),
        "reply_p95_ms": latency.get("reply_p95_ms"),
        "reply_p99_ms": latency.get("reply_p99_ms"),
        # Sampled reads / replies not done within the drain after the paced phase: the offered
        # load was above capacity and the percentiles past them are unbounded (null).
        "e2e_unreadable": latency.get("readable_missing"),
        "reply_unanswered": latency.get("reply_missing"),
        "ratio": _ratio(e2e, kafka_per_s),
        # CPU time (user + system) of each service process per command of the throughput burst.
        **{
            f"cpu_us_per_command_{name}": us
            for name, us in throughput.get("cpu_us_per_command", {}).items()
        },
        # The same paced measurement at half the measured throughput: no backlog.
        "sustained_rate": sustained.get("rate"),
        "sustained_p50_ms": sustained.get("readable_p50_ms"),
        "sustained_p95_ms": sustained.get("readable_p95_ms"),
        "sustained_p99_ms": sustained.get("readable_p99_ms"),
        "sustained_reply_p99_ms": sustained.get("reply_p99_ms"),
        **workflow_figures(run.get("workflow", {})),
        **long_instance_figures(run.get("long_instance", {})),
    }


def long_instance_figures(long: dict[str, Any]) -> dict[str, Any]:
    """The long-instance phase (bench/long_instance.py); absent keys when it did not run."""
    if not long:
        return {}
    early, late = long["early"], long["late"]
    cpu = {
        f"long_cpu_ms_per_step_{name}_{when}": window["cpu_ms_per_step"].get(name)
        for name in late["cpu_ms_per_step"]
        for when, window in (("early", early), ("late", late))
    }
    return {
        "long_steps": long["steps"],
        "long_ms_per_step_early": early["ms_per_step"],
        "long_ms_per_step_late": late["ms_per_step"],
        "long_ratio": long["ratio"],
        **cpu,
        "long_step_count": long.get("step_count"),
        "long_as_of_ms_start": long.get("as_of_ms", {}).get("start"),
        "long_as_of_ms_end": long.get("as_of_ms", {}).get("end"),
        "long_get_ms_end": long.get("get_ms"),
    }


def workflow_figures(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow phase (bench/workflow_phase.py); absent keys when it did not run."""
    if not workflow:
        return {}
    runs, paced = workflow.get("throughput", {}), workflow.get("latency", {})
    return {
        "workflow_runs_per_s": runs.get("runs_per_s"),
        "workflow_complete": runs.get("complete"),
        "workflow_commands_per_run": runs.get("commands_per_run"),
        **{
            f"workflow_cpu_us_per_run_{name}": us
            for name, us in runs.get("cpu_us_per_run", {}).items()
        },
        "workflow_rate": paced.get("rate"),
        "workflow_p50_ms": paced.get("readable_p50_ms"),
        "workflow_p95_ms": paced.get("readable_p95_ms"),
        "workflow_p99_ms": paced.get("readable_p99_ms"),
        "workflow_event_p50_ms": paced.get("completed_p50_ms"),
        "workflow_event_p99_ms": paced.get("completed_p99_ms"),
        "workflow_unfinished": paced.get("unfinished"),
        "workflow_unreadable": paced.get("unreadable"),
    }


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The last line: SQLite at the top level, PostgreSQL under "postgresql"."""
    kafka = results.get("kafka_roundtrip", {})
    kafka_per_s = kafka.get("kafka_roundtrip_msgs_per_s")
    per_store: dict[str, dict[str, Any]] = {}
    for store, runs in results.get("stores", {}).items():
        figures = topology_figures(runs.get("all_in_one", {}), kafka_per_s)
        figures.update(
            kafka_roundtrip_msgs_per_s=kafka_per_s,
            kafka_roundtrip_p50_ms=kafka.get("kafka_roundtrip_p50_ms"),
            kafka_roundtrip_p99_ms=kafka.get("kafka_roundtrip_p99_ms"),
            store_only_per_s=runs.get("store_only", {}).get("store_only_per_s"),
        )
        for topology in ("two_members", "per_role"):
            if topology in runs:
                figures[topology] = topology_figures(runs[topology], kafka_per_s)
        per_store[store] = figures
    line: dict[str, Any] = dict(per_store.get("sqlite", {}))
    if "postgresql" in per_store:
        line["postgresql"] = per_store["postgresql"]
    line["bench_seconds"] = results["settings"]["bench_seconds"]
    line["results_file"] = results.get("results_file")
    return line


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else str(value)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"  # unbounded: that rank fell on a command never answered
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _pcts(figures: dict[str, Any], prefix: str) -> str:
    return "/".join(_ms(figures.get(f"{prefix}_{p}_ms")) for p in ("p50", "p95", "p99"))


ROW = "{:<30} {:>23} {:>23}   {:<30} {}"


def _runs(figures: dict[str, Any]) -> str:
    per_run = _n(figures.get("workflow_commands_per_run"), 1)
    return f"{_n(figures.get('workflow_runs_per_s'))} ({per_run} cmd/run)"


def _store_block(store: str, runs: dict[str, Any], kafka: dict[str, Any]) -> list[str]:
    kafka_per_s = kafka.get("kafka_roundtrip_msgs_per_s")
    kafka_lat = "Kafka " + _pcts(kafka, "kafka_roundtrip")
    cols = [t for t in ("all_in_one", "two_members") if t in runs]
    figs = [topology_figures(runs[t], kafka_per_s) for t in cols]
    pad = [""] * (2 - len(cols))

    def row(label: str, cells: list[str], baseline: str, goal: str) -> str:
        return ROW.format(label, *cells, *pad, baseline, goal)

    store_only = runs.get("store_only", {}).get("store_only_per_s")
    readable_goal = GOALS["readable_p99_ms_at_1000_per_s"]
    lines = [
        "",
        row(STORE_NAMES[store], [TOPOLOGY_NAMES[t] for t in cols], "baseline (same run)", "goal"),
        row(
            "throughput, cmd/s",
            [_n(f["e2e_commands_per_s"]) for f in figs],
            f"store only {_n(store_only)}/s",
            f">= {GOALS[f'{store}_commands_per_s']:,}",
        ),
        row(
            "  ratio to Kafka round trip",
            [_n(f["ratio"], 3) for f in figs],
            f"Kafka {_n(kafka_per_s)} msg/s",
            f">= {GOALS['ratio']}",
        ),
        row("publish->reply p50/p95/p99 ms", [_pcts(f, "reply") for f in figs], kafka_lat, ""),
        row(
            "publish->readable p50/p95/p99",
            [_pcts(f, "e2e") for f in figs],
            kafka_lat,
            f"p99 <= {readable_goal} ms",
        ),
        row(
            "  same, at half capacity",
            [f"{_pcts(f, 'sustained')} @{_n(f['sustained_rate'])}/s" for f in figs],
            "",
            "",
        ),
    ]
    if any("workflow_runs_per_s" in f for f in figs):
        lines += [
            row(
                "workflow runs/s (one step)",
                [_runs(f) for f in figs],
                "",
                f">= {GOALS['workflow_runs_per_s']:,} on 2 cores",
            ),
            row(
                "  create->complete p50/p95/p99",
                [f"{_pcts(f, 'workflow')} @{_n(f.get('workflow_rate'))}/s" for f in figs],
                "",
                f"p99 <= {GOALS['workflow_p99_ms']} ms",
            ),
        ]
    for topology in TOPOLOGY_NAMES:
        cpu = runs.get(topology, {}).get("throughput", {}).get("cpu_us_per_command")
        if cpu:
            per_s = runs[topology]["throughput"].get("e2e_commands_per_s")
            each = ", ".join(f"{name} {us:,.0f}" for name, us in cpu.items())
            lines.append(
                f"  CPU us/command, {TOPOLOGY_NAMES[topology]} burst ({_n(per_s)} cmd/s): {each}"
            )
    lines += [_long_line(t, runs[t]["long_instance"]) for t in runs if "long_instance" in runs[t]]
    for topology, f in zip(cols, figs, strict=True):
        name = TOPOLOGY_NAMES[topology]
        if "error" in f:
            lines.append(f"  ({name} FAILED: {f['error'].splitlines()[0][:200]})")
        elif f["e2e_complete"] is False:  # None: the commands phase did not run
            lines.append(f"  ({name}: the throughput run did not finish in time)")
        if f["e2e_unreadable"] or f["reply_unanswered"]:
            lines.append(
                f"  ({name}: {f['reply_unanswered']:,} replies and {f['e2e_unreadable']:,} sampled"
                " reads not done in the drain after the paced phase: above capacity; '-' ="
                " unbounded)"
            )
    return lines


def _long_line(topology: str, long: dict[str, Any]) -> str:
    early, late = long["early"], long["late"]
    cpu = ", ".join(
        f"{name} {early['cpu_ms_per_step'].get(name, 0):.1f} -> {ms:.1f}"
        for name, ms in late["cpu_ms_per_step"].items()
    )
    as_of = long.get("as_of_ms", {})
    return (
        f"  long instance, {TOPOLOGY_NAMES.get(topology, topology)}: ms/step at step "
        f"{long['early_step']} -> {long['steps']:,}: {early['ms_per_step']:.1f} -> "
        f"{late['ms_per_step']:.1f} (x{long['ratio']}, goal <= x{GOALS['long_instance_ratio']});"
        f" CPU ms/step {cpu}; as_of near start/end {_n(as_of.get('start'), 1)}/"
        f"{_n(as_of.get('end'), 1)} ms (the live GET at the end {_n(long.get('get_ms'), 1)} ms);"
        f" step_count {_n(long.get('step_count'))}"
    )


def table(results: dict[str, Any]) -> str:
    settings, host = results["settings"], results["machine"]
    out = [
        f"Flowledger bench: BENCH_SECONDS={settings['bench_seconds']:g}, latency at an offered"
        f" {_n(settings['rate'])} cmd/s, {host['cores']} cores, {host['ram_gib']} GiB,"
        f" Python {host['python']}",
    ]
    for store, runs in results.get("stores", {}).items():
        out += _store_block(store, runs, results.get("kafka_roundtrip", {}))
    for store, profile in results.get("profiles", {}).items():
        out += [
            "",
            f"py-spy hot spots, {STORE_NAMES[store]} all-in-one throughput run"
            f" ({profile['samples']} samples, % of samples; event loop thread"
            f" {profile['event_loop_thread_pct']}%, to_thread workers"
            f" {profile['worker_threads_pct']}%):",
        ]
        out += [f"  self {pct:5.1f}%  {name}" for name, pct in profile["self_pct"][:10]]
        out += [f"  incl {pct:5.1f}%  {name}" for name, pct in profile["inclusive_pct"][:10]]
    return "\n".join(out)


def write_results(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path
