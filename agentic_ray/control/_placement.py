"""Choosing a node for one task from the cached cluster view. Pure: no Ray, no clock, no global random.

Algorithm (per ``.remote()`` call, microseconds):

1. **Eligible** nodes: alive, allowed by the policy classification (``classification.allows(attrs)``:
   residency / accelerator rules), of the requested accelerator kind when the task names one, and
   holding every custom resource the task asks for (by total, not free, capacity).
   None eligible -> ``NoEligibleNode`` with the rule ids, at once.
2. **Rank** eligible nodes by ``(-prefers, gate_closed, level, not_local, rotation)``: the policy's
   preference score first, then nodes whose agent keeps the class's admission gate open, then the
   least loaded *level*, ``level = floor((in-flight reported by the agent + this caller's tasks there that the
   report does not count yet and that have probably not finished, ``outstanding.OutstandingEstimate``)
   / (CPUs * batch_per_cpu))``
   (join-the-shortest-queue on a stale view, corrected locally so a burst spreads between refreshes; counting in
   batches of ``batch_per_cpu`` tasks per CPU keeps consecutive tasks on one node, which lets Ray reuse
   its worker lease instead of alternating),
   then the caller's own node (locality), then a rotation that changes once per view. A class that may
   be shed is refused with ``Overloaded`` when every eligible node has closed its gate.
3. The result is a ``Placement`` naming the node (submitted with ``NodeAffinitySchedulingStrategy``).
   When a Ray ``label_selector`` expresses the allowed set exactly (``label_selector_for``: zones,
   required label values, accelerator kinds), the affinity is ``soft`` and carries that selector, so
   if the node dies Ray re-places the task (on retry) only on allowed nodes; otherwise ``soft=False``.

When the view is missing or stale (agents unreachable), ``fallback_placement`` keeps residency: if every
known node is allowed, plain Ray scheduling; otherwise the exact ``label_selector`` (``{"zone":
"in(a,b)"}``), or, when none is exact, a pin to an allowed known node; never a node the policy refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.errors import NoEligibleNode, Overloaded
from agentic_ray.policies.types import NodeAttrs

__all__ = [
    "NodeView",
    "Placement",
    "choose_node",
    "fallback_placement",
    "label_selector_for",
    "node_attrs_from_ray",
]

ZONE_LABEL = "zone"
RAY_ZONE_LABEL = "ray.io/availability-zone"


def node_attrs_from_ray(node_id: str, labels: Mapping[str, str], resources: Mapping[str, float]) -> NodeAttrs:
    """``NodeAttrs`` of a Ray node: zone from label ``zone``, else ``ray.io/availability-zone``, else
    ``default``; accelerator from label ``accelerator``, else ``gpu`` when the node has GPUs, else ``cpu``."""
    zone = labels.get(ZONE_LABEL) or labels.get(RAY_ZONE_LABEL) or "default"
    accelerator = labels.get("accelerator") or ("gpu" if resources.get("GPU", 0) > 0 else "cpu")
    return NodeAttrs(node_id=node_id, zone=zone, accelerator=accelerator, labels=dict(labels))


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as the placement sees it (built from the agents' snapshots)."""

    attrs: NodeAttrs
    resources: Mapping[str, float] = field(default_factory=dict)
    inflight: int = 0
    closed_classes: frozenset[str] = frozenset()
    alive: bool = True
    service_ms: Mapping[str, float] = field(default_factory=dict)  # agent's EWMA service time per class

    @property
    def node_id(self) -> str:
        return self.attrs.node_id

    @property
    def cpus(self) -> float:
        return max(1.0, float(self.resources.get("CPU", 1.0)))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where to submit: ``node_id`` (affinity; ``soft`` lets Ray re-place the task if that node dies,
    only ever within ``label_selector``), or only ``label_selector`` (fallback), or neither (plain Ray)."""

    node_id: str | None
    label_selector: Mapping[str, str] | None = None
    rule_ids: tuple[str, ...] = ()
    reason: str = "ranked"
    soft: bool = False


def _missing_resource(node: NodeView, resources: Mapping[str, float]) -> bool:
    return any(node.resources.get(name, 0.0) < amount for name, amount in resources.items() if amount > 0)


def _eligible(
    classification: Any,
    nodes: Sequence[NodeView],
    accelerator: str | None,
    resources: Mapping[str, float],
) -> list[NodeView]:
    out = []
    for node in nodes:
        if not node.alive:
            continue
        if accelerator is not None and node.attrs.accelerator != accelerator:
            continue
        if resources and _missing_resource(node, resources):
            continue
        if not classification.allows(node.attrs):
            continue
        out.append(node)
    return out


def choose_node(
    classification: Any,
    nodes: Sequence[NodeView],
    *,
    qos: str,
    accelerator: str | None = None,
    resources: Mapping[str, float] | None = None,
    local_load: Mapping[str, int] | None = None,
    rotation: int = 0,
    selector: tuple[Mapping[str, str] | None, bool] | None = None,
    local_node_id: str | None = None,
    batch_per_cpu: int = 4,
    shed_when_closed: bool = False,
    retry_after_s: float = 0.5,
) -> Placement:
    """Pick a node for a task of class ``qos``; raises ``NoEligibleNode`` (with rule ids) when none fits.

    Admission: when every eligible node's agent has closed ``qos`` (its in-flight count is at the cap
    of the node's budget lease) and ``shed_when_closed`` (the class may be shed: shedding ``first`` or
    ``when_overloaded``), raises ``Overloaded`` (reason ``node_caps``, ``retry_after_s``) before anything
    is submitted; a class that is never shed is placed on the best closed node and queues there.

    ``classification`` is the policy's ``Classification`` (``allows``, ``prefers``, ``rule_ids``);
    ``local_load`` counts, per node, the tasks this caller placed there since the view was taken (or
    those not finished yet, when the caller tracks completions);
    ``rotation`` is an integer that changes slowly (once per view) used as the last tie-break;
    ``local_node_id`` (the caller's node) wins ties, for locality. ``selector`` is
    ``label_selector_for(...)`` of this classification (computed here when not given; callers cache it
    per view): when exact, the placement is ``soft`` so Ray re-places the task inside the selector if
    the node dies; otherwise it is pinned with ``soft=False``.
    """
    resources = resources or {}
    eligible = _eligible(classification, nodes, accelerator, resources)
    rule_ids = tuple(classification.rule_ids)
    if not eligible:
        why = []
        if accelerator is not None:
            why.append(f"accelerator={accelerator}")
        if resources:
            why.append("resources=" + ",".join(f"{k}:{v:g}" for k, v in sorted(resources.items())))
        extra = tuple(f"task.{w.split('=')[0]}" for w in why)
        raise NoEligibleNode(
            f"no alive node satisfies the placement of class {qos!r}"
            + (f" ({', '.join(why)})" if why else "")
            + f" among {sum(1 for n in nodes if n.alive)} alive node(s)",
            rule_ids=rule_ids + extra,
        )
    if shed_when_closed and all(qos in node.closed_classes for node in eligible):
        raise Overloaded(
            f"class {qos!r} is at its cap on all {len(eligible)} eligible node(s); not submitted",
            reason="node_caps",
            rule_ids=rule_ids,
            retry_after_s=retry_after_s,
        )
    placed = local_load or {}
    n = len(eligible)

    def rank(item: tuple[int, NodeView]) -> tuple[int, bool, int, bool, int]:
        index, node = item
        level = int((node.inflight + placed.get(node.node_id, 0)) // (node.cpus * batch_per_cpu))
        prefers = int(classification.prefers(node.attrs))
        return (-prefers, qos in node.closed_classes, level, node.node_id != local_node_id, (index - rotation) % n)

    best = min(enumerate(eligible), key=rank)[1]
    label_selector, exact = selector if selector is not None else label_selector_for(classification, nodes, accelerator)
    return Placement(best.node_id, label_selector if exact else None, rule_ids, "ranked", soft=exact)


def _one_of(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else f"in({','.join(sorted(values))})"


def _matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    for key, expr in selector.items():
        value = labels.get(key)
        if expr.startswith("in(") and expr.endswith(")"):
            if value not in expr[3:-1].split(","):
                return False
        elif value != expr:
            return False
    return True


def label_selector_for(
    classification: Any, known_nodes: Sequence[NodeView], accelerator: str | None = None
) -> tuple[dict[str, str] | None, bool]:
    """A Ray ``label_selector`` for the nodes the classification allows, and whether it is *exact*
    (every known node it selects is allowed). ``(None, True)`` when every known node is allowed.

    Built from the allowed nodes' zones (residency rules are per zone), the requirement's label
    values (``{key: in(values)}``) and accelerator kinds (label ``accelerator``) where the nodes carry
    those labels. A rule the labels cannot express (say an accelerator kind only known from GPU
    resources) leaves the selector inexact; callers then pin to a node with ``soft=False``.
    """
    allowed = [n for n in known_nodes if classification.allows(n.attrs)]
    if accelerator is not None:
        allowed = [n for n in allowed if n.attrs.accelerator == accelerator]
    if len(allowed) == len(known_nodes):
        return None, True
    if not allowed:
        return None, False
    selector: dict[str, str] = {}
    if all(ZONE_LABEL in n.attrs.labels for n in allowed):
        selector[ZONE_LABEL] = _one_of(sorted({n.attrs.zone for n in allowed}))
    elif all(RAY_ZONE_LABEL in n.attrs.labels for n in allowed):
        selector[RAY_ZONE_LABEL] = _one_of(sorted({n.attrs.zone for n in allowed}))
    requirement = getattr(classification, "requirement", None)
    for key, values in getattr(requirement, "labels", ()) or ():
        selector[key] = _one_of(sorted(values))

    def exact_for(sel: Mapping[str, str]) -> bool:
        return bool(sel) and all(n in allowed for n in known_nodes if _matches(n.attrs.labels, sel))

    exact = exact_for(selector)
    if not exact and all("accelerator" in n.attrs.labels for n in allowed):
        # Zones and labels alone would admit refused nodes (an accelerator rule): narrow by kind too.
        selector["accelerator"] = _one_of(sorted({n.attrs.accelerator for n in allowed}))
        exact = exact_for(selector)
    return selector or None, exact


def fallback_placement(
    classification: Any,
    known_nodes: Sequence[NodeView],
    *,
    qos: str,
    accelerator: str | None = None,
    rotation: int = 0,
) -> Placement:
    """Placement without a fresh view (agents unreachable), never breaking a residency rule:
    plain Ray scheduling when the policy allows every known node; a ``label_selector`` when one
    expresses the allowed set exactly; otherwise pinned (``soft=False``) to an allowed known node.

    Raises ``NoEligibleNode`` when no known node is allowed at all.
    """
    rule_ids = tuple(classification.rule_ids)
    selector, exact = label_selector_for(classification, known_nodes, accelerator)
    if selector is None and exact:
        return Placement(node_id=None, rule_ids=rule_ids, reason="fallback")
    if selector is not None and exact:
        return Placement(node_id=None, label_selector=selector, rule_ids=rule_ids, reason="fallback")
    allowed = [n for n in known_nodes if classification.allows(n.attrs)]
    if accelerator is not None:
        allowed = [n for n in allowed if n.attrs.accelerator == accelerator]
    if not allowed:
        raise NoEligibleNode(f"no known node satisfies the placement of class {qos!r}", rule_ids=rule_ids)
    node = allowed[rotation % len(allowed)]
    return Placement(node_id=node.node_id, rule_ids=rule_ids, reason="fallback_pinned")
