"""`make repeat`: the end-to-end tests N times in a row, each failure reported with its test id.

A suite that fails one run in three blocks good work and hides real regressions; this is how
to tell a stable suite from a lucky run. Usage: python -m tests.repeat [N] [pytest args...]
(default 10 runs of tests/e2e). One broker and one PostgreSQL serve every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from services.dev_provisioning.kafka import resolve_bootstrap
from services.dev_provisioning.postgres import ENV_ADMIN_DSN, resolve_postgres_admin_dsn


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv and argv[0].isdigit() else 10
    targets = argv[1:] if argv and argv[0].isdigit() else argv
    state = Path(tempfile.mkdtemp(prefix="flowledger-repeat-"))
    bootstrap, release_kafka = resolve_bootstrap(state / "kafka")
    dsn, release_postgres = resolve_postgres_admin_dsn(state)
    env = os.environ | {"FLOWLEDGER_KAFKA_BOOTSTRAP": bootstrap, ENV_ADMIN_DSN: dsn}
    failures: list[tuple[int, str]] = []
    try:
        for run in range(1, runs + 1):
            command = [sys.executable, "-m", "pytest", "-q", "-rf", *(targets or ["tests/e2e"])]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            failed = [
                line.split(" ", 2)[1]
                for line in done.stdout.splitlines()
                if line.startswith(("FAILED ", "ERROR "))
            ]
            if done.returncode != 0 and not failed:
                failed = [f"pytest exited {done.returncode}"]
            failures += [(run, test_id) for test_id in failed]
            summary = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
            print(f"run {run}/{runs}: {'FAILED' if failed else 'ok'}  {summary[0]}", flush=True)
            if failed:
                (state / f"run{run}.log").write_text(done.stdout + done.stderr)
    finally:
        release_postgres()
        release_kafka()
    print(f"{runs - len({run for run, _ in failures})} of {runs} runs passed")
    for run, test_id in failures:
        print(f"  run {run}: {test_id}  (log: {state / f'run{run}.log'})")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
