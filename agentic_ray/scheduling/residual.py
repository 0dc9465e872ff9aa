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
an outlier and its past running time is the best guess of what it still needs. ``heavy`` says whether
the samples' squared coefficient of variation is above 1 (heavier than exponential): below it, as for
every distribution whose mean residual life never exceeds its mean (NBUE; Shaked & Shanthikumar,
"Stochastic Orders", 2007, ch. 3), the plain ``queue x mean`` is already a fair guess. Pure: no clock,
no randomness.
"""

from __future__ import annotations

import heapq
import math
import operator
from bisect import bisect_right
from collections import deque

__all__ = ["HeadOfLine", "ResidualLife"]


class ResidualLife:
    """Mean residual life ``E[S - a | S > a]`` from recent normalised samples (see the module docstring)."""

    __slots__ = ("_dirty", "_samples", "_sorted", "_suffix", "heavy", "min_samples", "rebuild_every")

    def __init__(self, window: int = 512, min_samples: int = 32, rebuild_every: int = 32) -> None:
        if window < 1 or min_samples < 1 or rebuild_every < 1:
            raise ValueError("window, min_samples, rebuild_every: must be >= 1")
        self._samples: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []
        self._suffix: list[float] = [0.0]
        self._dirty = 0
        self.min_samples = min_samples
        self.rebuild_every = rebuild_every
        self.heavy = False  # squared coefficient of variation of the samples above 1 (at the last rebuild)

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
        n = len(xs)
        mean = total / n
        self.heavy = mean > 0 and sum(map(operator.mul, xs, xs)) / n > 2.0 * mean * mean  # E[X^2] > 2 E[X]^2

    def survival(self, age_ms: float, more_ms: float, mean_ms: float) -> float | None:
        """``P(S > age + more | S > age)``: the chance a request running for ``age_ms`` needs more than
        ``more_ms`` more (None before ``min_samples``; older than every sample: 1 when ``more_ms`` is
        below ``max(mean, age)``, its ``residual``, else 0)."""
        both = self.residual_survival(age_ms, more_ms, mean_ms)
        return None if both is None else both[1]

    def residual_survival(self, age_ms: float, more_ms: float, mean_ms: float) -> tuple[float, float] | None:
        """``(residual(age), survival(age, more))`` with one search for the age (the hot path's read)."""
        xs = self._sorted
        if len(xs) < self.min_samples:
            return None
        a = age_ms / mean_ms if age_ms > 0 else 0.0
        i = bisect_right(xs, a)
        n = len(xs) - i
        if n == 0:
            rest = mean_ms if mean_ms > age_ms else age_ms
            return rest, 1.0 if more_ms < rest else 0.0
        rest = mean_ms * (self._suffix[i] / n - a)
        if more_ms <= 0:
            return rest, 1.0
        if more_ms == math.inf:
            return rest, 0.0
        return rest, (len(xs) - bisect_right(xs, a + more_ms / mean_ms, i)) / n

    def residual(self, age_ms: float, mean_ms: float) -> float | None:
        """Expected ms still needed by a request running for ``age_ms`` on a replica with mean ``mean_ms``."""
        both = self.residual_survival(age_ms, 0.0, mean_ms)
        return None if both is None else both[0]


class HeadOfLine:
    """The head-of-line wait on a busy replica, from the requests a router has in flight there.

    The router remembers each request it sent that is still in flight (``sent``, cleared by ``answered``)
    and follows which of them the replica is executing, as its gate picks them: a request sent to a
    replica with a slot free (fewer than ``slots`` taken as executing) starts at once; when an executing
    one is answered, the replica took, for the slot it freed, the most urgent of those still in flight
    (smallest ``order``: the gate's priority, then deadline, then arrival) among those that had reached
    it when it finished: sent at least a round trip before the answer came, the round trip being the
    least of the recent ``latency - service time`` (``observe_round_trip``); none had: the first to
    reach it starts when it does. An answer to a request taken as queued that executed after all (the
    guess was wrong) frees the slot of the latest guess. Taking the oldest request instead (FIFO) is
    wrong under a priority gate: a less urgent request queued before the running one looks like the
    running one, so the router hedged a critical request that was already running a slow draw (doubling
    a 200 ms execution) and aged the wrong request.

    Each executing request's expected remaining time is the mean residual life of recent service times
    (``ResidualLife``) at its age. ``wait`` is the time until a slot frees for a request with ``ahead``
    requests ahead of it (executing included): the slots free at those residuals (a slot with nothing
    taken as executing is free now), and each of the ``ahead - slots`` queued ones ahead takes the
    earliest free slot for ``mean`` ms. One slot: ``residual(age) + (ahead - 1) * mean`` instead of
    ``ahead * mean``. Several slots: only while the service time is heavy-tailed (``ResidualLife.heavy``);
    otherwise the plain ``(ahead - slots + 1) / slots * mean``, which costs no residual look-ups (64
    two-slot replicas with lognormal service: decision p99 133 us with them, 42 us without). A replica
    may be running a request far slower than the mean (bimodal service), which no replica report shows.
    At most ``max_tracked`` requests are remembered per replica (the oldest forgotten first).

    Scale. Samples and ages are divided by a per-(replica, model) scale so that replicas of different
    speed share one shape: the geometric mean of that replica's service times, smoothed with
    ``scale_alpha`` (``observe``): ``log g <- log g + scale_alpha * (log x - log g)``. The arithmetic
    mean of the ``ServiceTable`` swings with every slow draw (5 to 20 ms on a 95 % 5 ms / 5 % 200 ms
    replica), so the same 200 ms request was stored as anything from 10x to 40x its replica's mean and
    a request at its tail was judged almost done: in ``hol`` critical work was sent behind a request
    207 ms into a 276 ms execution, predicted 5 ms from its end. One slow draw moves the geometric
    mean by ``scale_alpha * ln 40`` (18 % at 0.05), and a replica that really slows down is followed
    as fast as by the mean.
    """

    __slots__ = ("_log_scale", "_round_trips", "_running", "_scale", "_slots", "flights", "life", "max_tracked",
                 "round_trip_ms", "scale_alpha")  # fmt: skip

    _QUEUE_STEPS = 16  # queued requests ahead placed one by one; the rest at mean / slots each

    def __init__(self, life: ResidualLife | None = None, max_tracked: int = 1024, scale_alpha: float = 0.05) -> None:
        if not 0 < scale_alpha <= 1:
            raise ValueError(f"scale_alpha: must be in (0, 1], got {scale_alpha!r}")
        self.life = life if life is not None else ResidualLife()
        self.max_tracked = max_tracked
        self.scale_alpha = scale_alpha
        self._log_scale: dict[tuple[str, str], float] = {}  # (replica id, model) -> smoothed log service ms
        self._scale: dict[tuple[str, str], float] = {}  # exp of it
        # replica id -> request id -> (sent at, model, order), insertion-ordered (the first is the oldest)
        self.flights: dict[str, dict[object, tuple[float, str, tuple[float, ...]]]] = {}
        # replica id -> request id taken as executing -> (when it started (s), its scale's key)
        self._running: dict[str, dict[object, tuple[float, tuple[str, str]]]] = {}
        self._slots: dict[str, int] = {}
        self._round_trips: deque[float] = deque(maxlen=64)  # latency - service time (ms) of recent answers
        self.round_trip_ms = 0.0  # the least of them: the path there and back, without queueing

    def observe(self, replica_id: str, model: str, service_ms: float) -> None:
        """One service time measured on ``replica_id``: a residual-life sample (from its second one on,
        divided by the scale before it) and an update of the scale. Not finite or not > 0: ignored."""
        if not (math.isfinite(service_ms) and service_ms > 0):
            return
        key = (replica_id, model)
        x = math.log(service_ms)
        g = self._log_scale.get(key)
        if g is None:
            g = x
        else:
            self.life.observe(service_ms, self._scale[key])
            g += self.scale_alpha * (x - g)
        self._log_scale[key] = g
        self._scale[key] = math.exp(g)

    def observe_round_trip(self, latency_ms: float, service_ms: float) -> None:
        """An answer came ``latency_ms`` after its request was sent, ``service_ms`` of it executing there."""
        gap = latency_ms - service_ms
        if not (math.isfinite(gap) and gap >= 0):
            return
        trips = self._round_trips
        evicted = trips[0] if len(trips) == trips.maxlen else math.inf
        trips.append(gap)
        if gap <= self.round_trip_ms or len(trips) == 1:
            self.round_trip_ms = gap
        elif evicted <= self.round_trip_ms:  # the least one left the window
            self.round_trip_ms = min(trips)

    def scale(self, replica_id: str, model: str) -> float | None:
        """The scale (ms) of ``model`` on ``replica_id``; None before its first sample."""
        return self._scale.get((replica_id, model))

    def sent(self, replica_id: str, request_id: object, model: str, now: float, order: tuple[float, ...] = (),
             slots: int = 1) -> None:  # fmt: skip
        """A request was sent at ``now`` to ``replica_id``, which executes ``slots`` at once; ``order``: its
        place in the replica's queue (smaller starts first; all equal: FIFO)."""
        self._slots[replica_id] = slots
        flights = self.flights.get(replica_id)
        if flights is None:
            flights = self.flights[replica_id] = {}
            self._running[replica_id] = {}
        elif len(flights) >= self.max_tracked:
            self.answered(replica_id, next(iter(flights)), now, executed=False)
        flights[request_id] = (now, model, order)
        running = self._running[replica_id]
        if len(running) < slots:
            running[request_id] = (now + self.round_trip_ms / 2000.0, (replica_id, model))

    def answered(self, replica_id: str, request_id: object, now: float, executed: bool = True) -> None:
        """The answer to a request sent to ``replica_id`` arrived at ``now`` (unknown ids are ignored);
        ``executed``: it ran there (False: refused, dropped or cancelled while queued)."""
        flights = self.flights.get(replica_id)
        if flights is None or request_id not in flights:
            return
        del flights[request_id]
        running = self._running[replica_id]
        if request_id in running:
            del running[request_id]
        elif executed and running:
            del running[next(reversed(running))]  # the latest guess was the one queued
        else:
            return
        self._fill(replica_id, flights, running, now)

    def _fill(self, replica_id: str, flights: dict[object, tuple[float, str, tuple[float, ...]]],
              running: dict[object, tuple[float, tuple[str, str]]], now: float) -> None:  # fmt: skip
        """A slot freed half a round trip before ``now``: the most urgent requests that had reached the
        replica by then start; with slots still free, the next ones to reach it start when they do."""
        free = self._slots.get(replica_id, 1) - len(running)
        half = self.round_trip_ms / 2000.0
        there = now - 2 * half  # sent by then: at the replica when the slot freed
        while free > 0:
            nxt = None
            for k, f in flights.items():
                if f[0] <= there and k not in running and (nxt is None or f[2] < flights[nxt][2]):
                    nxt = k
            if nxt is None:
                break
            running[nxt] = (now - half, (replica_id, flights[nxt][1]))
            free -= 1
        for k, f in flights.items():
            if free <= 0:
                break
            if k not in running:
                running[k] = (f[0] + half, (replica_id, f[1]))
                free -= 1

    def running(self, replica_id: str, request_id: object) -> bool:
        """True when ``request_id`` is taken as executing on ``replica_id``, False when it waits behind
        other work or is not in flight there."""
        running = self._running.get(replica_id)
        return running is not None and request_id in running

    def late(
        self, replica_id: str, now: float, ahead: int, mean_ms: float, slots: int, within_ms: float
    ) -> float | None:
        """The chance that no slot of ``replica_id`` frees for a request with ``ahead >= slots`` requests
        ahead within ``within_ms`` (queued ones ahead at ``mean_ms`` each): the chance the executing one
        (several slots: every one of them) still runs ``within_ms - queued ahead x mean`` from now. None
        when too few samples are known or other requests are queued ahead on several slots."""
        return self.estimate(replica_id, now, ahead, mean_ms, slots, within_ms)[1]

    def wait(self, replica_id: str, now: float, ahead: int, mean_ms: float, slots: int = 1) -> float:
        """Expected wait (ms) until a slot of ``replica_id`` (``slots`` of them) frees for a request with
        ``ahead >= slots`` requests ahead of it, queued ones at ``mean_ms`` each (class docstring); each
        executing one's remaining time from its age and its model's scale there (``mean_ms`` before one
        is known). ``(ahead - slots + 1) / slots * mean_ms`` when too few samples are known."""
        return self.estimate(replica_id, now, ahead, mean_ms, slots, math.inf)[0]

    def estimate(
        self, replica_id: str, now: float, ahead: int, mean_ms: float, slots: int, within_ms: float
    ) -> tuple[float, float | None]:
        """``(wait, late)`` in one pass over the executing requests (``wait`` and ``late``)."""
        queued = ahead - slots
        plain = (queued + 1) / slots * mean_ms
        running = self._running.get(replica_id)
        if not running or (slots > 1 and not self.life.heavy):
            return plain, None  # several slots: only a heavy tail makes the executing requests' ages matter
        both = self.life.residual_survival
        scale = self._scale
        more = within_ms - queued * mean_ms
        p = 1.0
        free: list[float] = []
        for started, key in running.values():
            got = both((now - started) * 1000.0, more, scale.get(key) or mean_ms)
            if got is None:
                return plain, None
            free.append(got[0])
            p *= got[1]
        if slots == 1:
            return free[0] + queued * mean_ms, p
        late = None if queued > 0 else (p if len(free) >= slots else 0.0)
        if len(free) < slots:
            free.extend([0.0] * (slots - len(free)))
        elif len(free) > slots:
            free.sort()
            del free[slots:]
        if queued == 0:
            return min(free), late
        heapq.heapify(free)
        steps = min(queued, self._QUEUE_STEPS)
        for _ in range(steps):
            heapq.heapreplace(free, free[0] + mean_ms)
        return free[0] + (queued - steps) / slots * mean_ms, late
