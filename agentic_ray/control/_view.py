"""The cluster view: what the GlobalCoordinator serves to every process's placement cache. Pure: no Ray,
no clock.

``cluster_view(state, now)`` projects the coordinator's state into a ``ClusterView``: the active policy
ids and every alive node with its agent's latest figures (in-flight tasks, closed classes, mean EWMA
service time per class, age of the snapshot; ``reported`` is False until the agent reported). The SDK's
``ClusterViewCache`` fetches it every ``VIEW_REFRESH_S`` while it places work and turns each node into
a placement ``NodeView`` (``ViewNode.node_view``).

``ClusterView.to_dict`` is the JSON form the coordinator's ``view()`` returns (wire version 1, which an
older cache reads); ``ClusterView.from_wire`` reads it back from an older coordinator. A ``ClusterView``
pickles as ``_cluster_view_v2`` and tuples of plain values (one name per message instead of one class
per node; see ``control._reports``, "Pickled form"): every process fetches it five times a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentic_ray.control._leases import service_by_class
from agentic_ray.control._placement import NodeView
from agentic_ray.policies.types import NodeAttrs

if TYPE_CHECKING:
    from agentic_ray.control._global_state import GlobalState

__all__ = ["ClusterView", "ViewNode", "cluster_view"]


@dataclass(frozen=True, slots=True)
class ViewNode:
    """One alive node in the cluster view. ``age_s`` is its snapshot's age when the view was made
    (``None`` before its agent reported); ``agent`` whether the coordinator runs an agent there."""

    node_id: str
    zone: str
    accelerator: str
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, float] = field(default_factory=dict)
    agent: bool = False
    inflight: int = 0
    closed_classes: tuple[str, ...] = ()
    service_ms: Mapping[str, float] = field(default_factory=dict)
    age_s: float | None = None
    reported: bool = False

    def node_view(self) -> NodeView:
        """The node as ``placement.choose_node`` ranks it."""
        return NodeView(
            attrs=NodeAttrs(self.node_id, self.zone, self.accelerator, self.labels),
            resources=self.resources,
            inflight=self.inflight,
            closed_classes=frozenset(self.closed_classes),
            service_ms=self.service_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "zone": self.zone,
            "accelerator": self.accelerator,
            "labels": dict(self.labels),
            "resources": dict(self.resources),
            "agent": self.agent,
            "inflight": self.inflight,
            "closed_classes": list(self.closed_classes),
            "service_ms": dict(self.service_ms),
            "age_s": self.age_s,
            "reported": self.reported,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViewNode:
        """Inverse of ``to_dict``; ``KeyError`` names a missing required key."""
        age = data.get("age_s")
        return cls(
            node_id=str(data["node_id"]),
            zone=str(data["zone"]),
            accelerator=str(data["accelerator"]),
            labels=dict(data.get("labels") or {}),
            resources=dict(data.get("resources") or {}),
            agent=bool(data.get("agent", False)),
            inflight=int(data.get("inflight", 0)),
            closed_classes=tuple(data.get("closed_classes") or ()),
            service_ms=dict(data.get("service_ms") or {}),
            age_s=None if age is None else float(age),
            reported=bool(data.get("reported", False)),
        )


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The view at ``at`` (the coordinator's wall clock): active policy ids and the alive nodes."""

    at: float
    policy_sha: str
    policy_version: str
    revision: int
    nodes: tuple[ViewNode, ...] = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        nodes = tuple(_node_fields(n) for n in self.nodes)
        return _cluster_view_v2, (self.at, self.policy_sha, self.policy_version, self.revision, nodes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the coordinator's ``view()`` returns)."""
        return {
            "at": self.at,
            "policy_sha": self.policy_sha,
            "policy_version": self.policy_version,
            "revision": self.revision,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def from_wire(cls, obj: ClusterView | Mapping[str, Any]) -> ClusterView:
        """``obj`` itself, or the view a ``to_dict`` dict (an older coordinator's ``view()``) describes."""
        if isinstance(obj, ClusterView):
            return obj
        return cls(
            at=float(obj["at"]),
            policy_sha=str(obj["policy_sha"]),
            policy_version=str(obj["policy_version"]),
            revision=int(obj["revision"]),
            nodes=tuple(ViewNode.from_dict(n) for n in obj.get("nodes") or ()),
        )


def _node_fields(n: ViewNode) -> tuple[Any, ...]:
    return (
        n.node_id,
        n.zone,
        n.accelerator,
        n.labels,
        n.resources,
        n.agent,
        n.inflight,
        n.closed_classes,
        n.service_ms,
        n.age_s,
        n.reported,
    )


def _cluster_view_v2(
    at: float, policy_sha: str, policy_version: str, revision: int, nodes: tuple[tuple[Any, ...], ...]
) -> ClusterView:
    return ClusterView(at, policy_sha, policy_version, revision, tuple(ViewNode(*f) for f in nodes))


def cluster_view(state: GlobalState, now: float) -> ClusterView:
    """The view of ``state`` at ``now``."""
    nodes = []
    for node_id, info in state.nodes.items():
        snap = state.snapshots.get(node_id)
        nodes.append(
            ViewNode(
                node_id=node_id,
                zone=info.zone,
                accelerator=info.accelerator,
                labels=info.labels,
                resources=info.resources,
                agent=node_id in state.agents,
                inflight=snap.inflight if snap is not None else 0,
                closed_classes=snap.closed_classes if snap is not None else (),
                service_ms=service_by_class(snap.service_ms) if snap is not None else {},
                age_s=(now - snap.at) if snap is not None else None,
                reported=snap is not None,
            )
        )
    policy = state.policy
    return ClusterView(now, policy.sha256, policy.version, state.rollout.active.revision, tuple(nodes))
