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

from agentic_ray.scheduling.service_table import ServiceTable

__all__ = ["HeadOfLine", "ResidualLife"]


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


class HeadOfLine:
    """The head-of-line wait on a busy single-slot replica, from the requests a router has in flight there.

    The router remembers when it sent each request still in flight (``sent``, cleared by ``answered``);
    the oldest one on a replica is taken as the running one, started at ``max(sent, last answer from that
    replica)``, and its expected remaining time is the mean residual life of recent service times
    (``ResidualLife``). ``wait`` is then ``residual(age) + (ahead - 1) * mean`` instead of
    ``ahead * mean``: a single-slot replica may be running a request far slower than the mean (bimodal
    service), which no replica report shows. At most ``max_tracked`` requests are remembered per replica
    (the oldest forgotten first).
    """

    __slots__ = ("_last_answer", "flights", "life", "max_tracked")

    def __init__(self, life: ResidualLife | None = None, max_tracked: int = 1024) -> None:
        self.life = life if life is not None else ResidualLife()
        self.max_tracked = max_tracked
        # replica id -> request id -> (sent at, model), insertion-ordered (the first is the oldest)
        self.flights: dict[str, dict[object, tuple[float, str]]] = {}
        self._last_answer: dict[str, float] = {}

    def sent(self, replica_id: str, request_id: object, model: str, now: float) -> None:
        """A request was sent to ``replica_id`` at ``now``."""
        flights = self.flights.get(replica_id)
        if flights is None:
            flights = self.flights[replica_id] = {}
        elif len(flights) >= self.max_tracked:
            del flights[next(iter(flights))]
        flights[request_id] = (now, model)

    def answered(self, replica_id: str, request_id: object, now: float) -> None:
        """The answer to a request sent to ``replica_id`` arrived at ``now`` (unknown ids are ignored)."""
        flights = self.flights.get(replica_id)
        if flights is not None and flights.pop(request_id, None) is not None:
            self._last_answer[replica_id] = now

    def running(self, replica_id: str, request_id: object) -> bool:
        """True when ``request_id`` is the oldest request in flight on ``replica_id`` (taken as the one
        executing there), False when it waits behind another one or is not in flight there."""
        flights = self.flights.get(replica_id)
        return bool(flights) and next(iter(flights)) == request_id  # type: ignore[arg-type]

    def wait(self, replica_id: str, now: float, ahead: int, mean_ms: float, table: ServiceTable) -> float:
        """Expected wait (ms) behind ``ahead`` requests on single-slot ``replica_id`` at ``mean_ms`` each;
        the oldest in-flight request's own mean comes from ``table`` (``mean_ms`` before it has one).
        ``ahead * mean_ms`` when nothing is in flight or too few samples are known."""
        flights = self.flights.get(replica_id)
        if not flights:
            return ahead * mean_ms
        sent, model = flights[next(iter(flights))]
        started = self._last_answer.get(replica_id, sent)
        if sent > started:
            started = sent
        rest = self.life.residual((now - started) * 1000.0, table.mean(replica_id, model) or mean_ms)
        if rest is None:
            return ahead * mean_ms
        return rest + (ahead - 1) * mean_ms
