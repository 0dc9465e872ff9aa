"""BudgetAllocator: per-node admission caps and arrival shares that keep predicted queueing in budget.

Coordinators run this off the hot path; node agents and replica gates enforce the result.

Model (per node n, class k; times in ms):

1. Split. Each class's arrivals ``lambda_k`` are split over the nodes that can serve it in proportion
   to their capacity for it, ``c_n / s_nk`` (slots over mean service time), so utilisation is balanced.
2. Waits. Each node is an M/M/c queue with non-preemptive priority classes and one mean service time
   ``s = sum(lambda_k s_k) / sum(lambda_k)`` (Cobham, 1954; Kleinrock, *Queueing Systems* vol. 2, 1976,
   sec. 3.6)::

       rho_k   = lambda_k * s / c            sigma_k = sum of rho_j over classes with priority <= k's
       W_k     = ErlangC(c, a) * s / c / ((1 - sigma_{k-1}) * (1 - sigma_k)),   a = sum(lambda_k) * s

   with ``ErlangC`` computed from the Erlang B recursion ``B_j = a B_{j-1} / (j + a B_{j-1})``,
   ``C = B_c / (1 - (a/c)(1 - B_c))``. ``W_k`` is infinite when ``sigma_k >= 1``.
3. Budgets. Class k may wait ``allowed_k = max_queue_wait_ms`` when the policy sets it, else
   ``budget_ms - s_nk``. In priority order, each class admits the largest fraction ``f_k`` in [0, 1] of its
   offered rate (bisection) that keeps every admitted class within its allowed wait; ``never``-shed
   classes always admit everything (and are reported when over budget).
4. Caps (Little's law, L = lambda W): the queue of class k drains at ``c (1 - sigma_{k-1}) / s_nk``
   requests per ms once higher classes take their share, so at most
   ``queue_cap = floor(c * (1 - sigma_{k-1}) * allowed_k / s_nk)`` may wait; with no higher-priority load
   this is ``c * (budget - service) / service``.

``feasible`` is true when every class meets its budget with all of its demand admitted; ``over_budget``
names the classes that do not (shed partly, or ``never``-shed and predicted late).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agentic_ray.policies.types import QosClass, Shedding

__all__ = [
    "Allocation",
    "ClassAllocation",
    "ClassDemand",
    "NodeAllocation",
    "NodeCapacity",
    "allocate",
    "erlang_c",
    "priority_waits_ms",
]

_BISECT_STEPS = 40


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """One node's capacity: ``slots`` parallel servers and the mean service time (ms) per class.

    ``service_ms`` is keyed by class name; ``"default"`` is used for classes not listed. A class with
    neither is not served by this node.
    """

    node_id: str
    slots: int
    service_ms: Mapping[str, float]

    def __post_init__(self) -> None:
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise ValueError(f"slots: must be an integer >= 1, got {self.slots!r} (node {self.node_id})")
        for k, v in self.service_ms.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"service_ms.{k}: must be a finite number > 0, got {v!r} (node {self.node_id})")

    def service_for(self, qos: str) -> float | None:
        """Mean service time (ms) of class ``qos`` here, ``None`` when it is not served."""
        return self.service_ms.get(qos, self.service_ms.get("default"))


@dataclass(frozen=True, slots=True)
class ClassDemand:
    """Observed arrivals of one class, requests per second over the whole cluster."""

    arrival_rate_per_s: float

    def __post_init__(self) -> None:
        r = self.arrival_rate_per_s
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r >= 0):
            raise ValueError(f"arrival_rate_per_s: must be a finite number >= 0, got {r!r}")


@dataclass(frozen=True, slots=True)
class ClassAllocation:
    """What one node should do for one class.

    ``rate_share``: the fraction of the class's cluster-wide arrivals this node should accept;
    ``queue_cap``: the most requests of the class to hold queued; ``predicted_wait_ms``: the predicted
    mean queueing delay with the admitted load; ``allowed_wait_ms``: the budget for that delay.
    """

    queue_cap: int
    rate_share: float
    admitted_rate_per_s: float
    predicted_wait_ms: float
    allowed_wait_ms: float


@dataclass(frozen=True, slots=True)
class NodeAllocation:
    """Per-class allocations of one node, and its predicted utilisation with the admitted load."""

    node_id: str
    utilisation: float
    classes: Mapping[str, ClassAllocation] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Allocation:
    """The result of ``allocate``. ``admitted_fraction[k]`` is the share of class k's demand admitted."""

    nodes: Mapping[str, NodeAllocation]
    admitted_fraction: Mapping[str, float]
    feasible: bool
    over_budget: tuple[str, ...]

    def for_class(self, node_id: str, qos: str) -> ClassAllocation | None:
        """The allocation of class ``qos`` on ``node_id`` (``None`` when the node does not serve it)."""
        node = self.nodes.get(node_id)
        return None if node is None else node.classes.get(qos)


