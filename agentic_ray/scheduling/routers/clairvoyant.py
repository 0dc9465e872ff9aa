"""``clairvoyant``: the strong reference the benchmarks hold the agentic router to.

It knows what no real router knows: every request's true service time on every replica
(``service_time(request, replica_id) -> ms``; the simulator passes the pre-sampled time of that request
on that replica's group times the replica's current slowdown) and, from that, when each busy replica
frees. It keeps one central queue (``wait_order = (priority, deadline, arrival)``: class priority, then
earliest deadline) and no replica queues (``replica_discipline = "fifo"`` and it dispatches only to a
free replica). For the request at the head of the queue it computes, on every healthy replica the
request may use, the time the answer would reach the caller::

    start = now                        on a free replica (ongoing < slots and < max_ongoing)
          = max(now, first slot frees)  on a busy one (known from what it dispatched there)
    done  = start + network_ms + service_ms(request, replica) + network_ms

and sends it to the free replica with the earliest ``done`` when that answers in time (earliest finish
time, the list-scheduling rule of HEFT, Topcuoglu, Hariri & Wu, IEEE TPDS 2002, restricted to free
replicas so that none idles while a request it could serve in time waits). When no free replica answers
in time but a busy one would (after its first slot frees), the request waits for it
(``Wait("faster_replica_busy")``: the "wait for the fast server" rule, Lin & Kumar, IEEE TAC 1984), and
later requests may still take the free replicas meanwhile. When no replica answers in time, the request
is dropped now (``Shed("cannot_meet_deadline")``: work that cannot be on time never takes a slot).

This is a strong heuristic, not a proven optimum: greedy earliest-finish dispatch in priority order is
not optimal for multiple servers (scheduling to meet deadlines on parallel machines is NP-hard in
general; Garey & Johnson, 1979), and it never preempts. The benchmarks print beside it the capacity bound
``goodput <= min(offered, capacity)`` that no router can pass. ``network_ms`` is the one-way delay the
simulator models (0 when unknown).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable

from agentic_ray.scheduling.routers.base import FIFO, PendingRouter
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Shed, Wait

__all__ = ["ClairvoyantRouter"]


class ClairvoyantRouter(PendingRouter):
    """Central priority-then-EDF queue, earliest finish with true service times, late work dropped at
    dispatch (see the module docstring). ``service_time``: true ms of a request on a replica (None: the
    replica's reported ``service_ms``, then ``default_service_ms``)."""

    name = "clairvoyant"
    replica_discipline = FIFO

    def __init__(
        self,
        rng: random.Random,
        *,
        service_time: Callable[[Request, str], float] | None = None,
        network_ms: float = 0.0,
        default_service_ms: float = 50.0,
    ) -> None:
        super().__init__(rng)
        if not (network_ms >= 0 and math.isfinite(network_ms)):
            raise ValueError(f"network_ms: must be a finite number >= 0, got {network_ms!r}")
        self.service_time = service_time
        self.network_ms = network_ms
        self.default_service_ms = default_service_ms
        # replica id -> request id -> when its position there frees, as a caller sees it (answer back)
        self._frees: dict[str, dict[Hashable, float]] = {}

    def wait_order(self, request: Request) -> tuple[float, ...]:
        """Class priority, then earliest deadline, then arrival."""
        return (request.priority, request.deadline, request.arrival)

    def _service(self, request: Request, r: ReplicaView) -> float:
        if self.service_time is not None:
            return self.service_time(request, r.replica_id)
        sm = r.service_ms
        return sm.get(request.model) or sm.get("default") or self.default_service_ms

    def on_dispatch(self, request: Request, replica_id: str, now: float) -> None:
        """Remember when the position ``request`` takes on ``replica_id`` frees again."""
        super().on_dispatch(request, replica_id, now)
        service_ms = self._service(request, ReplicaView(replica_id))
        frees = self._frees.get(replica_id)
        if frees is None:
            frees = self._frees[replica_id] = {}
        frees[request.id] = now + (2.0 * self.network_ms + service_ms) / 1000.0

    def observe(
        self, request: Request, replica_id: str, service_ms: float, latency_ms: float, ok: bool, now: float
    ) -> None:
        """The answer to ``request`` came back: its position on ``replica_id`` is free."""
        super().observe(request, replica_id, service_ms, latency_ms, ok, now)
        frees = self._frees.get(replica_id)
        if frees is not None:
            frees.pop(request.id, None)

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Route to the replica that answers first, wait when that one is busy, drop what would be late."""
        allows = request.allows
        trip = 2.0 * self.network_ms / 1000.0
        best: ReplicaView | None = None
        best_done = math.inf
        best_free = False
        free_best: ReplicaView | None = None
        free_done = math.inf
        placed = healthy = False
        for r in replicas:
            if allows is not None and not allows(r.attrs):
                continue
            placed = True
            if not r.healthy:
                continue
            healthy = True
            free = r.ongoing < r.slots and r.ongoing < r.max_ongoing
            start = now if free else max(now, min(self._frees.get(r.replica_id, {}).values(), default=math.inf))
            done = start + trip + self._service(request, r) / 1000.0
            if done < best_done or (done == best_done and free and not best_free):
                best, best_done, best_free = r, done, free
            if free and done < free_done:
                free_best, free_done = r, done
        if not placed:
            return Shed("no_eligible_replica", None, request.rule_ids)
        if not healthy:
            return Shed("no_healthy_replica", 1.0, request.rule_ids)
        predicted_ms = (best_done - now) * 1000.0
        if best is None or best_done > request.deadline + 1e-9:
            return Shed("cannot_meet_deadline", None, request.rule_ids, predicted_ms)
        if free_best is not None and free_done <= request.deadline + 1e-9:
            # work-conserving: a free replica that answers in time is used now, not kept idle
            return Route(free_best.replica_id, (free_done - now) * 1000.0, "clairvoyant_in_time", request.rule_ids)
        return Wait("faster_replica_busy")
