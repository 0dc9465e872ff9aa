"""How many of the tasks this caller placed on each node are probably still running. Pure: no Ray, no
clock; callers pass ``now`` (seconds, any monotonic base).

The cluster view that placement reads is up to a few hundred milliseconds old, and a node's agent
counts a task only once it started on a worker. Between views the caller therefore corrects each
node's reported load with the tasks it placed there itself. Counting every task placed since the
view (the earlier rule) overstates that load for short tasks: a caller that submits no-op tasks one at
a time never has more than one outstanding, but after ``batch_per_cpu * CPUs`` placements it saw the
node as busier than its neighbour and alternated between them, which makes Ray lease workers on both.

This estimate keeps, per node, the expected finish time of every task placed, from a model of the
node as ``ceil(cpus)`` FIFO workers with deterministic service: a task starts when it arrives or when
the earliest of those workers is predicted free, whichever is later, and takes ``s``, the node's
reported EWMA service time of the task's class (at least ``min_s``, which stands for Ray's own
dispatch round trip). A sequential caller thus sees at most about one task of its own outstanding; a
burst piles up on the workers and counts in full until it drains. A task counts until its expected
finish passes, or until a view whose snapshot was taken after it was placed accounts for it
(``forget_before``). Without a service estimate (a class not yet seen on the node) a task counts until
such a view arrives, which is the earlier rule.
"""

from __future__ import annotations

import heapq
import math

__all__ = ["OutstandingEstimate"]


class OutstandingEstimate:
    """Per node, a heap of ``(expected_finish, placed_at)`` of this caller's recent placements."""

    def __init__(self, min_s: float = 0.002, max_tracked: int = 100_000) -> None:
        if not min_s > 0:
            raise ValueError(f"min_s: must be > 0, got {min_s!r}")
        self.min_s = min_s
        self.max_tracked = max_tracked
        self._due: dict[str, list[tuple[float, float]]] = {}
        self._free: dict[str, list[float]] = {}  # per node: predicted free time of each worker (heap)

    def add(self, node_id: str, now: float, service_s: float | None, cpus: float = 1.0) -> None:
        """Record one task placed on ``node_id`` at ``now`` (``service_s`` ``None``: no estimate yet)."""
        heap = self._due.setdefault(node_id, [])
        self._prune(heap, now)
        if len(heap) >= self.max_tracked:
            return
        if service_s is None:
            due = math.inf
        else:
            workers = max(1, math.ceil(cpus))
            free = self._free.get(node_id)
            if free is None or len(free) != workers:
                free = self._free[node_id] = [now] * workers
            due = max(now, free[0]) + max(self.min_s, service_s)
            heapq.heapreplace(free, due)
        heapq.heappush(heap, (due, now))

    def count(self, node_id: str, now: float) -> int:
        """Tasks placed on ``node_id`` whose expected finish is after ``now``."""
        heap = self._due.get(node_id)
        if not heap:
            return 0
        self._prune(heap, now)
        return len(heap)

    def forget_before(self, node_id: str, placed_before: float) -> None:
        """Drop the tasks placed on ``node_id`` before ``placed_before``: a newer view counts them."""
        heap = self._due.get(node_id)
        if heap:
            kept = [entry for entry in heap if entry[1] >= placed_before]
            if len(kept) != len(heap):
                heapq.heapify(kept)
                self._due[node_id] = kept

    def clear(self) -> None:
        self._due.clear()
        self._free.clear()

    def at(self, now: float) -> _CountsAt:
        """A read-only ``.get(node_id, default)`` view of the counts at ``now`` (what ``choose_node``'s
        ``local_load`` reads)."""
        return _CountsAt(self, now)

    @staticmethod
    def _prune(heap: list[tuple[float, float]], now: float) -> None:
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)


class _CountsAt:
    __slots__ = ("_est", "_now")

    def __init__(self, est: OutstandingEstimate, now: float) -> None:
        self._est, self._now = est, now

    def get(self, node_id: str, default: int = 0) -> int:
        return self._est.count(node_id, self._now) or default
