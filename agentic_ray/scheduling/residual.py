"""Mean residual life of a service time, from a window of recent samples.

A request that has already run for ``a`` ms is expected to need ``E[S - a | S > a]`` ms more (the mean
residual life of the service-time distribution S; e.g. Harchol-Balter, "Performance Modeling and Design
of Computer Systems", 2013, ch. 20, on residual time in heavy-tailed and bimodal workloads). For a
bimodal service (95 % take 5 ms, 5 % take 200 ms), a request still running after 10 ms is one of the
slow ones and will hold its slot about 190 ms more, while the mean service time alone says 15 ms.

``ResidualLife`` keeps the last ``window`` samples, each divided by the mean service time of the replica
it ran on (so replicas of different speed share one shape), and answers::

    residual(age, mean) = mean * (sum(x for x > a') / count(x > a') - a'),   a' = age / mean

from a sorted copy with suffix sums (rebuilt after every ``rebuild_every`` new samples: a query is one
binary search). Before ``min_samples`` samples it returns ``None`` (the caller falls back to the mean);
when no sample exceeds ``a'`` (older than anything seen) it returns ``max(mean, age)``: the request is
an outlier and its past running time is the best guess of what it still needs. Pure: no clock, no
randomness.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque

__all__ = ["ResidualLife"]


class ResidualLife:
    """Mean residual life ``E[S - a | S > a]`` from recent normalised samples (see the module docstring)."""

    __slots__ = ("_dirty", "_samples", "_sorted", "_suffix", "min_samples", "rebuild_every")

    def __init__(self, window: int = 512, min_samples: int = 32, rebuild_every: int = 32) -> None:
        if window < 1 or min_samples < 1 or rebuild_every < 1:
            raise ValueError("window, min_samples, rebuild_every: must be >= 1")
        self._samples: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []
        self._suffix: list[float] = [0.0]
        self._dirty = 0
        self.min_samples = min_samples
        self.rebuild_every = rebuild_every

    def observe(self, service_ms: float, mean_ms: float) -> None:
        """Add a service time measured on a replica whose mean service time is ``mean_ms``."""
        if not (math.isfinite(service_ms) and service_ms >= 0 and math.isfinite(mean_ms) and mean_ms > 0):
            return
        self._samples.append(service_ms / mean_ms)
        self._dirty += 1
        if self._dirty >= self.rebuild_every or (not self._sorted and len(self._samples) >= self.min_samples):
            self._rebuild()

    def _rebuild(self) -> None:
        xs = sorted(self._samples)
        suffix = [0.0] * (len(xs) + 1)
        total = 0.0
        for i in range(len(xs) - 1, -1, -1):
            total += xs[i]
            suffix[i] = total
        self._sorted, self._suffix, self._dirty = xs, suffix, 0

    def residual(self, age_ms: float, mean_ms: float) -> float | None:
        """Expected ms still needed by a request running for ``age_ms`` on a replica with mean ``mean_ms``."""
        xs = self._sorted
        if len(xs) < self.min_samples:
            return None
        a = age_ms / mean_ms if age_ms > 0 else 0.0
        i = bisect_right(xs, a)
        n = len(xs) - i
        if n == 0:
            return max(mean_ms, age_ms)
        return mean_ms * (self._suffix[i] / n - a)
