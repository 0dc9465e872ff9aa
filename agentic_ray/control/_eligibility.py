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

Cost: one ``classify`` per distinct (class, workflow) per round (the policy caches them), and one
``allows`` per distinct (rules, node shape) where a node's shape is its zone, accelerator and labels; the
units of a zone are grouped once per round.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentic_ray.control._summary import split_stage_key
from agentic_ray.errors import AgenticRayError
from agentic_ray.policies.types import NodeAttrs, RequestMeta

__all__ = ["Eligibility"]

_Shape = tuple[str, str, tuple[tuple[str, str], ...]]


class Eligibility:
    """Eligible unit ids per stream, for one policy and one set of units (nodes or replicas)."""

    def __init__(self, policy: Any, units: Iterable[tuple[str, NodeAttrs]]) -> None:
        """``units``: ``(unit id, attributes of the node it runs on)``."""
        self.policy = policy
        self.by_zone: dict[str, list[tuple[str, _Shape, NodeAttrs]]] = {}
        for uid, attrs in units:
            shape = (attrs.zone, attrs.accelerator, tuple(sorted(attrs.labels.items())))
            self.by_zone.setdefault(attrs.zone, []).append((uid, shape, attrs))
        self._rules: dict[tuple[str, str | None], Any] = {}
        self._verdicts: dict[tuple[tuple[str, ...], _Shape], bool] = {}
        self._everyone: dict[str | None, frozenset[str]] = {}

    def requirement(self, qos: str, workflow: str | None) -> Any:
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

    def units(self, qos: str, zone: str | None, workflow: str | None = None) -> frozenset[str]:
        """Ids of the units a stream of ``qos`` (and ``workflow``) observed in ``zone`` may use."""
        classification = self.requirement(qos, workflow)
        if classification is None:
            return frozenset()
        pool = self._pool(zone)
        if classification.requirement is None:
            return self._all(zone, pool)
        rules = tuple(classification.rule_ids)
        verdicts = self._verdicts
        out = []
        for uid, shape, attrs in pool:
            ok = verdicts.get((rules, shape))
            if ok is None:
                ok = verdicts[(rules, shape)] = bool(classification.allows(attrs))
            if ok:
                out.append(uid)
        return frozenset(out)

    def _pool(self, zone: str | None) -> list[tuple[str, _Shape, NodeAttrs]]:
        if zone is not None:
            return self.by_zone.get(zone, [])
        return [u for units in self.by_zone.values() for u in units]

    def _all(self, zone: str | None, pool: list[tuple[str, _Shape, NodeAttrs]]) -> frozenset[str]:
        hit = self._everyone.get(zone)
        if hit is None:
            hit = self._everyone[zone] = frozenset(uid for uid, _, _ in pool)
        return hit
