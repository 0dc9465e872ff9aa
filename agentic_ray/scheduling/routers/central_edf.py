"""``central_edf``: a central earliest-deadline-first queue with true service times (a baseline).

Formerly registered as ``oracle`` (the name still builds it, with a ``DeprecationWarning``): it is not a
bound. It ignores class priority and, by default, runs late work, so a class-aware router beats it on
critical attainment; the bound the benchmarks compare against is ``clairvoyant`` (``clairvoyant.py``).

A central queue in earliest-deadline-first order across classes (``wait_order = (deadline, arrival)``;
the caller breaks ties FIFO), dispatching to the *free* replica (healthy, placement allowed,
``ongoing < slots``) with the earliest completion, computed from true service times:
``service_time(request, replica_id) -> ms`` (the simulator passes the true service time of that request
on that replica; without it, the replica's reported ``service_ms`` is used). No replica free -> ``Wait``,
so no work ever queues at a replica (``replica_discipline = "fifo"``, queues stay empty).

EDF is optimal for meeting deadlines on one server when the load is feasible (Liu & Layland, 1973;
Jackson's rule); on several servers, under overload, or with classes of different importance it is not.

``drop_late=True`` additionally sheds a request that cannot finish in time even on the fastest allowed
replica started now (``Shed("cannot_meet_deadline")``); the default ``False`` runs everything.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from agentic_ray.scheduling.routers.base import FIFO, PendingRouter
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Shed, Wait

__all__ = ["CentralEdfRouter"]


class CentralEdfRouter(PendingRouter):
    """Central EDF queue with true service times (see the module docstring)."""

    name = "central_edf"
    replica_discipline = FIFO

    def __init__(
        self,
        rng: random.Random,
        *,
        service_time: Callable[[Request, str], float] | None = None,
        drop_late: bool = False,
        default_service_ms: float = 50.0,
    ) -> None:
        super().__init__(rng)
        self.service_time = service_time
        self.drop_late = drop_late
        self.default_service_ms = default_service_ms

    def wait_order(self, request: Request) -> tuple[float, ...]:
        """Earliest deadline first."""
        return (request.deadline, request.arrival)

    def _service(self, request: Request, r: ReplicaView) -> float:
        if self.service_time is not None:
            return self.service_time(request, r.replica_id)
        sm = r.service_ms
        return sm.get(request.model) or sm.get("default") or self.default_service_ms

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Route to the free replica that completes this request first; ``Wait`` when none is free."""
        allows = request.allows
        best: tuple[float, ReplicaView] | None = None
        fastest_any = math.inf
        placed = healthy = False
        for r in replicas:
            if allows is not None and not allows(r.attrs):
                continue
            placed = True
            if not r.healthy:
                continue
            healthy = True
            s = None
            if self.drop_late:
                s = self._service(request, r)
                fastest_any = min(fastest_any, s)
            if r.ongoing < r.slots and r.ongoing < r.max_ongoing:
                if s is None:
                    s = self._service(request, r)
                if best is None or s < best[0]:
                    best = (s, r)
        if not placed:
            return Shed("no_eligible_replica", None, request.rule_ids)
        if not healthy:
            return Shed("no_healthy_replica", 1.0, request.rule_ids)
        remaining = request.remaining_ms(now)
        if self.drop_late and fastest_any > remaining:
            return Shed("cannot_meet_deadline", None, request.rule_ids, fastest_any)
        if best is None:
            return Wait("no_free_replica")
        return Route(best[1].replica_id, best[0], "central_edf_earliest_completion", request.rule_ids)
