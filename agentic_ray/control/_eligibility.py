"""Which nodes and Serve replicas a stream of offered load may use. Pure: no Ray, no clock.

A stream (``_demand.DemandStream``) is one class's demand observed in one zone: for tasks per summary
key (class and workflow/stage), for Serve per deployment. It may use the units (nodes for tasks, that
deployment's replicas for Serve) that

1. are in the zone where it was observed (every zone for a stream observed nowhere in particular), and
2. satisfy the policy's placement rules that hold for *every* request of its class and workflow: the
   ``require`` of the rules that ``Policy.classify`` matches for a request naming only that class and
   workflow (and stage). Rules on tenants, data classes or models cannot match such a request, so they
   do not narrow it.

Residency rules match on tenants, which summaries and replica reports do not carry; the zone the demand
was observed in stands for them. Work the SDK or a router placed in EU zones (by a residency rule or by
choice) is offered to EU zones, so under ``examples/policies/platform.yaml`` EU-only critical work gives
US nodes and replicas no share. Class- and workflow-wide rules narrow it within the zone (critical work
only on on-demand nodes, ``batch-summarize`` only in its pools).

Cost: one ``classify`` per distinct (class, workflow) per round (the policy caches them), one
``allows`` per distinct (rules, node shape) where a node's shape is its zone, accelerator and labels
(computed only for nodes a rule has to be tested on), and a dictionary look-up per unit and stream; no
object is built per unit, which keeps a round over tens of thousands of replicas light on the garbage
collector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentic_ray.control._membership import NodeInfo
from agentic_ray.control._summary import split_stage_key
from agentic_ray.errors import AgenticRayError
from agentic_ray.policies.types import NodeAttrs, RequestMeta

__all__ = ["Eligibility", "ReplicaPlace"]

ReplicaPlace = tuple[str, str, str, str]
"""A replica as eligibility sees it: ``(replica id, node id, zone, accelerator)``; the node's labels
come from ``nodes`` when the node is known there."""

_Shape = tuple[str, str, tuple[tuple[str, str], ...]]


class Eligibility:
    """Eligible node or replica ids per stream, over one round's ``nodes`` (``{node_id: NodeInfo}``)."""

    def __init__(self, policy: Any, nodes: Mapping[str, NodeInfo]) -> None:
        self.policy = policy
        self.nodes = nodes
        self._by_zone: dict[str | None, frozenset[str]] | None = None
        self._rules: dict[tuple[str, str | None], Any] = {}
        self._shapes: dict[str, _Shape] = {}
        self._verdicts: dict[tuple[tuple[str, ...], _Shape], bool] = {}

    def requirement(self, qos: str, workflow: str | None = None) -> Any:
        """The ``Classification`` of a request naming only ``qos`` and ``workflow`` (a summary key's
        ``workflow[/stage]``; one the policy does not know counts as none), or ``None`` for a class the
        policy does not know."""
        key = (qos, workflow)
        if key in self._rules:
            return self._rules[key]
        name, stage = split_stage_key(workflow) if workflow else (None, None)
        if name is not None and name not in self.policy.workflows:
            name = stage = None
        found = None
        for request in (RequestMeta(qos=qos, workflow=name, stage=stage), RequestMeta(qos=qos)):
            try:
                found = self.policy.classify(request, 0.0, check_entitlement=False)
                break
            except (AgenticRayError, ValueError):
                continue
        self._rules[key] = found
        return found

    def node_ids(self, qos: str, zone: str | None, workflow: str | None = None) -> frozenset[str]:
        """Ids of the nodes a task stream of ``qos`` (and ``workflow``) observed in ``zone`` may use
        (``zone`` None: every zone)."""
        classification = self.requirement(qos, workflow)
        if classification is None:
            return frozenset()
        pool = self._zone_nodes(zone)
        if classification.requirement is None:
            return pool
        rules = tuple(classification.rule_ids)
        return frozenset(n for n in pool if self._allows(classification, rules, n, None))

    def replica_ids(self, qos: str, zone: str | None, replicas: Sequence[ReplicaPlace]) -> frozenset[str]:
        """Ids of ``replicas`` that a Serve stream of ``qos`` observed in ``zone`` may use (``replicas``:
        its deployment's, best already those of ``zone``)."""
        classification = self.requirement(qos)
        if classification is None:
            return frozenset()
        pool = [r for r in replicas if zone is None or r[2] == zone]
        if classification.requirement is None:
            return frozenset(r[0] for r in pool)
        rules = tuple(classification.rule_ids)
        return frozenset(r[0] for r in pool if self._allows(classification, rules, r[1], r))

    def _zone_nodes(self, zone: str | None) -> frozenset[str]:
        if self._by_zone is None:
            groups: dict[str | None, list[str]] = {}
            for node_id, info in self.nodes.items():
                groups.setdefault(info.zone, []).append(node_id)
            self._by_zone = {z: frozenset(ids) for z, ids in groups.items()}
            self._by_zone[None] = frozenset(self.nodes)
        return self._by_zone.get(zone, frozenset())

    def _allows(self, classification: Any, rules: tuple[str, ...], node_id: str, place: ReplicaPlace | None) -> bool:
        shape = self._shapes.get(node_id)
        if shape is None:
            info = self.nodes.get(node_id)
            if info is not None:
                shape = (info.zone, info.accelerator, tuple(sorted(info.labels.items())))
            elif place is not None:  # a replica on a node not in the view: its own zone and accelerator
                shape = (place[2], place[3], ())
            else:
                return False
            self._shapes[node_id] = shape
        ok = self._verdicts.get((rules, shape))
        if ok is None:
            attrs = NodeAttrs(node_id=node_id, zone=shape[0], accelerator=shape[1], labels=dict(shape[2]))
            ok = self._verdicts[(rules, shape)] = bool(classification.allows(attrs))
        return ok
