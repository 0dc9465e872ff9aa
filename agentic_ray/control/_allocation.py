"""Allocation rounds: the per-node (and per-replica) leases made of the offered load. Pure: no Ray, no
clock (``now``, wall-clock seconds, comes in).

Demand is *offered* load per class, by where it was observed (``_demand.OfferedLoad``: tasks from the
zones' summary deltas and their nodes' backlogs, Serve from the replicas' ``offered`` counts).

A round (``plan_allocation``) splits each stream only over the units it may use (``_eligibility``: the
nodes, or that deployment's replicas, of the zone where it was observed that the policy's class and
workflow rules allow), and runs ``leases.allocate_caps`` (the BudgetAllocator: M/M/c per node, Little's
law for queue caps; static caps where no demand reaches) over the nodes whose agents have reported, with
each node's CPUs and EWMA service times, and ``leases.allocate_replica_caps`` over the live replicas
(slots and service times from their reports). It stamps the result with the next revision and a lease
of ``max(3 * allocate_interval_s, 1 s)``: an agent that misses two rounds still holds a valid lease.
``leases_by_zone`` splits it for the zones, which pass each ``NodeLease`` (with its replicas' caps in
``replica_caps``) to its agent.

``ArrivalCounter`` is the demand of the first control plane (finished and refused tasks per class,
cluster-wide), kept for callers that count that way; the GlobalCoordinator uses ``OfferedLoad``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._demand import DemandStream, OfferedDemand, ReplicaCapacity
from agentic_ray.control._eligibility import Eligibility, ReplicaPlace
from agentic_ray.control._leases import allocate_caps, allocate_replica_caps
from agentic_ray.control._membership import NodeInfo
from agentic_ray.control._reports import NodeLease, NodeSnapshot
from agentic_ray.scheduling.allocator import ClassDemand

__all__ = ["Allocation", "ArrivalCounter", "leases_by_zone", "plan_allocation"]


class ArrivalCounter:
    """Tasks per class reported since the last ``take_rates``."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.since: float | None = None

    def add(self, qos: str, n: int) -> None:
        """Count ``n`` tasks of ``qos`` (finished or refused) from a summary delta."""
        self.counts[qos] = self.counts.get(qos, 0) + n

    def take_rates(self, now: float, first_window_s: float) -> dict[str, float]:
        """Tasks per second per class since the previous call (``first_window_s`` back for the first);
        the counts start again at ``now``."""
        since = now - first_window_s if self.since is None else self.since
        elapsed = max(1e-3, now - since)
        rates = {qos: n / elapsed for qos, n in self.counts.items()}
        self.counts, self.since = {}, now
        return rates


