"""Per-node, per-class in-flight caps (the agents' budget leases). Pure: no Ray, no clock.

``allocate_caps`` runs the scheduling core's BudgetAllocator (``agentic_ray.scheduling.allocator``:
M/M/c priority queueing per node, Little's law for the queue caps) on what the control plane observed:

- capacity: one ``NodeCapacity`` per node, ``slots`` = its CPUs, ``service_ms`` per class = the mean of
  the agent's EWMA service times of that class's (class, workflow) keys, else ``default_service_ms``;
- demand: arrivals per second per class, measured by the GlobalCoordinator from the agents' reports.

A node's in-flight cap for a class is ``slots + queue_cap`` (running plus allowed to wait). Classes with
no observed demand, and any case the allocator rejects, fall back to ``static_caps``: a class with an
admission ``queue_bound`` gets ``queue_bound * CPUs`` per node, classes without one get no cap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agentic_ray.scheduling.allocator import ClassDemand, NodeCapacity, allocate

__all__ = ["allocate_caps", "service_by_class", "static_caps"]

DEFAULT_SERVICE_MS = 10.0


def _cpus(cpus: float) -> float:
    return max(1.0, float(cpus))


def static_caps(policy: Any, cpus: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """``queue_bound * CPUs`` per bounded class and node (at least 1); ``cpus`` is ``{node_id: CPUs}``."""
    return {
        node_id: {
            name: max(1, math.floor(q.queue_bound * _cpus(n)))
            for name, q in policy.classes.items()
            if q.queue_bound is not None
        }
        for node_id, n in cpus.items()
    }


def service_by_class(service_ms: Mapping[str, float | None] | None) -> dict[str, float]:
    """Mean EWMA service time (ms) per class over a snapshot's ``service_ms`` (per ``summary_key``)."""
    sums: dict[str, list[float]] = {}
    for key, ms in (service_ms or {}).items():
        if ms is not None and ms > 0:
            sums.setdefault(key.split("|", 1)[0], []).append(float(ms))
    return {qos: sum(v) / len(v) for qos, v in sums.items()}


def allocate_caps(
    policy: Any,
    cpus: Mapping[str, float],
    service_ms: Mapping[str, Mapping[str, float | None]],
    rates_per_s: Mapping[str, float] | None = None,
    default_service_ms: float = DEFAULT_SERVICE_MS,
) -> dict[str, dict[str, int]]:
    """Caps ``{node_id: {class: max in flight}}`` for every node in ``cpus`` (``{node_id: CPUs}``), with
    ``service_ms`` the agents' EWMA service times per node (``{node_id: {summary_key: ms}}``); see the
    module docstring."""
    caps = static_caps(policy, cpus)
    demand = {
        qos: ClassDemand(float(rate)) for qos, rate in (rates_per_s or {}).items() if qos in policy.classes and rate > 0
    }
    if not demand or not cpus:
        return caps
    capacities = []
    for node_id, n in cpus.items():
        service = {"default": default_service_ms, **service_by_class(service_ms.get(node_id))}
        capacities.append(NodeCapacity(node_id, int(_cpus(n)), service))
    try:
        allocation = allocate(capacities, demand, policy.classes)
    except ValueError:
        return caps
    for node_id, node_alloc in allocation.nodes.items():
        slots = int(_cpus(cpus[node_id]))
        for qos, cls_alloc in node_alloc.classes.items():
            if qos in demand:
                caps.setdefault(node_id, {})[qos] = slots + max(0, int(cls_alloc.queue_cap))
    return caps
