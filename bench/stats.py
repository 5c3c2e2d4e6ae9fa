"""Percentiles and the small records every phase returns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: Sequence[float], prefix: str) -> dict[str, Any]:
    """`{prefix}_p50_ms`, `_p95_ms`, `_p99_ms`, `_max_ms` and `_samples`, in milliseconds."""
    summary: dict[str, Any] = {f"{prefix}_samples": len(seconds)}
    for name, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)):
        value = percentile(seconds, q)
        # None when no value, or when the rank falls on a command never answered (infinite).
        finite = value if value is not None and math.isfinite(value) else None
        summary[f"{prefix}_{name}_ms"] = None if finite is None else round(finite * 1000, 2)
    return summary


def per_second(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0
