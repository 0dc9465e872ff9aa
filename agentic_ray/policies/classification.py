"""The result of classifying one request, and the compiled node selectors it checks nodes against.

A placement rule's ``require`` is a conjunction of parts (zone list, zone prefixes, accelerator kinds,
one part per label key); when several rules match a request, all their parts must hold. Combined
requirements are intersected once, when the request is classified: zones are the intersection of every
``zones`` list, accelerators the intersection of every ``accelerators`` list, each label key the
intersection of its value sets, and each ``zone_prefix`` list stays a separate ``str.startswith`` tuple.
``Classification.allows`` is then a handful of set look-ups: no closures, so it pickles as plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentic_ray.policies.entitlements import EntitlementDecision
from agentic_ray.policies.types import NodeAttrs, QosClass, StageBudget

__all__ = ["Classification", "CompiledRule", "NodeSelector"]


@dataclass(frozen=True, slots=True)
class NodeSelector:
    """One rule's ``require`` or ``prefer`` block; ``None`` / empty means the part is absent."""

    zones: frozenset[str] | None = None
    zone_prefixes: tuple[str, ...] | None = None
    accelerators: frozenset[str] | None = None
    labels: tuple[tuple[str, frozenset[str]], ...] = ()

    @property
    def empty(self) -> bool:
        return self.zones is None and self.zone_prefixes is None and self.accelerators is None and not self.labels

    def part_results(self, node: NodeAttrs) -> list[tuple[str, bool]]:
        """``(part name, holds)`` for every part present, in a fixed order."""
        out: list[tuple[str, bool]] = []
        if self.zones is not None:
            out.append(("zones", node.zone in self.zones))
        if self.zone_prefixes is not None:
            out.append(("zone_prefix", node.zone.startswith(self.zone_prefixes)))
        if self.accelerators is not None:
            out.append(("accelerators", node.accelerator in self.accelerators))
        for key, values in self.labels:
            out.append((f"labels.{key}", node.labels.get(key) in values))
        return out

    def holds(self, node: NodeAttrs) -> bool:
        return all(ok for _, ok in self.part_results(node))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.zones is not None:
            out["zones"] = sorted(self.zones)
        if self.zone_prefixes is not None:
            out["zone_prefix"] = list(self.zone_prefixes)
        if self.accelerators is not None:
            out["accelerators"] = sorted(self.accelerators)
        if self.labels:
            out["labels"] = {k: sorted(v) for k, v in self.labels}
        return out


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A placement rule with its match sets precompiled (``None``: the field is not matched on)."""

    id: str
    description: str | None
    tenants: frozenset[str] | None
    tenant_regions: tuple[str, ...] | None
    data_classes: frozenset[str] | None
    models: tuple[str, ...] | None
    workflows: frozenset[str] | None
    classes: frozenset[str] | None
    require: NodeSelector
    prefer: NodeSelector


@dataclass(frozen=True, slots=True)
class _Requirement:
    """The conjunction of several rules' ``require`` blocks, pre-intersected."""

    zones: frozenset[str] | None
    prefix_groups: tuple[tuple[str, ...], ...]
    accelerators: frozenset[str] | None
    labels: tuple[tuple[str, frozenset[str]], ...]

    @staticmethod
    def combine(selectors: list[NodeSelector]) -> _Requirement | None:
        zones: frozenset[str] | None = None
        accelerators: frozenset[str] | None = None
        groups: list[tuple[str, ...]] = []
        labels: dict[str, frozenset[str]] = {}
        for s in selectors:
            if s.zones is not None:
                zones = s.zones if zones is None else zones & s.zones
            if s.zone_prefixes is not None and s.zone_prefixes not in groups:
                groups.append(s.zone_prefixes)
            if s.accelerators is not None:
                accelerators = s.accelerators if accelerators is None else accelerators & s.accelerators
            for key, values in s.labels:
                labels[key] = labels[key] & values if key in labels else values
        if zones is None and not groups and accelerators is None and not labels:
            return None
        return _Requirement(zones, tuple(groups), accelerators, tuple(sorted(labels.items())))

    def test(self, node: NodeAttrs) -> bool:
        zone = node.zone
        if self.zones is not None and zone not in self.zones:
            return False
        for group in self.prefix_groups:
            if not zone.startswith(group):
                return False
        if self.accelerators is not None and node.accelerator not in self.accelerators:
            return False
        if self.labels:
            labels = node.labels
            for key, values in self.labels:
                if labels.get(key) not in values:
                    return False
        return True

    def implies(self, other: _Requirement | None) -> bool:
        """True when every node this requirement allows is allowed by ``other`` too, judged from the
        requirements alone (no node list): each part of ``other`` must be implied by a part of this one.
        Conservative: ``False`` may be returned for requirements that happen to agree on a given cluster.
        A governed actor placed under this requirement may then take calls classified under ``other``."""
        if other is None:
            return True
        if other.zones is not None and (self.zones is None or not self.zones <= other.zones):
            return False
        for group in other.prefix_groups:
            by_zones = self.zones is not None and all(z.startswith(group) for z in self.zones)
            by_prefixes = any(all(p.startswith(group) for p in mine) for mine in self.prefix_groups)
            if not (by_zones or by_prefixes):
                return False
        if other.accelerators is not None and (
            self.accelerators is None or not self.accelerators <= other.accelerators
        ):
            return False
        mine = dict(self.labels)
        return all(key in mine and mine[key] <= values for key, values in other.labels)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.zones is not None:
            out["zones"] = sorted(self.zones)
        if self.prefix_groups:
            out["zone_prefix_all_of"] = [list(g) for g in self.prefix_groups]
        if self.accelerators is not None:
            out["accelerators"] = sorted(self.accelerators)
        if self.labels:
            out["labels"] = {k: sorted(v) for k, v in self.labels}
        return out


