"""``pow2``: a model of Ray Serve 2.60's ``PowerOfTwoChoicesRequestRouter``.

Serve (``serve/_private/request_router/pow_2_router.py`` and ``request_router.py``): requests are
routed in FIFO order; for each, two distinct candidates are sampled uniformly at random, each replica's
queue length is probed, replicas at ``max_ongoing_requests`` are discarded, and the shorter queue wins
(ties: the first sampled). When both are full it backs off and samples again, forever.

This model: the same sampling (one candidate: it; two: random order; more: ``i = randrange(n)``,
``j = randrange(n - 1)``, ``j += j >= i``) on ``ReplicaView.ongoing`` (Serve's queue-length cache).
Serve's retries after back-off are modelled as up to ``max_attempts`` fresh samples within one decision
(the back-off, 25 ms+, is short next to service times); when every replica is full, or all attempts hit
full replicas, it returns ``Wait`` and the caller holds the request FIFO (``wait_order = (arrival,)``).
Unhealthy replicas are skipped (Serve drops dead replicas from its candidate set).

Placement: Serve's router knows nothing of the agentic policy, so ``pow2`` ignores ``request.allows``
by default (``respect_placement=False``): comparisons use scenarios without residency rules, or the
simulator counts placement violations. Pass ``respect_placement=True`` to filter candidates first.
Deadlines and classes are ignored; replicas run FIFO (``replica_discipline = "fifo"``).
"""

from __future__ import annotations

import random

from agentic_ray.scheduling.routers.base import FIFO, PendingRouter
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Shed, Wait

__all__ = ["PowerOfTwoRouter"]


class PowerOfTwoRouter(PendingRouter):
    """Serve's power-of-two-choices router (see the module docstring)."""

    name = "pow2"
    replica_discipline = FIFO

    def __init__(self, rng: random.Random, *, max_attempts: int = 8, respect_placement: bool = False) -> None:
        super().__init__(rng)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts: must be an integer >= 1, got {max_attempts!r}")
        self.max_attempts = max_attempts
        self.respect_placement = respect_placement

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Route to the shorter of two random replicas with room; ``Wait`` when none has room."""
        allows = request.allows if self.respect_placement else None
        candidates = [r for r in replicas if r.healthy and (allows is None or allows(r.attrs))]
        if not candidates:
            reason = "no_eligible_replica" if replicas and allows is not None else "no_healthy_replica"
            return Shed(
                reason, retry_after_s=None if reason == "no_eligible_replica" else 1.0, rule_ids=request.rule_ids
            )
        if not any(r.ongoing < r.max_ongoing for r in candidates):
            return Wait("all_replicas_full")
        rng = self.rng
        n = len(candidates)
        chosen: tuple[ReplicaView, ...]
        for _ in range(self.max_attempts):
            if n == 1:
                chosen = (candidates[0],)
            elif n == 2:
                chosen = (candidates[0], candidates[1]) if rng.getrandbits(1) else (candidates[1], candidates[0])
            else:
                i = rng.randrange(n)
                j = rng.randrange(n - 1)
                if j >= i:
                    j += 1
                chosen = (candidates[i], candidates[j])
            best: ReplicaView | None = None
            for r in chosen:
                if r.ongoing < r.max_ongoing and (best is None or r.ongoing < best.ongoing):
                    best = r
            if best is not None:
                return Route(best.replica_id, reason="pow2_shorter_queue")
        return Wait("sampled_replicas_full")
