"""Membership: which nodes are alive and which need a node agent started or dropped. Pure: no Ray, no
clock.

Every ``reconcile_interval_s`` the GlobalCoordinator reads Ray's node table and compares the alive nodes
(``alive_nodes``) with its agents (``plan_membership``): an alive node without an agent gets one (its
zone's ZoneCoordinator first, so the agent's first report lands), and the agent of a node that is no
longer alive is killed and dropped, so the cluster view stops offering the node and new work goes
elsewhere. The coordinator does the Ray calls; this module only decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._placement import node_attrs_from_ray

__all__ = ["AgentRecord", "MembershipChange", "NodeInfo", "alive_nodes", "plan_membership"]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """An alive Ray node as the control plane knows it: zone and accelerator kind (``node_attrs_from_ray``),
    labels and total resources."""

    node_id: str
    zone: str
    accelerator: str
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, float] = field(default_factory=dict)

    @property
    def cpus(self) -> float:
        """CPUs of the node, at least 1 (what the allocator counts as slots)."""
        return max(1.0, float(self.resources.get("CPU", 1.0)))

    def agent_attrs(self) -> dict[str, Any]:
        """The attributes a new NodeAgent is created with."""
        return {"zone": self.zone, "accelerator": self.accelerator, "labels": dict(self.labels)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "zone": self.zone,
            "accelerator": self.accelerator,
            "labels": dict(self.labels),
            "resources": dict(self.resources),
        }


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """A node agent the GlobalCoordinator started: its actor name, zone and when (wall clock)."""

    node_id: str
    name: str
    zone: str
    created_at: float


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """What reconciling changes: nodes to start an agent on, node ids whose agent to drop."""

    start: tuple[NodeInfo, ...] = ()
    drop: tuple[str, ...] = ()


def alive_nodes(ray_nodes: Iterable[Mapping[str, Any]]) -> dict[str, NodeInfo]:
    """``{node_id: NodeInfo}`` of the alive entries of Ray's node table (``ray.nodes()``'s dicts)."""
    out: dict[str, NodeInfo] = {}
    for n in ray_nodes:
        if not n.get("Alive"):
            continue
        node_id = n["NodeID"]
        resources = dict(n.get("Resources") or {})
        attrs = node_attrs_from_ray(node_id, n.get("Labels") or {}, resources)
        out[node_id] = NodeInfo(node_id, attrs.zone, attrs.accelerator, dict(attrs.labels), resources)
    return out


def plan_membership(alive: Mapping[str, NodeInfo], agents: Iterable[str]) -> MembershipChange:
    """Alive nodes without an agent (in ``alive``'s order) and agents whose node is not alive (in
    ``agents``' order)."""
    have = list(agents)
    known = set(have)
    start = tuple(info for node_id, info in alive.items() if node_id not in known)
    drop = tuple(node_id for node_id in have if node_id not in alive)
    return MembershipChange(start, drop)