@dataclass(frozen=True, slots=True)
class Classification:
    """What the policy decided for one request: class, budget, deadline and placement constraints.

    ``deadline`` is ``now + budget_ms / 1000`` on the caller's clock. ``rule_ids`` are the ids of every
    rule that matched the request, in policy order. ``allows(node)`` is True when every ``require`` part
    of every matched rule holds for the node; it is cheap, and the object pickles (no closures).
    """

    policy_name: str
    policy_version: str
    policy_sha256: str
    qos: QosClass
    budget_ms: float
    deadline: float
    stages: tuple[StageBudget, ...]
    tenant: str | None
    workflow: str | None
    stage: str | None
    model: str | None
    data_class: str | None
    rule_ids: tuple[str, ...]
    matched_rules: tuple[CompiledRule, ...] = ()
    requirement: _Requirement | None = None
    class_source: str = "default"
    budget_source: str = "class"
    entitlement: EntitlementDecision | None = None
    stage_share: float | None = None  # a stage's share of what its workflow run has left (StagePlan.share)
    workflow_budget_ms: float | None = None  # the whole workflow run's budget, for a stage request

    def allows(self, node: NodeAttrs) -> bool:
        """True when ``node`` satisfies every requirement of every matched rule."""
        req = self.requirement
        return True if req is None else req.test(node)

    def allowing_rules(self, node: NodeAttrs) -> dict[str, bool]:
        """Rule id -> whether that matched rule's ``require`` holds for ``node`` (rules without one: True)."""
        return {r.id: r.require.holds(node) for r in self.matched_rules}

    def refusing_rules(self, node: NodeAttrs) -> tuple[str, ...]:
        """Ids of the matched rules whose requirements ``node`` fails (empty when it is allowed)."""
        return tuple(r.id for r in self.matched_rules if not r.require.holds(node))

    def prefers(self, node: NodeAttrs) -> int:
        """How many ``prefer`` parts of the matched rules ``node`` satisfies (higher is better)."""
        return sum(ok for r in self.matched_rules for _, ok in r.prefer.part_results(node))

    def constraints(self) -> dict[str, Any]:
        """JSON-able combined requirements and the preferences of each matched rule."""
        return {
            "require": self.requirement.describe() if self.requirement is not None else {},
            "prefer": {r.id: r.prefer.describe() for r in self.matched_rules if not r.prefer.empty},
        }

    def explain(self, node: NodeAttrs | None = None) -> dict[str, Any]:
        """JSON-able account of the decision and which rule produced what (and, given ``node``, its verdict)."""
        out: dict[str, Any] = {
            "policy": {"name": self.policy_name, "version": self.policy_version, "sha256": self.policy_sha256},
            "request": {
                k: v
                for k, v in (
                    ("tenant", self.tenant),
                    ("workflow", self.workflow),
                    ("stage", self.stage),
                    ("model", self.model),
                    ("data_class", self.data_class),
                )
                if v is not None
            },
            "class": {"name": self.qos.name, "priority": self.qos.priority, "from": self.class_source},
            "shedding": self.qos.shedding.value,
            "budget_ms": self.budget_ms,
            "budget_from": self.budget_source,
            "deadline": self.deadline,
            "stages": [{"name": s.name, "budget_ms": s.budget_ms} for s in self.stages],
            "stage_share": self.stage_share,
            "rule_ids": list(self.rule_ids),
            "rules": [
                {
                    "id": r.id,
                    "description": r.description,
                    "require": r.require.describe(),
                    "prefer": r.prefer.describe(),
                }
                for r in self.matched_rules
            ],
            "constraints": self.constraints(),
        }
        if self.qos.ttft_ms is not None or self.qos.tpot_ms is not None:
            out["stream"] = {"ttft_ms": self.qos.ttft_ms, "tpot_ms": self.qos.tpot_ms}
        if self.entitlement is not None:
            out["entitlement"] = self.entitlement.to_dict()
        if node is not None:
            out["node"] = _node_dict(node)
            out["allowed"] = self.allows(node)
            out["refused_by"] = list(self.refusing_rules(node))
            out["preference_score"] = self.prefers(node)
        return out


def _node_dict(node: NodeAttrs) -> dict[str, Any]:
    labels: Mapping[str, str] = node.labels
    return {"node_id": node.node_id, "zone": node.zone, "accelerator": node.accelerator, "labels": dict(labels)}
