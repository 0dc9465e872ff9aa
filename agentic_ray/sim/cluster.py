"""The simulated replicas: what each one holds and how it orders the work sent to it.

A replica has ``slots`` execution slots. ``fifo`` replicas (a plain Serve replica) start queued work
in arrival order; ``gate`` replicas run the scheduling core's ``AdmissionGate`` (priority then EDF,
expired work dropped, bounded per-class queues reject). ``max_ongoing`` (executing + queued) is
enforced by the router through ``ReplicaView.ongoing``, which counts requests dispatched to the
replica and not yet returned (Serve's router-side count). Faults: ``slowdown`` multiplies the service
time of work started while it lasts; ``error`` fails the work started while it lasts; ``crash`` removes
the replica and fails everything in flight on it. ``cost`` (per replica-second, ranks replicas for the
agentic router and prices the run's busy time) is the group's own, else the scenario's by accelerator.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling.types import ReplicaView
from agentic_ray.sim.scenario import ReplicaGroupSpec

__all__ = ["SimReplica", "build_replicas", "group_cost"]


class SimReplica:
    """Mutable state of one simulated replica (owned by the run loop)."""

    __slots__ = (
        "alive",
        "busy",
        "erroring",
        "fifo",
        "gate",
        "group",
        "jobs",
        "queued_by_priority",
        "replica_id",
        "slots",
        "slowdown",
        "view",
    )

    def __init__(
        self, replica_id: str, group: int, spec: ReplicaGroupSpec, gate: Any = None, cost: float | None = None
    ) -> None:
        self.replica_id = replica_id
        self.group = group
        self.slots = spec.slots
        self.alive = True
        self.busy = 0
        self.slowdown = 1.0
        self.erroring = False  # an ``error`` fault: work started now fails
        self.fifo: deque[Any] = deque()
        self.gate = gate
        self.jobs: dict[Any, Any] = {}
        self.queued_by_priority: dict[int, int] = {}
        labels = dict(spec.labels)
        labels.setdefault("group", spec.name)
        self.view = ReplicaView(
            replica_id=replica_id,
            attrs=NodeAttrs(node_id=replica_id, zone=spec.zone, accelerator=spec.accelerator, labels=labels),
            slots=spec.slots,
            max_ongoing=spec.max_ongoing,
            ongoing=0,
            queued_by_priority=self.queued_by_priority if gate is not None else {},
            service_ms={},
            healthy=True,
            cost=spec.cost if cost is None else cost,
        )


def group_cost(spec: ReplicaGroupSpec, costs: dict[str, float] | None = None) -> float:
    """Cost per replica-second of a group: its own ``cost`` when set, else ``costs`` (by accelerator
    kind: a scenario's or a policy's ``costs``), else 1."""
    if "cost" in spec.model_fields_set or not costs:
        return spec.cost
    return costs.get(spec.accelerator, spec.cost)


def build_replicas(
    groups: list[ReplicaGroupSpec], make_gate: Any = None, costs: dict[str, float] | None = None
) -> list[SimReplica]:
    """One ``SimReplica`` per replica, ids ``<group>-<index>``; ``make_gate(spec)`` builds gates; ``costs``
    (accelerator kind -> cost per replica-second) prices groups that set no ``cost`` of their own."""
    out: list[SimReplica] = []
    for gi, spec in enumerate(groups):
        cost = group_cost(spec, costs)
        for i in range(spec.count):
            gate = make_gate(spec) if make_gate is not None else None
            out.append(SimReplica(f"{spec.name}-{i}", gi, spec, gate, cost))
    return out
