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

    The router remembers each request it sent that is still in flight (``sent``, cleared by ``answered``)
    and follows which of them the replica is executing, as its gate picks them: a request sent to a
    replica with nothing in flight starts at once; when the executing one is answered (or another one
    that executed: the guess was wrong), the replica took the most urgent of those still in flight,
    smallest ``order`` first (the gate's priority, then deadline, then arrival), at that moment. Taking
    the oldest one instead (FIFO) is wrong under a priority gate: a less urgent request queued before
    the running one looks like the running one, so the router hedged a critical request that was
    already running a slow draw (doubling a 200 ms execution) and aged the wrong request. The executing
    request's expected remaining time is the mean residual life of recent service times
    (``ResidualLife``); ``wait`` is then ``residual(age) + (ahead - 1) * mean`` instead of
    ``ahead * mean``: a single-slot replica may be running a request far slower than the mean (bimodal
    service), which no replica report shows. At most ``max_tracked`` requests are remembered per replica
    (the oldest forgotten first).
    """

    __slots__ = ("_running", "flights", "life", "max_tracked")

    def __init__(self, life: ResidualLife | None = None, max_tracked: int = 1024) -> None:
        self.life = life if life is not None else ResidualLife()
        self.max_tracked = max_tracked
        # replica id -> request id -> (sent at, model, order), insertion-ordered (the first is the oldest)
        self.flights: dict[str, dict[object, tuple[float, str, tuple[float, ...]]]] = {}
        # replica id -> (request id taken as executing, when it started)
        self._running: dict[str, tuple[object, float]] = {}

    def sent(self, replica_id: str, request_id: object, model: str, now: float, order: tuple[float, ...] = ()) -> None:
        """A request was sent to ``replica_id`` at ``now``; ``order``: its place in the replica's queue
        (smaller starts first; all equal: FIFO)."""
        flights = self.flights.get(replica_id)
        if flights is None:
            flights = self.flights[replica_id] = {}
        elif len(flights) >= self.max_tracked:
            self._drop(replica_id, flights, next(iter(flights)), now)
        flights[request_id] = (now, model, order)
        if replica_id not in self._running:
            self._running[replica_id] = (request_id, now)

    def answered(self, replica_id: str, request_id: object, now: float, executed: bool = True) -> None:
        """The answer to a request sent to ``replica_id`` arrived at ``now`` (unknown ids are ignored);
        ``executed``: it ran there (False: refused, dropped or cancelled while queued)."""
        flights = self.flights.get(replica_id)
        if flights is None or request_id not in flights:
            return
        running = self._running.get(replica_id)
        if executed or (running is not None and running[0] == request_id):
            self._drop(replica_id, flights, request_id, now)
        else:
            del flights[request_id]

    def _drop(self, replica_id: str, flights: dict[object, tuple[float, str, tuple[float, ...]]], request_id: object,
              now: float) -> None:  # fmt: skip
        """``request_id`` left the replica's slot at ``now``: the most urgent one in flight starts."""
        del flights[request_id]
        if flights:
            nxt = min(flights, key=lambda k: flights[k][2])
            self._running[replica_id] = (nxt, now)
        else:
            self._running.pop(replica_id, None)

    def running(self, replica_id: str, request_id: object) -> bool:
        """True when ``request_id`` is taken as the one executing on ``replica_id``, False when it waits
        behind another one or is not in flight there."""
        running = self._running.get(replica_id)
        return running is not None and running[0] == request_id

    def wait(self, replica_id: str, now: float, ahead: int, mean_ms: float, table: ServiceTable) -> float:
        """Expected wait (ms) behind ``ahead`` requests on single-slot ``replica_id`` at ``mean_ms`` each;
        the executing request's own mean comes from ``table`` (``mean_ms`` before it has one).
        ``ahead * mean_ms`` when nothing is in flight or too few samples are known."""
        running = self._running.get(replica_id)
        if running is None:
            return ahead * mean_ms
        request_id, started = running
        model = self.flights[replica_id][request_id][1]
        rest = self.life.residual((now - started) * 1000.0, table.mean(replica_id, model) or mean_ms)
        if rest is None:
            return ahead * mean_ms
        return rest + (ahead - 1) * mean_ms
