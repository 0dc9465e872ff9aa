"""A manual clock for tests and simulations: time moves only when you say so (trio's ``MockClock``).

    clock = ManualClock(start=100.0)
    clock.now()        # 100.0
    clock.advance(0.5) # returns 100.5

Pass ``clock.now()`` wherever the pure core takes ``now``; pass ``clock.now`` where a callable is wanted.
"""

from __future__ import annotations

import math

__all__ = ["ManualClock"]


class ManualClock:
    """Seconds on a virtual monotonic clock. ``advance`` with a negative or non-finite step is a ``ValueError``."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start: must be finite, got {start!r}")
        self._now = float(start)

    def now(self) -> float:
        """The current virtual time in seconds."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and return the new time."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds: must be a finite number >= 0, got {seconds!r}")
        self._now += seconds
        return self._now

    def __call__(self) -> float:
        return self._now
