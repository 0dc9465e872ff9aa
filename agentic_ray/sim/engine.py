"""The discrete-event engine: a virtual clock and a heap of timestamped events.

Classic event-scheduling simulation (Law & Kelton, *Simulation Modeling and Analysis*, ch. 1): the
clock jumps to the earliest pending event, its handler runs and may schedule later events. Ties are
broken by insertion order (a monotone sequence number), so a run is a pure function of its inputs and
seed. Nothing here reads a wall clock.
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = ["EventQueue"]


class EventQueue:
    """A min-heap of ``(time, seq, kind, payload)`` events and the virtual clock ``now`` (seconds).

    ``schedule`` refuses events in the past; ``pop`` advances ``now`` to the popped event's time.
    """

    __slots__ = ("_heap", "_seq", "now")

    def __init__(self, start: float = 0.0) -> None:
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self.now = start

    def schedule(self, at: float, kind: int, payload: Any = None) -> None:
        """Add an event of integer ``kind`` at virtual time ``at`` (>= ``now``)."""
        if at < self.now:
            raise ValueError(f"event at {at} is before now={self.now}")
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, payload))

    def pop(self) -> tuple[float, int, Any]:
        """Remove the earliest event, move the clock to it and return ``(time, kind, payload)``."""
        at, _seq, kind, payload = heapq.heappop(self._heap)
        self.now = at
        return at, kind, payload

    def peek_time(self) -> float:
        """Time of the earliest pending event (``inf`` when there is none)."""
        return self._heap[0][0] if self._heap else float("inf")

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)