def erlang_c(servers: int, offered_erlangs: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (1.0 when ``offered >= servers``)."""
    if offered_erlangs <= 0:
        return 0.0
    if offered_erlangs >= servers:
        return 1.0
    b = 1.0
    for j in range(1, servers + 1):
        b = offered_erlangs * b / (j + offered_erlangs * b)
    rho = offered_erlangs / servers
    return b / (1.0 - rho * (1.0 - b))


def priority_waits_ms(servers: int, levels: Sequence[tuple[float, float]]) -> list[float]:
    """Mean waits (ms) of non-preemptive priority levels in an M/M/c queue (Cobham's formula).

    ``levels`` are ``(arrival_rate_per_ms, service_ms)`` from the highest priority down; one mean service
    time (weighted by rate) is used for all, as the formula assumes.
    """
    total = sum(rate for rate, _ in levels)
    if total <= 0:
        return [0.0 for _ in levels]
    s = sum(rate * svc for rate, svc in levels) / total
    a = total * s
    c_prob = erlang_c(servers, a)
    waits = []
    sigma_prev = 0.0
    for rate, _ in levels:
        sigma = sigma_prev + rate * s / servers
        if sigma >= 1.0 or sigma_prev >= 1.0:
            waits.append(math.inf)
        else:
            waits.append(c_prob * s / servers / ((1.0 - sigma_prev) * (1.0 - sigma)))
        sigma_prev = sigma
    return waits


def _allowed_wait(cls: QosClass, service: float) -> float:
    if cls.max_queue_wait_ms is not None:
        return cls.max_queue_wait_ms
    return max(0.0, cls.budget_ms - service)


def allocate(
    nodes: Sequence[NodeCapacity], demand: Mapping[str, ClassDemand], classes: Mapping[str, QosClass]
) -> Allocation:
    """Per-node queue caps and arrival shares per class (see the module docstring for the model).

    A class in ``demand`` but not in ``classes`` is a ``ValueError`` naming it.
    """
    for name in demand:
        if name not in classes:
            raise ValueError(f"demand.{name}: unknown class; known: {', '.join(sorted(classes))}")
    order = sorted(demand, key=lambda k: (classes[k].priority, k))
    # 1. capacity-proportional split of each class over the nodes that serve it
    split: dict[str, dict[str, float]] = {}
    for k in order:
        caps = {n.node_id: n.slots / s for n in nodes if (s := n.service_for(k)) is not None}
        total = sum(caps.values())
        split[k] = {nid: c / total for nid, c in caps.items()} if total > 0 else {}
    by_id = {n.node_id: n for n in nodes}
    served = {k for k in order if split[k]}
    unserved = [k for k in order if k not in served and demand[k].arrival_rate_per_s > 0]

    def rates(k: str, nid: str, f: float) -> float:
        return demand[k].arrival_rate_per_s / 1000.0 * split[k].get(nid, 0.0) * f

    def waits_for(fractions: Mapping[str, float], nid: str) -> dict[str, float]:
        node = by_id[nid]
        ks = [k for k in order if k in fractions and nid in split[k]]
        levels: list[tuple[float, float]] = []
        names: list[list[str]] = []
        for k in ks:  # classes of equal priority share one level
            rate, svc = rates(k, nid, fractions[k]), node.service_for(k) or 0.0
            if names and classes[names[-1][0]].priority == classes[k].priority:
                r0, s0 = levels[-1]
                tot = r0 + rate
                levels[-1] = (tot, (r0 * s0 + rate * svc) / tot if tot > 0 else s0)
                names[-1].append(k)
            else:
                levels.append((rate, svc))
                names.append([k])
        out: dict[str, float] = {}
        for group, w in zip(names, priority_waits_ms(node.slots, levels), strict=True):
            for k in group:
                out[k] = w
        return out

    def within(fractions: Mapping[str, float]) -> bool:
        for nid in by_id:
            for k, w in waits_for(fractions, nid).items():
                if fractions[k] > 0 and w > _allowed_wait(classes[k], by_id[nid].service_for(k) or 0.0) + 1e-9:
                    return False
        return True

    # 2-3. admit classes in priority order
    fractions: dict[str, float] = {}
    over: list[str] = list(unserved)
    for k in order:
        if k not in served:
            fractions[k] = 0.0
            continue
        if classes[k].shedding is Shedding.NEVER:
            fractions[k] = 1.0
            continue
        fractions[k] = 1.0
        if within(fractions):
            continue
        lo, hi = 0.0, 1.0
        for _ in range(_BISECT_STEPS):
            mid = (lo + hi) / 2
            fractions[k] = mid
            if within(fractions):
                lo = mid
            else:
                hi = mid
        fractions[k] = lo
        over.append(k)
    # never-shed classes predicted late (and any class a later never-shed class pushed over)
    for nid in by_id:
        for k, w in waits_for(fractions, nid).items():
            svc = by_id[nid].service_for(k) or 0.0
            if w > _allowed_wait(classes[k], svc) + 1e-9 and k not in over and fractions[k] > 0:
                over.append(k)
    # 4. caps and the result
    out_nodes: dict[str, NodeAllocation] = {}
    for nid, node in by_id.items():
        waits = waits_for(fractions, nid)
        per_class: dict[str, ClassAllocation] = {}
        s_mean_num = s_mean_den = 0.0
        for k in order:
            if nid in split[k]:
                r = rates(k, nid, fractions[k])
                s_mean_num += r * (node.service_for(k) or 0.0)
                s_mean_den += r
        utilisation = s_mean_num / node.slots
        for k in order:
            if nid not in split[k]:
                continue
            svc = node.service_for(k) or 0.0
            higher = sum(
                rates(j, nid, fractions[j]) * (node.service_for(j) or 0.0) / node.slots
                for j in order
                if nid in split[j] and classes[j].priority < classes[k].priority
            )
            allowed = _allowed_wait(classes[k], svc)
            cap = math.floor(node.slots * max(0.0, 1.0 - higher) * allowed / svc) if svc > 0 else 0
            per_class[k] = ClassAllocation(
                queue_cap=max(0, cap),
                rate_share=split[k][nid] * fractions[k],
                admitted_rate_per_s=rates(k, nid, fractions[k]) * 1000.0,
                predicted_wait_ms=waits.get(k, 0.0),
                allowed_wait_ms=allowed,
            )
        out_nodes[nid] = NodeAllocation(nid, utilisation, per_class)
    over_sorted = tuple(k for k in order if k in over)
    return Allocation(
        nodes=out_nodes,
        admitted_fraction=dict(fractions),
        feasible=not over_sorted,
        over_budget=over_sorted,
    )
