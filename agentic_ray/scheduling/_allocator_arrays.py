"""The BudgetAllocator's per-node model (``scheduling.allocator``) on every node at once: numpy arrays of
nodes x classes, classes in priority order. Pure: no Ray, no clock.

``Problem`` holds one ``allocate`` call's inputs and does steps 1 (split) and 3 (admission, bisection on
all failing nodes together); ``waits_ms`` is step 2 (Cobham's formula per node); ``NodeTable`` is step 4
(caps) and the ``Allocation.nodes`` mapping, building a ``NodeAllocation`` per read. Kept apart from
``allocator`` so that importing the scheduling core does not import numpy (routers and gates import it;
only coordinators allocate). ``tests/scheduling/test_allocator.py`` checks the arrays against the scalar
``priority_waits_ms``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.allocator import _BISECT_STEPS, Capacities, ClassAllocation, ClassDemand, NodeAllocation

__all__ = ["NodeTable", "Problem", "erlang_c_vec", "waits_ms"]


def erlang_c_vec(slots: np.ndarray, erlangs: np.ndarray) -> np.ndarray:
    """``erlang_c`` elementwise; the Erlang B recursion runs once per distinct slot count."""
    out = np.zeros_like(erlangs)
    busy = erlangs >= slots
    out[busy] = 1.0
    live = (erlangs > 0) & ~busy
    if not live.any():
        return out
    for c in np.unique(slots[live]):
        sel = live & (slots == c)
        a = erlangs[sel]
        b = np.ones_like(a)
        for j in range(1, int(c) + 1):
            ab = a * b
            b = ab / (j + ab)
        out[sel] = b / (1.0 - a / c * (1.0 - b))
    return out


def _waits(
    lam: np.ndarray, svc: np.ndarray, frac: np.ndarray, slots: np.ndarray, levels: np.ndarray, level_of: list[int]
) -> np.ndarray:
    """Cobham waits (ms) per node and class for admitted rates ``lam * frac`` (``levels``: one-hot
    class -> priority level, ``level_of`` the same as indices; classes at fraction 0 add no load)."""
    work = lam * frac * svc  # erlangs per class
    rate_l = (lam * frac) @ levels
    total = rate_l.sum(axis=1)
    a = work.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(total > 0, a / np.where(total > 0, total, 1.0), 0.0)
        c_prob = erlang_c_vec(slots, a)
        sigma = np.cumsum(rate_l * (s / slots)[:, None], axis=1)
        sigma_prev = np.hstack([np.zeros((len(sigma), 1)), sigma[:, :-1]])
        w = (c_prob * s / slots)[:, None] / ((1.0 - sigma_prev) * (1.0 - sigma))
    w = np.where((sigma >= 1.0) | (sigma_prev >= 1.0), np.inf, w)
    w = np.where(total[:, None] > 0, w, 0.0)
    return w[:, level_of]


def _slots(nodes: Capacities) -> np.ndarray:
    slots = np.array(nodes.slots, dtype=object)
    for i, c in enumerate(slots):
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
            raise ValueError(f"slots: must be an integer >= 1, got {c!r} (node {nodes.node_ids[i]})")
    return slots.astype(float)


def _check_service(service: np.ndarray, nodes: Capacities, order: list[str]) -> None:
    """Service times in use must be finite and > 0 (absent ones are NaN: not served)."""
    bad = ~np.isnan(service) & ~(np.isfinite(service) & (service > 0))
    if bad.any():
        i, j = (int(x[0]) for x in np.nonzero(bad))
        got = float(service[i, j])
        raise ValueError(f"service_ms.{order[j]}: must be a finite number > 0, got {got!r} (node {nodes.node_ids[i]})")


class Problem:
    """Nodes x classes arrays of one ``allocate`` call (classes in priority order)."""

    def __init__(
        self, nodes: Capacities, streams: Mapping[str, tuple[ClassDemand, ...]], order: list[str],
        classes: Mapping[str, QosClass], default_service_ms: float | None = None,
    ) -> None:  # fmt: skip
        self.ids = list(nodes.node_ids)
        self.index = {nid: i for i, nid in enumerate(self.ids)}
        self.order = order
        shape = (len(self.ids), len(order))
        self.slots = _slots(nodes)
        fallback = default_service_ms or np.nan
        service = np.array(
            [[sm.get(q, sm.get("default", fallback)) for q in order] for sm in nodes.service_ms], dtype=float
        ).reshape(shape)
        _check_service(service, nodes, order)
        self.served = ~np.isnan(service)
        self.svc = np.nan_to_num(service, nan=0.0)
        allowed = np.empty(shape)
        for j, q in enumerate(order):
            cls = classes[q]
            allowed[:, j] = (
                cls.max_queue_wait_ms
                if cls.max_queue_wait_ms is not None
                else np.maximum(0.0, cls.budget_ms - self.svc[:, j])
            )
        self.allowed = allowed
        prios = sorted({classes[q].priority for q in order})
        self.level_of = [prios.index(classes[q].priority) for q in order]
        self.levels = np.zeros((len(order), len(prios)))
        self.levels[np.arange(len(order)), self.level_of] = 1.0
        self.never = [classes[q].shedding is Shedding.NEVER for q in order]
        self.lam, self.member, self.unserved = self._split(streams)
        self.total = np.array([sum(d.arrival_rate_per_s for d in streams[q]) / 1000.0 for q in order])

    def _split(self, streams: Mapping[str, tuple[ClassDemand, ...]]) -> tuple[np.ndarray, np.ndarray, set[str]]:
        """Step 1: offered rate per ms per node and class, which nodes serve which class, classes with
        demand no node may serve."""
        lam = np.zeros_like(self.svc)
        member = np.zeros(self.svc.shape, dtype=bool)
        unserved: set[str] = set()
        everyone = np.arange(len(self.ids))
        for j, q in enumerate(self.order):
            for d in streams[q]:
                if d.eligible is None:
                    pool = everyone
                else:
                    index = self.index
                    pool = np.fromiter((index[i] for i in d.eligible if i in index), dtype=np.intp)
                pool = pool[self.served[pool, j]]
                weight = self.slots[pool] / self.svc[pool, j]
                total = weight.sum()
                if total <= 0:
                    if d.arrival_rate_per_s > 0:
                        unserved.add(q)
                    continue
                member[pool, j] = True
                lam[pool, j] += d.arrival_rate_per_s / 1000.0 * weight / total
        return lam, member, unserved

    def violations(self, rows: np.ndarray | slice, frac: np.ndarray, upto: int) -> np.ndarray:
        """Per node of ``rows``: some class up to ``upto`` admitted there waits longer than allowed."""
        w = _waits(self.lam[rows], self.svc[rows], frac, self.slots[rows], self.levels, self.level_of)
        late = (frac[:, : upto + 1] > 0) & (w[:, : upto + 1] > self.allowed[rows, : upto + 1] + 1e-9)
        return np.asarray(late.any(axis=1))

    def admit(self) -> tuple[np.ndarray, set[str]]:
        """Step 3: admitted fractions per node and class, and the classes shed somewhere."""
        frac = np.zeros_like(self.lam)
        shed: set[str] = set()
        for j, q in enumerate(self.order):
            frac[:, j] = self.member[:, j]
            if self.never[j]:
                continue
            rows = np.flatnonzero(self.member[:, j] & self.violations(slice(None), frac, j))
            if rows.size == 0:
                continue
            shed.add(q)
            sub = frac[rows]
            lo, hi = np.zeros(rows.size), np.ones(rows.size)
            for _ in range(_BISECT_STEPS):
                mid = (lo + hi) / 2
                sub[:, j] = mid
                bad = self.violations(rows, sub, j)
                lo = np.where(bad, lo, mid)
                hi = np.where(bad, mid, hi)
            frac[rows, j] = lo
        return frac, shed


class NodeTable(Mapping[str, NodeAllocation]):
    """``Allocation.nodes``: the arrays of one ``allocate`` call, a ``NodeAllocation`` built per read."""

    def __init__(self, p: Problem, frac: np.ndarray, waits: np.ndarray) -> None:
        self.ids, self.index, self.order, self.member = p.ids, p.index, p.order, p.member
        admitted = p.lam * frac
        work = admitted * p.svc
        level_work = np.cumsum(work @ p.levels, axis=1)  # through each level
        before = np.hstack([np.zeros((len(p.ids), 1)), level_work[:, :-1]])[:, p.level_of]  # higher levels only
        higher = before / p.slots[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = np.floor(p.slots[:, None] * np.maximum(0.0, 1.0 - higher) * p.allowed / p.svc)
            share = np.where(p.total > 0, admitted / np.where(p.total > 0, p.total, 1.0), 0.0)
        self.cap = np.where(p.svc > 0, np.maximum(cap, 0.0), 0.0).astype(np.int64)
        self.slots = p.slots.astype(np.int64)
        self.utilisation = work.sum(axis=1) / p.slots
        self.admitted_per_s, self.share, self.waits, self.allowed = admitted * 1000.0, share, waits, p.allowed

    def __getitem__(self, node_id: str) -> NodeAllocation:
        i = self.index[node_id]
        per_class = {
            q: ClassAllocation(
                int(self.cap[i, j]),
                float(self.share[i, j]),
                float(self.admitted_per_s[i, j]),
                float(self.waits[i, j]),
                float(self.allowed[i, j]),
            )
            for j, q in enumerate(self.order)
            if self.member[i, j]
        }
        return NodeAllocation(node_id, float(self.utilisation[i]), per_class)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"NodeTable({len(self.ids)} nodes, classes {self.order})"

    def queue_caps(self) -> dict[str, dict[str, int]]:
        return self._per_node(self.cap)

    def inflight_caps(self) -> dict[str, dict[str, int]]:
        return self._per_node(self.cap + self.slots[:, None])

    def _per_node(self, values: np.ndarray) -> dict[str, dict[str, int]]:
        """``{node_id: {class: value}}`` for the classes each node serves."""
        order = self.order
        everything = np.asarray(self.member.all(axis=1)).tolist()
        member = self.member.tolist()
        out = {}
        for nid, row, whole, mrow in zip(self.ids, values.tolist(), everything, member, strict=True):
            if whole:
                out[nid] = dict(zip(order, row, strict=True))
            else:
                out[nid] = {q: c for q, c, m in zip(order, row, mrow, strict=True) if m}
        return out


def waits_ms(p: Problem, frac: np.ndarray) -> np.ndarray:
    """Step 2 on every node of ``p`` with admitted fractions ``frac``."""
    return _waits(p.lam, p.svc, frac, p.slots, p.levels, p.level_of)
