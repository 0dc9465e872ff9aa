"""Per-class outcome counters and latency summaries of one simulated run.

Latency is from arrival at the router to the response's return (network both ways included).
``slo_attainment`` = completed within the request's deadline / all requests of the class (shed and
failed count as misses). Percentiles use the nearest-rank method (Hyndman & Fan 1996, definition 1):
p-quantile = the ceil(p * n)-th smallest value; they cover completed requests only (``None`` when
there are none). Requests that arrive during warm-up are not recorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["ClassStats", "percentile", "summarize"]


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank ``p``-quantile (0 < p <= 1) of an ascending list; ``None`` when it is empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    return sorted_values[max(0, min(n - 1, math.ceil(p * n) - 1))]


@dataclass(slots=True)
class ClassStats:
    """Running counters of one class (or of all classes)."""

    requests: int = 0
    completed: int = 0
    shed: int = 0
    failed: int = 0
    within_budget: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def merge(self, other: ClassStats) -> None:
        self.requests += other.requests
        self.completed += other.completed
        self.shed += other.shed
        self.failed += other.failed
        self.within_budget += other.within_budget
        self.latencies_ms.extend(other.latencies_ms)


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def summarize(stats: ClassStats) -> dict[str, float | int | None]:
    """The JSON fields of one class: counts, mean/p50/p99/p999 latency (ms) and SLO attainment."""
    lat = sorted(stats.latencies_ms)
    return {
        "requests": stats.requests,
        "completed": stats.completed,
        "shed": stats.shed,
        "failed": stats.failed,
        "mean_ms": _round(sum(lat) / len(lat)) if lat else None,
        "p50_ms": _round(percentile(lat, 0.50)),
        "p99_ms": _round(percentile(lat, 0.99)),
        "p999_ms": _round(percentile(lat, 0.999)),
        "slo_attainment": _round(stats.within_budget / stats.requests, 6) if stats.requests else None,
    }
