"""BudgetAllocator: per-node admission caps and arrival shares that keep predicted queueing in budget.

Coordinators run this off the hot path; node agents and replica gates enforce the result. A "node"
here is any pool of parallel servers: a Ray node's CPUs for tasks, or one Serve replica's slots.

Model (per node n, class k; times in ms):

1. Split. Demand comes in *streams* (``ClassDemand``): a class's arrivals observed in one place, which
   may use only the nodes named in its ``eligible`` set (every node that serves the class when it names
   none). Each stream's arrivals are split over its eligible nodes in proportion to their capacity for
   the class, ``c_n / s_nk`` (slots over mean service time), so utilisation is balanced within it; a
   node's offered rate ``lambda_nk`` is the sum over the streams that reach it. Demand observed only in
   the EU therefore gives a US node no share, however idle it is.
2. Waits. Each node is an M/M/c queue with non-preemptive priority classes and one mean service time
   ``s = sum(lambda_k s_k) / sum(lambda_k)`` (Cobham, 1954; Kleinrock, *Queueing Systems* vol. 2, 1976,
   sec. 3.6)::

       rho_k   = lambda_k * s / c            sigma_k = sum of rho_j over classes with priority <= k's
       W_k     = ErlangC(c, a) * s / c / ((1 - sigma_{k-1}) * (1 - sigma_k)),   a = sum(lambda_k) * s

   with ``ErlangC`` computed from the Erlang B recursion ``B_j = a B_{j-1} / (j + a B_{j-1})``,
   ``C = B_c / (1 - (a/c)(1 - B_c))``. ``W_k`` is infinite when ``sigma_k >= 1``.
3. Budgets. Class k may wait ``allowed_k = max_queue_wait_ms`` when the policy sets it, else
   ``budget_ms - s_nk``. On each node, in priority order, each class admits the largest fraction
   ``f_nk`` in [0, 1] of its offered rate there (bisection) that keeps every class admitted there so far
   within its allowed wait; ``never``-shed classes always admit everything (and are reported when over
   budget). Fractions are per node: an overloaded region sheds its own work and no one else's.
4. Caps (Little's law, L = lambda W): the queue of class k drains at ``c (1 - sigma_{k-1}) / s_nk``
   requests per ms once higher classes take their (admitted) share, so at most
   ``queue_cap = floor(c * (1 - sigma_{k-1}) * allowed_k / s_nk)`` may wait; with no higher-priority load
   this is ``c * (budget - service) / service``.

Cost. Every node is the same small computation, so it runs on all nodes at once (numpy arrays of
nodes x classes): ``classes + 1`` wait evaluations when nothing is shed, plus ``_BISECT_STEPS`` per
class that some node sheds, each a few dozen array operations (the Erlang B recursion runs once per
distinct slot count, up to that count; ``scheduling._allocator_arrays``, which imports numpy when the
first allocation runs, not with this module); the Python work left is per node, a few microseconds
(``benchmarks/control_scale.py`` times whole rounds). Many nodes are best passed as ``Capacities``
columns rather than one ``NodeCapacity`` each. ``nodes`` of the result builds each ``NodeAllocation``
when it is read; ``queue_caps()`` and ``inflight_caps()`` read the caps without building them.

``feasible`` is true when every class meets its budget with all of its demand admitted; ``over_budget``
names the classes that do not (shed partly somewhere, ``never``-shed and predicted late somewhere, or
with demand that no node may serve).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agentic_ray.policies.types import QosClass

__all__ = [
    "Allocation",
    "Capacities",
    "ClassAllocation",
    "ClassDemand",
    "NodeAllocation",
    "NodeCapacity",
    "allocate",
    "erlang_c",
    "priority_waits_ms",
]

_BISECT_STEPS = 30  # the fraction to within 1e-9


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
class Capacities:
    """Many nodes' capacities as columns, what ``allocate`` reads: ``node_ids``, ``slots`` and
    ``service_ms`` (one mapping per node, as ``NodeCapacity.service_ms``). Coordinators with thousands of
    nodes and replicas build these columns instead of one ``NodeCapacity`` per unit; ``allocate`` checks
    them all at once (``ValueError`` naming the field and node)."""

    node_ids: Sequence[str]
    slots: Sequence[int]
    service_ms: Sequence[Mapping[str, float]]

    def __post_init__(self) -> None:
        n = len(self.node_ids)
        if len(self.slots) != n or len(self.service_ms) != n:
            raise ValueError(
                f"slots, service_ms: need one per node id ({n}), got {len(self.slots)}, {len(self.service_ms)}"
            )

    @classmethod
    def of(cls, nodes: Sequence[NodeCapacity]) -> Capacities:
        """The columns of ``NodeCapacity`` values (already checked one by one)."""
        return cls([n.node_id for n in nodes], [n.slots for n in nodes], [n.service_ms for n in nodes])


@dataclass(frozen=True, slots=True)
class ClassDemand:
    """Observed arrivals of one class, requests per second: over the whole cluster (``eligible`` None),
    or one stream of them that may only use the node ids in ``eligible`` (for example the nodes of the
    zone where it was observed that the policy's placement rules allow)."""

    arrival_rate_per_s: float
    eligible: frozenset[str] | None = None

    def __post_init__(self) -> None:
        r = self.arrival_rate_per_s
        if isinstance(r, bool) or not (isinstance(r, (int, float)) and math.isfinite(r) and r >= 0):
            raise ValueError(f"arrival_rate_per_s: must be a finite number >= 0, got {r!r}")
        if self.eligible is not None and not isinstance(self.eligible, frozenset):
            raise ValueError(f"eligible: must be a frozenset of node ids or None, got {type(self.eligible).__name__}")


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
    """The result of ``allocate``. ``admitted_fraction[k]``: the share of class k's demand admitted over
    all nodes (1.0 for a class with no demand that some node serves, 0.0 when none serves it)."""

    nodes: Mapping[str, NodeAllocation]
    admitted_fraction: Mapping[str, float]
    feasible: bool
    over_budget: tuple[str, ...]

    def for_class(self, node_id: str, qos: str) -> ClassAllocation | None:
        """The allocation of class ``qos`` on ``node_id`` (``None`` when the node does not serve it)."""
        node = self.nodes.get(node_id)
        return None if node is None else node.classes.get(qos)

    def queue_caps(self) -> dict[str, dict[str, int]]:
        """``{node_id: {class: queue_cap}}`` for the classes each node serves (no ``NodeAllocation`` built)."""
        fast = getattr(self.nodes, "queue_caps", None)  # the arrays ``allocate`` made
        if fast is not None:
            caps: dict[str, dict[str, int]] = fast()
            return caps
        return {nid: {k: c.queue_cap for k, c in node.classes.items()} for nid, node in self.nodes.items()}

    def inflight_caps(self) -> dict[str, dict[str, int]]:
        """``{node_id: {class: slots + queue_cap}}``: running plus allowed to wait, for the classes each
        node serves (what node agents and replica gates enforce)."""
        caps: dict[str, dict[str, int]] = self.nodes.inflight_caps()  # type: ignore[attr-defined]
        return caps


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


def _streams(
    demand: Mapping[str, ClassDemand | Sequence[ClassDemand]], classes: Mapping[str, QosClass]
) -> dict[str, tuple[ClassDemand, ...]]:
    out: dict[str, tuple[ClassDemand, ...]] = {}
    for name, d in demand.items():
        if name not in classes:
            raise ValueError(f"demand.{name}: unknown class; known: {', '.join(sorted(classes))}")
        out[name] = (d,) if isinstance(d, ClassDemand) else tuple(d)
    return out


def allocate(
    nodes: Sequence[NodeCapacity] | Capacities,
    demand: Mapping[str, ClassDemand | Sequence[ClassDemand]],
    classes: Mapping[str, QosClass],
    *,
    default_service_ms: float | None = None,
) -> Allocation:
    """Per-node queue caps and arrival shares per class (see the module docstring for the model).

    ``nodes``: one ``NodeCapacity`` per node, or the same as ``Capacities`` columns. ``demand`` maps a
    class to its demand: one ``ClassDemand`` or several streams of it (each with the
    nodes it may use). ``default_service_ms``, when given, is the service time of a class a node lists
    neither itself nor ``"default"`` for (else such a node does not serve it). A class in ``demand`` but
    not in ``classes`` is a ``ValueError`` naming it; a node id listed twice is a ``ValueError`` too.
    """
    from agentic_ray.scheduling._allocator_arrays import NodeTable, Problem, waits_ms

    streams = _streams(demand, classes)
    order = sorted(streams, key=lambda k: (classes[k].priority, k))
    columns = nodes if isinstance(nodes, Capacities) else Capacities.of(nodes)
    p = Problem(columns, streams, order, classes, default_service_ms)
    if len(p.index) != len(p.ids):
        raise ValueError("nodes: node ids must be unique")
    frac, shed = p.admit()
    waits = waits_ms(p, frac)
    late = p.member & (frac > 0) & (waits > p.allowed + 1e-9)
    over = p.unserved | shed | {q for j, q in enumerate(order) if late[:, j].any()}
    admitted = (p.lam * frac).sum(axis=0)
    fraction = {
        q: float(admitted[j] / p.total[j]) if p.total[j] > 0 else (1.0 if p.member[:, j].any() else 0.0)
        for j, q in enumerate(order)
    }
    over_sorted = tuple(q for q in order if q in over)
    return Allocation(
        nodes=NodeTable(p, frac, waits), admitted_fraction=fraction, feasible=not over_sorted, over_budget=over_sorted
    )
