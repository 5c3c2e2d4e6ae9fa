"""py-spy over a running service process, and the hot spots of what it recorded."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """`py-spy record --pid`, in collapsed-stack (raw) format, until `stop()`."""

    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        self.log = output.with_suffix(".log")
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = pid

    def start(self) -> bool:
        binary = py_spy()
        if binary is None:
            return False
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [binary, "record", "--pid", str(self._pid), "--format", "raw", "--rate", "200",
                 "--nonblocking", "--output", str(self.output)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return True

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _short(frame: str) -> str:
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    path = found["file"]
    for marker in ("site-packages/", f"{REPO}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{found['func']} ({path})"


PROJECT = ("services/", "projections/", "contracts/")
WORKER = "_worker (concurrent/futures/thread.py)"


def hot_spots(raw: Path, top: int = 12) -> dict[str, Any]:
    """Where the active samples went: functions on top of the stack (self), the project's own
    functions anywhere in it (inclusive), and the event loop against the `to_thread` workers."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    in_workers = 0
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_short(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        in_workers += samples if WORKER in frames else 0
        for frame in set(frames):
            if any(f"({root}" in frame for root in PROJECT) and "services/cli.py" not in frame:
                inclusive[frame] += samples

    def ranked(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    workers_pct = round(100 * in_workers / total, 1) if total else 0.0
    return {
        "samples": total,
        "worker_threads_pct": workers_pct,
        "event_loop_thread_pct": round(100 - workers_pct, 1),
        "self_pct": ranked(own),
        "inclusive_pct": ranked(inclusive),
    }