@dataclass(frozen=True, slots=True)
class Allocation:
    """One allocation round: caps per node and class, caps per Serve replica and class grouped by node
    (``replica_caps``: node id -> replica id -> class -> cap), granted at ``granted_at`` for ``lease_s``,
    and the offered rates they were computed from (per class, and per zone: ``rates_by_zone``)."""

    revision: int
    leases: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    granted_at: float = 0.0
    lease_s: float = 1.0
    arrival_rates_per_s: Mapping[str, float] = field(default_factory=dict)
    replica_caps: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)
    rates_by_zone: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def node_lease(self, node_id: str) -> NodeLease:
        """The lease of one node of this round (``KeyError`` for a node it does not cover)."""
        replicas = dict(self.replica_caps.get(node_id, {}))  # the round's caps are not changed after it
        return NodeLease(dict(self.leases[node_id]), self.granted_at, self.lease_s, self.revision, replicas)

    def to_dict(self, replicas: bool = True) -> dict[str, Any]:
        """The JSON form (``status()["allocation"]`` and, with ``replicas`` False, the checkpoint: the next
        round recomputes replica caps); ``replica_caps`` and ``rates_by_zone`` only when there are any."""
        out: dict[str, Any] = {
            "revision": self.revision,
            "leases": {n: dict(c) for n, c in self.leases.items()},
            "granted_at": self.granted_at,
            "lease_s": self.lease_s,
            "arrival_rates_per_s": dict(self.arrival_rates_per_s),
        }
        if self.replica_caps and replicas:
            out["replica_caps"] = {n: {r: dict(c) for r, c in rs.items()} for n, rs in self.replica_caps.items()}
        if self.rates_by_zone:
            out["rates_by_zone"] = {z: dict(r) for z, r in self.rates_by_zone.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Allocation | None:
        """Inverse of ``to_dict``; ``None`` for an empty or missing one (no round yet)."""
        if not data:
            return None
        return cls(
            revision=int(data.get("revision", 0)),
            leases={
                str(n): {str(q): int(c) for q, c in caps.items()} for n, caps in (data.get("leases") or {}).items()
            },
            granted_at=float(data.get("granted_at", 0.0)),
            lease_s=float(data.get("lease_s", 1.0)),
            arrival_rates_per_s={str(q): float(r) for q, r in (data.get("arrival_rates_per_s") or {}).items()},
            replica_caps={
                str(n): {str(r): {str(q): int(c) for q, c in caps.items()} for r, caps in rs.items()}
                for n, rs in (data.get("replica_caps") or {}).items()
            },
            rates_by_zone={
                str(z): {str(q): float(r) for q, r in rates.items()}
                for z, rates in (data.get("rates_by_zone") or {}).items()
            },
        )


def _node_demand(eligibility: Eligibility, streams: tuple[DemandStream, ...]) -> dict[str, list[ClassDemand]]:
    """Task streams as ``ClassDemand`` over the nodes each may use (a stream observed nowhere in
    particular may use every node)."""
    out: dict[str, list[ClassDemand]] = {}
    for s in streams:
        if s.zone is None and s.workflow is None:
            eligible = None
        else:
            eligible = eligibility.node_ids(s.qos, s.zone, s.workflow)
        out.setdefault(s.qos, []).append(ClassDemand(s.rate_per_s, eligible))
    return out


def _replica_demand(
    eligibility: Eligibility, replicas: Mapping[str, ReplicaCapacity], streams: tuple[DemandStream, ...]
) -> dict[str, list[ClassDemand]]:
    """Serve streams as ``ClassDemand`` over the replicas of their deployment each may use."""
    places: dict[tuple[str, str], list[ReplicaPlace]] = {}  # (deployment, zone) -> its replicas there
    for rid, r in replicas.items():
        places.setdefault((r.deployment, r.zone), []).append((rid, r.node_id, r.zone, r.accelerator))
    out: dict[str, list[ClassDemand]] = {}
    for s in streams:
        if s.zone is None:
            pool = [p for (dep, _), ps in places.items() if dep == s.deployment for p in ps]
        else:
            pool = places.get((s.deployment or "", s.zone), [])
        out.setdefault(s.qos, []).append(ClassDemand(s.rate_per_s, eligibility.replica_ids(s.qos, s.zone, pool)))
    return out


def plan_allocation(
    policy: Any,
    nodes: Mapping[str, NodeInfo],
    snapshots: Mapping[str, NodeSnapshot],
    demand: OfferedDemand | Mapping[str, float],
    previous: Allocation | None,
    now: float,
    allocate_interval_s: float,
) -> Allocation:
    """The next round over ``nodes`` (those whose agent reported, with their snapshots) and the replicas
    of ``demand`` at ``now``. ``demand`` is the round's ``OfferedDemand``, or offered rates per class
    that every node may serve (``OfferedDemand.cluster_wide``)."""
    if not isinstance(demand, OfferedDemand):
        demand = OfferedDemand.cluster_wide(demand)
    eligibility = Eligibility(policy, nodes)
    caps = allocate_caps(
        policy,
        {n: info.cpus for n, info in nodes.items()},
        {n: snapshots[n].service_ms for n in nodes if n in snapshots},
        _node_demand(eligibility, demand.tasks),
    )
    replica_caps: dict[str, dict[str, dict[str, int]]] = {}
    if demand.replicas:
        per_replica = allocate_replica_caps(
            policy, demand.replicas, _replica_demand(eligibility, demand.replicas, demand.serve)
        )
        for rid, rcaps in per_replica.items():
            replica_caps.setdefault(demand.replicas[rid].node_id, {})[rid] = rcaps
    rates_by_zone = demand.rates_by_zone()
    return Allocation(
        revision=(previous.revision if previous is not None else 0) + 1,
        leases=caps,
        granted_at=now,
        lease_s=max(3 * allocate_interval_s, 1.0),
        arrival_rates_per_s=demand.rates_per_s(),
        replica_caps=replica_caps,
        rates_by_zone=rates_by_zone if set(rates_by_zone) != {"*"} else {},
    )


def leases_by_zone(allocation: Allocation, nodes: Mapping[str, NodeInfo]) -> dict[str, dict[str, NodeLease]]:
    """``{zone: {node_id: NodeLease}}`` of the round's nodes that are in ``nodes``."""
    out: dict[str, dict[str, NodeLease]] = {}
    for node_id in allocation.leases:
        info = nodes.get(node_id)
        if info is not None:
            out.setdefault(info.zone, {})[node_id] = allocation.node_lease(node_id)
    return out
