"""Shared pieces of the routers: local pending counts, wait orders, and the replica discipline names.

``wait_order(request)`` is the sort key of a request held at the router after ``Wait``: FIFO routers
return ``(arrival,)``, deadline-aware ones ``(deadline, arrival)``. Callers append their own arrival
sequence number to break ties, so equal keys stay FIFO.

``replica_discipline`` tells the simulator how a replica runs the work routed to it: ``"fifo"`` (in
arrival order, as a plain Serve replica) or ``"gate"`` (an ``AdmissionGate``: priority then earliest
deadline, expired work dropped).
"""

from __future__ import annotations

import random

from agentic_ray.scheduling.types import Request

__all__ = ["FIFO", "GATE", "PendingRouter", "edf_order", "fifo_order"]

FIFO = "fifo"
GATE = "gate"


def fifo_order(request: Request) -> tuple[float, ...]:
    """Sort key: arrival time."""
    return (request.arrival,)


def edf_order(request: Request) -> tuple[float, ...]:
    """Sort key: earliest deadline, then arrival."""
    return (request.deadline, request.arrival)


class PendingRouter:
    """Base for routers: counts requests dispatched and not yet observed, per replica."""

    name = "base"
    replica_discipline = FIFO

    def __init__(self, rng: random.Random) -> None:
        if not isinstance(rng, random.Random):
            raise ValueError(f"rng: must be a random.Random, got {type(rng).__name__}")
        self.rng = rng
        self.pending: dict[str, int] = {}

    def wait_order(self, request: Request) -> tuple[float, ...]:
        """FIFO by arrival (see the module docstring)."""
        return (request.arrival,)

    def on_dispatch(self, request: Request, replica_id: str, now: float) -> None:
        """Count ``request`` as pending at ``replica_id`` until ``observe``."""
        self.pending[replica_id] = self.pending.get(replica_id, 0) + 1

    def observe(
        self, request: Request, replica_id: str, service_ms: float, latency_ms: float, ok: bool, now: float
    ) -> None:
        """A dispatched request completed (or failed): it is no longer pending."""
        n = self.pending.get(replica_id, 0)
        if n > 0:
            self.pending[replica_id] = n - 1
