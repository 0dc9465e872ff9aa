"""Per-class outcome counters and latency summaries of one simulated run.

Latency is from arrival at the router to the response's return (network both ways included).
``slo_attainment`` = completed within the request's deadline / all requests of the class (shed and
failed count as misses). Percentiles use the nearest-rank method (Hyndman & Fan 1996, definition 1):
p-quantile = the ceil(p * n)-th smallest value; they cover completed requests only (``None`` when
there are none). Requests that arrive during warm-up are not recorded.

Streams (requests with ``prompt_tokens``): ``ttft`` is from arrival to the first token's return, ``tpot``
the time per output token after the first. ``ttft_attainment`` = streams whose first token came within
their class's ``ttft_ms`` / all stream requests of classes that set it (shed and failed count as
misses), ``tpot_attainment`` the same for ``tpot_ms`` (a one-token stream meets it). These fields appear
only for classes (and the overall row) with stream requests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["ClassStats", "bootstrap_ci", "percentile", "summarize"]

T = TypeVar("T")


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank ``p``-quantile (0 < p <= 1) of an ascending list; ``None`` when it is empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    return sorted_values[max(0, min(n - 1, math.ceil(p * n) - 1))]


def bootstrap_ci(samples: Sequence[T], statistic: Callable[[list[T]], float], rng: random.Random,
                 resamples: int = 2000) -> tuple[float, float]:  # fmt: skip
    """The 95 % percentile-bootstrap confidence interval of ``statistic`` over ``samples`` (Efron &
    Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13): ``statistic`` of ``resamples``
    resamples of ``len(samples)`` drawn with replacement from ``rng``, sorted, and their
    ``int(0.025 * resamples)``-th and ``int(0.975 * resamples) + 1``-th values. A sample may be a block
    (a window pair, a round) resampled whole, which keeps slow drift inside a block out of the interval
    (Kunsch 1989). Raises ``ValueError`` on no samples or fewer than one resample."""
    if not samples:
        raise ValueError("samples: need at least one")
    if resamples < 1:
        raise ValueError(f"resamples: must be at least 1, got {resamples}")
    values = sorted(statistic(rng.choices(samples, k=len(samples))) for _ in range(resamples))
    return values[max(0, int(0.025 * resamples) - 1)], values[min(resamples - 1, int(0.975 * resamples))]


@dataclass(slots=True)
class ClassStats:
    """Running counters of one class (or of all classes)."""

    requests: int = 0
    completed: int = 0
    shed: int = 0
    failed: int = 0
    within_budget: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)  # completed streams
    tpot_ms: list[float] = field(default_factory=list)  # completed streams of two tokens or more
    ttft_requests: int = 0  # stream requests of a class with ttft_ms (any outcome)
    ttft_within: int = 0
    tpot_requests: int = 0  # stream requests of a class with tpot_ms (any outcome)
    tpot_within: int = 0

    def record_stream(self, ttft_ms: float | None, tpot_ms: float | None, ttft_budget: float | None,
                      tpot_budget: float | None) -> None:  # fmt: skip
        """One stream request's figures (``ttft_ms`` None: it never produced a token) against its class's
        token budgets (None: not set)."""
        if ttft_ms is not None:
            self.ttft_ms.append(ttft_ms)
        if tpot_ms is not None:
            self.tpot_ms.append(tpot_ms)
        if ttft_budget is not None:
            self.ttft_requests += 1
            self.ttft_within += ttft_ms is not None and ttft_ms <= ttft_budget + 1e-9
        if tpot_budget is not None:
            self.tpot_requests += 1
            self.tpot_within += ttft_ms is not None and (tpot_ms is None or tpot_ms <= tpot_budget + 1e-9)

    def merge(self, other: ClassStats) -> None:
        self.requests += other.requests
        self.completed += other.completed
        self.shed += other.shed
        self.failed += other.failed
        self.within_budget += other.within_budget
        self.latencies_ms.extend(other.latencies_ms)
        self.ttft_ms.extend(other.ttft_ms)
        self.tpot_ms.extend(other.tpot_ms)
        self.ttft_requests += other.ttft_requests
        self.ttft_within += other.ttft_within
        self.tpot_requests += other.tpot_requests
        self.tpot_within += other.tpot_within


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def summarize(stats: ClassStats) -> dict[str, float | int | None]:
    """The JSON fields of one class: counts, mean/p50/p99/p999 latency (ms) and SLO attainment; with
    streams, TTFT / TPOT p50 and p99 and their attainment."""
    lat = sorted(stats.latencies_ms)
    out: dict[str, float | int | None] = {
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
    if stats.ttft_ms or stats.ttft_requests or stats.tpot_requests:
        ttft, tpot = sorted(stats.ttft_ms), sorted(stats.tpot_ms)
        out.update({
            "ttft_p50_ms": _round(percentile(ttft, 0.50)),
            "ttft_p99_ms": _round(percentile(ttft, 0.99)),
            "tpot_p50_ms": _round(percentile(tpot, 0.50)),
            "tpot_p99_ms": _round(percentile(tpot, 0.99)),
            "ttft_attainment": _round(stats.ttft_within / stats.ttft_requests, 6) if stats.ttft_requests else None,
            "tpot_attainment": _round(stats.tpot_within / stats.tpot_requests, 6) if stats.tpot_requests else None,
        })  # fmt: skip
    return out
