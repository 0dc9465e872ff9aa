"""Allocation rounds: offered load per class from the agents' reports, and the per-node leases made of
it. Pure: no Ray, no clock (``now``, wall-clock seconds, comes in).

Demand is *offered* load: every summary delta the zones forward counts its finished and refused tasks
per class (``ArrivalCounter.add``); at each allocation round the counts since the previous round divided
by the time between them are the arrival rates (tasks per second per class). The first round, with no
previous one, divides by ``allocate_interval_s``.

A round (``plan_allocation``) runs ``leases.allocate_caps`` (the BudgetAllocator: M/M/c per node,
Little's law for queue caps; static caps where there is no demand) over the nodes whose agents have
reported, with each node's CPUs and EWMA service times, and stamps the result with the next revision and
a lease of ``max(3 * allocate_interval_s, 1 s)``: an agent that misses two rounds still holds a valid
lease. ``leases_by_zone`` splits it for the zones, which pass each ``NodeLease`` to its agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._leases import allocate_caps
from agentic_ray.control._membership import NodeInfo
from agentic_ray.control._reports import NodeLease, NodeSnapshot

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
    """One allocation round: caps per node and class, granted at ``granted_at`` for ``lease_s``, and the
    arrival rates they were computed from."""

    revision: int
    leases: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    granted_at: float = 0.0
    lease_s: float = 1.0
    arrival_rates_per_s: Mapping[str, float] = field(default_factory=dict)

    def node_lease(self, node_id: str) -> NodeLease:
        """The lease of one node of this round (``KeyError`` for a node it does not cover)."""
        return NodeLease(dict(self.leases[node_id]), self.granted_at, self.lease_s, self.revision)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``status()["allocation"]`` and the checkpoint)."""
        return {
            "revision": self.revision,
            "leases": {n: dict(c) for n, c in self.leases.items()},
            "granted_at": self.granted_at,
            "lease_s": self.lease_s,
            "arrival_rates_per_s": dict(self.arrival_rates_per_s),
        }

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
        )


def plan_allocation(
    policy: Any,
    nodes: Mapping[str, NodeInfo],
    snapshots: Mapping[str, NodeSnapshot],
    rates_per_s: Mapping[str, float],
    previous: Allocation | None,
    now: float,
    allocate_interval_s: float,
) -> Allocation:
    """The next round over ``nodes`` (those whose agent reported, with their snapshots) at ``now``."""
    caps = allocate_caps(
        policy,
        {n: info.cpus for n, info in nodes.items()},
        {n: snapshots[n].service_ms for n in nodes if n in snapshots},
        rates_per_s,
    )
    return Allocation(
        revision=(previous.revision if previous is not None else 0) + 1,
        leases=caps,
        granted_at=now,
        lease_s=max(3 * allocate_interval_s, 1.0),
        arrival_rates_per_s=dict(rates_per_s),
    )


def leases_by_zone(allocation: Allocation, nodes: Mapping[str, NodeInfo]) -> dict[str, dict[str, NodeLease]]:
    """``{zone: {node_id: NodeLease}}`` of the round's nodes that are in ``nodes``."""
    out: dict[str, dict[str, NodeLease]] = {}
    for node_id in allocation.leases:
        info = nodes.get(node_id)
        if info is not None:
            out.setdefault(info.zone, {})[node_id] = allocation.node_lease(node_id)
    return out
