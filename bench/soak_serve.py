"""`python -m bench.soak_serve`: `flowledger serve` (every role) under tracemalloc, for the soak.

Started by `bench.soak` in place of `python -m services.cli serve` when SOAK_TRACEMALLOC=1. It
serves exactly as the CLI does (the same logging set-up, `services.server.serve` with every
role) with tracemalloc on from the first line, keeping SOAK_TRACEMALLOC_FRAMES frames per
allocation (default 1, file:line alone; more frames add call stacks, at a much higher cost).

Each SIGUSR1 takes a snapshot and writes `snapshot-<n>.json` (n = 1, 2, ...) into
SOAK_TRACEMALLOC_DIR: the traced total, then the allocation sites that grew most since the
previous snapshot and since the first, by file:line (`lineno`) and, with more than one frame,
the call stacks of the top few (`traceback`). The first snapshot is the baseline and lists
nothing grown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import linecache
import logging
import os
import signal
import tracemalloc
import types
from collections import Counter
from pathlib import Path
from typing import Any

TOP_SITES = 30
TOP_TRACEBACKS = 8
TOP_TYPES = 25
HOLDER_TYPES = 5  # the most grown types (not builtins) whose holders are looked for
HOLDER_SAMPLES = 2
HOLDER_DEPTH = 6
_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, linecache.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def _site(frame: tracemalloc.Frame) -> str:
    return f"{_short(frame.filename)}:{frame.lineno}"


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    return filename.removeprefix(root)


def _source(frame: tracemalloc.Frame) -> str:
    return linecache.getline(frame.filename, frame.lineno).strip()[:160]


def _growth(new: tracemalloc.Snapshot, old: tracemalloc.Snapshot) -> list[dict[str, Any]]:
    stats = [s for s in new.compare_to(old, "lineno") if s.size_diff > 0]
    stats.sort(key=lambda s: s.size_diff, reverse=True)
    return [
        {
            "site": _site(s.traceback[0]),
            "code": _source(s.traceback[0]),
            "grown_kib": round(s.size_diff / 1024, 1),
            "grown_blocks": s.count_diff,
            "now_kib": round(s.size / 1024, 1),
            "now_blocks": s.count,
        }
        for s in stats[:TOP_SITES]
    ]


def _stacks(new: tracemalloc.Snapshot, old: tracemalloc.Snapshot) -> list[dict[str, Any]]:
    stats = [s for s in new.compare_to(old, "traceback") if s.size_diff > 0]
    stats.sort(key=lambda s: s.size_diff, reverse=True)
    return [
        {
            "grown_kib": round(s.size_diff / 1024, 1),
            "grown_blocks": s.count_diff,
            # innermost frame first
            "stack": [f"{_site(f)}  {_source(f)}" for f in reversed(list(s.traceback))],
        }
        for s in stats[:TOP_TRACEBACKS]
    ]


def _type_name(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _describe(holder: Any, child: Any, ignore: set[int]) -> tuple[str, Any]:
    """How `holder` refers to `child`; an instance's __dict__ is named after its owner, which is
    then the next link of the chain."""
    if isinstance(holder, dict):
        slot = next((f"[{k!r}]"[:80] for k, v in holder.items() if v is child), None)
        if slot is None:
            with contextlib.suppress(TypeError):  # an unhashable child is no key
                slot = " key" if child in holder else None
        for owner in gc.get_referrers(holder):
            if id(owner) not in ignore and getattr(owner, "__dict__", None) is holder:
                attribute = slot.strip("[']") if slot and slot.startswith("['") else slot
                return f"{_type_name(type(owner))}.{attribute}", owner
        return f"{_type_name(type(holder))}(len={len(holder)}){slot or ''}", holder
    if isinstance(holder, list | tuple | set | frozenset):
        return f"{_type_name(type(holder))}(len={len(holder)})", holder
    return _type_name(type(holder)), holder


def _holder_chain(obj: Any, ignore: set[int]) -> list[str]:
    """Who keeps `obj` alive: a chain of referrers, a dict or an object before a list (an LRU
    cache's linked list would otherwise be followed round and round)."""
    chain = [_type_name(type(obj))]
    child = obj
    for _ in range(HOLDER_DEPTH):
        referrers = [
            r
            for r in gc.get_referrers(child)
            if id(r) not in ignore and not isinstance(r, types.FrameType)
        ]
        ignore.add(id(referrers))
        if not referrers:
            chain.append("(nothing traced)")
            break
        referrers.sort(key=lambda r: isinstance(r, list | tuple | set | frozenset))
        text, child = _describe(referrers[0], child, ignore)
        chain.append(text)
        del referrers
        if isinstance(child, types.ModuleType | type):
            break
    return chain


class Dumper:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.first: tracemalloc.Snapshot | None = None
        self.previous: tracemalloc.Snapshot | None = None
        self.previous_types: Counter[str] = Counter()
        self.count = 0

    def objects(self, report: dict[str, Any]) -> None:
        """Live objects by type (the collector's own list): the types that grew most since the
        previous snapshot, and for the first few that are not builtins, who holds samples."""
        gc.collect()
        everything = gc.get_objects()
        counts = Counter(_type_name(type(o)) for o in everything)
        if self.previous_types:
            grown = [(n, c - self.previous_types[n]) for n, c in counts.items()]
            grown = sorted((g for g in grown if g[1] > 0), key=lambda g: g[1], reverse=True)
            report["objects_grown_since_previous"] = [
                {"type": name, "grown": diff, "now": counts[name]}
                for name, diff in grown[:TOP_TYPES]
            ]
            wanted = [n for n, _ in grown if "." in n and not n.startswith("bench.")]
            wanted = wanted[:HOLDER_TYPES]
            samples: dict[str, list[Any]] = {name: [] for name in wanted}
            for o in reversed(everything):  # the newest first, roughly
                name = _type_name(type(o))
                if name in samples and len(samples[name]) < HOLDER_SAMPLES:
                    samples[name].append(o)
            ignore = {id(everything), id(samples), *(id(v) for v in samples.values())}
            report["holders"] = {
                name: [_holder_chain(o, ignore) for o in objs] for name, objs in samples.items()
            }
            del samples
        del everything
        self.previous_types = counts

    def dump(self) -> None:
        self.count += 1
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
        traced, peak = tracemalloc.get_traced_memory()
        report: dict[str, Any] = {
            "snapshot": self.count,
            "traced_mib": round(traced / 2**20, 1),
            "traced_peak_mib": round(peak / 2**20, 1),
            "tracemalloc_overhead_mib": round(tracemalloc.get_tracemalloc_memory() / 2**20, 1),
            "blocks": len(snapshot.traces),
        }
        self.objects(report)
        if self.first is not None and self.previous is not None:
            report["grown_since_previous"] = _growth(snapshot, self.previous)
            report["grown_since_first"] = _growth(snapshot, self.first)
            if tracemalloc.get_traceback_limit() > 1:
                report["stacks_grown_since_previous"] = _stacks(snapshot, self.previous)
        else:
            self.first = snapshot
        self.previous = snapshot
        path = self.out_dir / f"snapshot-{self.count}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.rename(path)  # the soak waits for the file: it appears whole


async def _serve(dumper: Dumper) -> None:
    from services.bootstrap import ROLES
    from services.server import serve
    from services.settings import Settings

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dumper.dump)
    await serve(Settings(), ROLES)


def main() -> int:
    tracemalloc.start(int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "1")))
    out_dir = Path(os.environ["SOAK_TRACEMALLOC_DIR"])
    out_dir.mkdir(parents=True, exist_ok=True)
    # As services.cli does for `serve`.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("aiokafka", "faststream", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(_serve(Dumper(out_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
