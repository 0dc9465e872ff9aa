"""Per-node and per-replica, per-class in-flight caps (the budget leases). Pure: no Ray, no clock.

``allocate_caps`` runs the scheduling core's BudgetAllocator (``agentic_ray.scheduling.allocator``:
M/M/c priority queueing per node, Little's law for queue caps) on what the control plane observed:

- capacity: one ``NodeCapacity`` per node, ``slots`` = its CPUs, ``service_ms`` per class = the mean of
  the agent's EWMA service times of that class's (class, workflow) keys, else ``default_service_ms``;
- demand: offered arrivals per second per class (``_demand``), either cluster-wide (a number per class:
  every node may serve it) or as streams (``ClassDemand`` with the ``eligible`` nodes, ``_eligibility``:
  the zone it was observed in, narrowed by the policy's class and workflow rules).

A node's in-flight cap for a class is ``slots + queue_cap`` (running plus allowed to wait). Classes with
no demand that reaches a node, and any case the allocator rejects, fall back to ``static_caps``: a class
with an admission ``queue_bound`` gets ``queue_bound * CPUs`` per node, classes without one get no cap.

``allocate_replica_caps`` does the same for Serve replicas (``_demand.ReplicaCapacity``): a replica is a
pool of ``slots`` servers with its own service times per class, Serve demand is split per deployment over
that deployment's eligible replicas, and a replica's cap for a class is ``slots + queue_cap`` (its
admission quota, running plus queued at its gate), else ``queue_bound * slots``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from agentic_ray.control._demand import ReplicaCapacity
from agentic_ray.scheduling.allocator import Capacities, ClassDemand, allocate

__all__ = ["Demand", "allocate_caps", "allocate_replica_caps", "service_by_class", "static_caps"]

DEFAULT_SERVICE_MS = 10.0

Demand = Mapping[str, "float | ClassDemand | Sequence[ClassDemand]"]
"""Per class: a cluster-wide rate (arrivals per second), or one or several ``ClassDemand`` streams."""


def _cpus(cpus: float) -> float:
    return max(1.0, float(cpus))


def static_caps(policy: Any, cpus: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """``queue_bound * CPUs`` per bounded class and node (at least 1); ``cpus`` is ``{node_id: CPUs}``
    (or ``{replica_id: slots}``)."""
    bounds = [(name, q.queue_bound) for name, q in policy.classes.items() if q.queue_bound is not None]
    per_size: dict[float, dict[str, int]] = {}  # nodes alike in size share the arithmetic
    out = {}
    for unit, n in cpus.items():
        caps = per_size.get(n)
        if caps is None:
            caps = per_size[n] = {name: max(1, math.floor(b * _cpus(n))) for name, b in bounds}
        out[unit] = dict(caps)
    return out


_CLASS_OF_KEY: dict[str, str] = {}  # summary key -> its class (keys are few: classes x workflows)


def service_by_class(service_ms: Mapping[str, float | None] | None) -> dict[str, float]:
    """Mean EWMA service time (ms) per class over a snapshot's ``service_ms`` (per ``summary_key``)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    class_of = _CLASS_OF_KEY
    for key, ms in (service_ms or {}).items():
        if ms is not None and ms > 0:
            qos = class_of.get(key)
            if qos is None:
                qos = key.split("|", 1)[0]
                if len(class_of) < 10_000:
                    class_of[key] = qos
            sums[qos] = sums.get(qos, 0.0) + ms
            counts[qos] = counts.get(qos, 0) + 1
    return {qos: total / counts[qos] for qos, total in sums.items()}


def _streams(policy: Any, demand: Demand | None) -> dict[str, tuple[ClassDemand, ...]]:
    """Known classes with positive demand, as streams (a number is one cluster-wide stream)."""
    out: dict[str, tuple[ClassDemand, ...]] = {}
    for qos, d in (demand or {}).items():
        if qos not in policy.classes:
            continue
        if isinstance(d, (int, float)):
            streams: tuple[ClassDemand, ...] = (ClassDemand(float(d)),) if d > 0 else ()
        elif isinstance(d, ClassDemand):
            streams = (d,) if d.arrival_rate_per_s > 0 else ()
        else:
            streams = tuple(s for s in d if s.arrival_rate_per_s > 0)
        if streams:
            out[qos] = streams
    return out


def _apply(
    policy: Any,
    static: dict[str, dict[str, int]],
    capacities: Capacities,
    demand: Demand | None,
    default_service_ms: float,
) -> dict[str, dict[str, int]]:
    """``static`` with ``slots + queue_cap`` for each unit and class the demand reaches."""
    streams = _streams(policy, demand)
    if not streams or not capacities.node_ids:
        return static
    try:
        allocation = allocate(capacities, streams, policy.classes, default_service_ms=default_service_ms)
    except ValueError:
        return static
    for unit, caps in allocation.inflight_caps().items():
        if caps:  # this dict is ours: fill in the static caps of the classes no demand reaches
            fixed = static[unit]
            if len(caps) < len(fixed) or not fixed.keys() <= caps.keys():
                for qos, cap in fixed.items():
                    caps.setdefault(qos, cap)
            static[unit] = caps
    return static


def allocate_caps(
    policy: Any,
    cpus: Mapping[str, float],
    service_ms: Mapping[str, Mapping[str, float | None]],
    rates_per_s: Demand | None = None,
    default_service_ms: float = DEFAULT_SERVICE_MS,
) -> dict[str, dict[str, int]]:
    """Caps ``{node_id: {class: max in flight}}`` for every node in ``cpus`` (``{node_id: CPUs}``), with
    ``service_ms`` the agents' EWMA service times per node (``{node_id: {summary_key: ms}}``) and
    ``rates_per_s`` the demand per class (see ``Demand`` and the module docstring)."""
    caps = static_caps(policy, cpus)
    ids = list(cpus)
    capacities = Capacities(ids, [int(_cpus(cpus[n])) for n in ids], [service_by_class(service_ms.get(n)) for n in ids])
    return _apply(policy, caps, capacities, rates_per_s, default_service_ms)


def allocate_replica_caps(
    policy: Any,
    replicas: Mapping[str, ReplicaCapacity],
    demand: Demand | None,
    default_service_ms: float = DEFAULT_SERVICE_MS,
) -> dict[str, dict[str, int]]:
    """Caps ``{replica_id: {class: max running plus queued at its gate}}`` for every replica in
    ``replicas``, with ``demand`` the Serve demand per class (streams name the replica ids they may use)."""
    caps = static_caps(policy, {rid: r.slots for rid, r in replicas.items()})
    capacities = Capacities(
        list(replicas), [max(1, int(r.slots)) for r in replicas.values()], [r.service_ms for r in replicas.values()]
    )
    return _apply(policy, caps, capacities, demand, default_service_ms)
