"""Tasks placed on a node and not started yet, per QoS class. Pure: no Ray, no clock (callers pass
``now``, wall-clock seconds like the deadlines).

A node's agent hears of a task twice: the submitter reports that it placed the task there (a
``placed`` event with the task's deadline, batched by the submitting process) and the worker reports
that it started (``start``) or refused to start it because its deadline had passed (``refused``).
Between the two the task waits in Ray's queue (for a worker process, a CPU, its arguments), which a
count of started tasks alone does not see: with slow worker start-up a burst can queue hundreds of
tasks on a node whose agent still reports two running. Counting placed-not-started tasks lets the
agent's gate close on queued work too, so its caps mean "running plus waiting", as the allocator
computes them.

The two reports come from different processes and may arrive in either order: a start that finds no
placed task of its class is remembered for ``unmatched_ttl_s`` and cancels the next placed one. A
placed task that never starts (its worker died, the node lost it) is forgotten ``grace_s`` after its
deadline, when it would have been refused anyway.
"""

from __future__ import annotations

import heapq
from collections import deque

__all__ = ["PlacedNotStarted"]


class PlacedNotStarted:
    """Per class: a heap of the deadlines of placed tasks not started, and recent unmatched starts."""

    def __init__(self, unmatched_ttl_s: float = 2.0, grace_s: float = 1.0) -> None:
        self.unmatched_ttl_s = unmatched_ttl_s
        self.grace_s = grace_s
        self._deadlines: dict[str, list[float]] = {}
        self._unmatched: dict[str, deque[float]] = {}

    def placed(self, qos: str, deadline_at: float, now: float) -> None:
        """A submitter placed a task of ``qos`` (deadline ``deadline_at``) on this node."""
        early = self._unmatched.get(qos)
        if early:
            self._expire_unmatched(early, now)
            if early:
                early.popleft()  # its start arrived first
                return
        heapq.heappush(self._deadlines.setdefault(qos, []), deadline_at)

    def started(self, qos: str, now: float) -> None:
        """A task of ``qos`` started (or was refused at start): it no longer waits."""
        heap = self._deadlines.get(qos)
        if heap:
            heapq.heappop(heap)  # the earliest deadline: Ray starts queued work roughly in order
        else:
            self._unmatched.setdefault(qos, deque()).append(now)

    def count(self, qos: str, now: float) -> int:
        """Tasks of ``qos`` placed here and not started (expired ones dropped)."""
        heap = self._deadlines.get(qos)
        if not heap:
            return 0
        while heap and heap[0] + self.grace_s < now:
            heapq.heappop(heap)
        return len(heap)

    def counts(self, now: float) -> dict[str, int]:
        """``{qos: count}`` for every class with tasks waiting."""
        return {q: n for q in list(self._deadlines) if (n := self.count(q, now))}

    def _expire_unmatched(self, early: deque[float], now: float) -> None:
        while early and early[0] + self.unmatched_ttl_s < now:
            early.popleft()
