"""Baseline routers for comparison: ``round_robin``, ``random``, ``least_loaded``, ``peak_ewma_p2c``.

All are policy-unaware like Ray Serve's own routers: they ignore deadlines and classes, route only to
healthy replicas with room (``ongoing < max_ongoing``), return ``Wait`` when every replica is full (the
caller holds requests FIFO: ``wait_order = (arrival,)``) and run replicas FIFO. Placement is ignored by
default (``respect_placement=False``), as for ``pow2``; pass ``True`` to filter by ``request.allows``.

- ``round_robin``: the next replica in list order after the last one chosen, skipping full ones.
- ``random``: uniform among replicas with room.
- ``least_loaded``: fewest ``ongoing`` (``max`` of the view and the local pending count); ties at random.
- ``peak_ewma_p2c``: power of two choices on Finagle/Linkerd's cost ``peak_ewma_latency * (pending + 1)``
  (``PeakEwma`` per replica fed by ``observe``'s latency; unseen replicas start at ``default_rtt_ms``).
  Source: Finagle ``Balancers.p2cPeakEwma``, Linkerd's "Beyond Round Robin" (2016), tower ``PeakEwma``.
"""

from __future__ import annotations

import math
import random

from agentic_ray.scheduling.estimators import PeakEwma
from agentic_ray.scheduling.routers.base import FIFO, PendingRouter
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Shed, Wait

__all__ = ["LeastLoadedRouter", "PeakEwmaP2CRouter", "ROUTERS", "RandomRouter", "RoundRobinRouter"]


class _UnawareRouter(PendingRouter):
    replica_discipline = FIFO

    def __init__(self, rng: random.Random, *, respect_placement: bool = False) -> None:
        super().__init__(rng)
        self.respect_placement = respect_placement

    def _open(self, request: Request, replicas: list[ReplicaView]) -> list[ReplicaView] | Decision:
        """Healthy replicas with room, or the decision to return when there are none."""
        allows = request.allows if self.respect_placement else None
        placed = replicas if allows is None else [r for r in replicas if allows(r.attrs)]
        if not placed:
            return Shed("no_eligible_replica", None, request.rule_ids)
        healthy = [r for r in placed if r.healthy]
        if not healthy:
            return Shed("no_healthy_replica", 1.0, request.rule_ids)
        open_ = [r for r in healthy if r.ongoing < r.max_ongoing]
        return open_ if open_ else Wait("all_replicas_full")


class RoundRobinRouter(_UnawareRouter):
    """Next replica in order, skipping full ones."""

    name = "round_robin"

    def __init__(self, rng: random.Random, *, respect_placement: bool = False) -> None:
        super().__init__(rng, respect_placement=respect_placement)
        self._next = 0

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Route to the next replica with room in list order."""
        open_ = self._open(request, replicas)
        if not isinstance(open_, list):
            return open_
        n = len(replicas)
        ok = {id(r) for r in open_}
        for k in range(n):
            i = (self._next + k) % n
            if id(replicas[i]) in ok:
                self._next = i + 1
                return Route(replicas[i].replica_id, reason="round_robin")
        return Wait("all_replicas_full")  # pragma: no cover - open_ is non-empty


class RandomRouter(_UnawareRouter):
    """Uniform among replicas with room."""

    name = "random"

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Route to a random replica with room."""
        open_ = self._open(request, replicas)
        if not isinstance(open_, list):
            return open_
        return Route(open_[self.rng.randrange(len(open_))].replica_id, reason="random")


class LeastLoadedRouter(_UnawareRouter):
    """Fewest requests in flight; ties broken at random."""

    name = "least_loaded"

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Route to the replica with the fewest in flight."""
        open_ = self._open(request, replicas)
        if not isinstance(open_, list):
            return open_
        pending = self.pending
        best: list[ReplicaView] = []
        low = None
        for r in open_:
            load = max(r.ongoing, pending.get(r.replica_id, 0))
            if low is None or load < low:
                low, best = load, [r]
            elif load == low:
                best.append(r)
        pick = best[0] if len(best) == 1 else best[self.rng.randrange(len(best))]
        return Route(pick.replica_id, reason="least_loaded")


class PeakEwmaP2CRouter(_UnawareRouter):
    """Power of two choices on peak-EWMA latency x (pending + 1)."""

    name = "peak_ewma_p2c"

    def __init__(
        self,
        rng: random.Random,
        *,
        decay_s: float = 10.0,
        default_rtt_ms: float = 30.0,
        respect_placement: bool = False,
    ) -> None:
        super().__init__(rng, respect_placement=respect_placement)
        self.decay_s = decay_s
        self.default_rtt_ms = default_rtt_ms
        self.latency: dict[str, PeakEwma] = {}

    def _cost(self, r: ReplicaView, now: float) -> float:
        est = self.latency.get(r.replica_id)
        rtt = self.default_rtt_ms if est is None else est.estimate(now)
        return rtt * (max(r.ongoing, self.pending.get(r.replica_id, 0)) + 1)

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Sample two replicas with room; route to the lower cost."""
        open_ = self._open(request, replicas)
        if not isinstance(open_, list):
            return open_
        n = len(open_)
        if n == 1:
            return Route(open_[0].replica_id, reason="peak_ewma_p2c")
        i = self.rng.randrange(n)
        j = self.rng.randrange(n - 1)
        if j >= i:
            j += 1
        a, b = open_[i], open_[j]
        pick = a if self._cost(a, now) <= self._cost(b, now) else b
        return Route(pick.replica_id, reason="peak_ewma_p2c")

    def observe(
        self, request: Request, replica_id: str, service_ms: float, latency_ms: float, ok: bool, now: float
    ) -> None:
        """Feed the replica's peak-EWMA latency and clear its pending count."""
        super().observe(request, replica_id, service_ms, latency_ms, ok, now)
        if latency_ms is None or not math.isfinite(latency_ms) or latency_ms < 0:
            return
        est = self.latency.get(replica_id)
        if est is None:
            est = self.latency[replica_id] = PeakEwma(self.decay_s)
        est.observe(latency_ms, now)


ROUTERS = (RoundRobinRouter, RandomRouter, LeastLoadedRouter, PeakEwmaP2CRouter)
