"""`make run`: the service (`flowledger serve`) and a worker (`flowledger worker ...`) side by
side, one command, both stopped by one Ctrl-C.

    python -m services.dev_provisioning.run_local [WORKER ARGUMENTS]

The broker is resolved once, as `flowledger serve` would (FLOWLEDGER_KAFKA_BOOTSTRAP, else
Docker, else the local broker of `flowledger kafka`), and both processes are pointed at it and
at the same store (FLOWLEDGER_STORE, default the embedded SQLite file). Without worker
arguments only the service runs. Ctrl-C reaches both processes (they share the terminal's
process group): each drains and exits; a second Ctrl-C exits at once. (`flowledger serve`
is itself a supervisor with one child process per role, services/supervisor.py: it passes
the Ctrl-C on to them, and stops them within its 25 s, inside the STOP_TIMEOUT_S below.)
When either exits on its own, the other is stopped too. A broker started here is stopped last.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.dev_provisioning.kafka import KafkaProvisioningError, resolve_bootstrap
from services.observability.logs import configure_logging
from services.settings import Settings
from services.supervisor import pinned_keys

FLOWLEDGER = Path(sys.executable).parent / "flowledger"
STOP_TIMEOUT_S = 30.0


def main(argv: list[str] | None = None) -> int:
    worker_args = list(sys.argv[1:] if argv is None else argv)
    settings = Settings()
    configure_logging(settings.log_format)  # its one line (a dev-key warning) as theirs
    try:
        bootstrap, release = resolve_bootstrap(settings.state_dir / "kafka")
    except KafkaProvisioningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # The keys resolved (and the dev key warned about) once here, not once per process.
    env = {**os.environ, "FLOWLEDGER_KAFKA_BOOTSTRAP": bootstrap, **pinned_keys(settings)}
    interrupted = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True  # the children got the terminal's SIGINT themselves
        if signum == signal.SIGTERM:  # sent to this process alone: pass it on
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        children.append(subprocess.Popen([str(FLOWLEDGER), "serve"], env=env))
        if worker_args:
            children.append(subprocess.Popen([str(FLOWLEDGER), "worker", *worker_args], env=env))
        while all(child.poll() is None for child in children) and not interrupted:
            time.sleep(0.2)
        for child in children:  # one ended (or Ctrl-C): the others follow
            if child.poll() is None and not interrupted:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    finally:
        release()
    codes = [child.returncode for child in children]
    return 0 if interrupted or all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
