"""An in-flight limit that holds the path's time under a target: fewer in flight when answers slow down.

Why. The front door's in-flight limit (``scheduling.inflight.InflightQueue``) is sized from the
deployment's replica slots (three per slot, per proxy). That keeps the replicas busy, but when the host,
not the replicas, is the bottleneck (Serve's proxies and replicas sharing two slow cores, one proxy per
node of a local cluster), every request let in shares the proxies' and replicas' event loops first
come, first served, and the door's priority order stops mattering. With 60 closed-loop HTTP clients on
the chaos suite's cluster (three proxies, three replicas of two slots, a busy process on one core) the
doors let 54 in, critical requests (budget 150 ms) waited behind sheddable ones in those loops and 0-7 %
of them made it, at 44-75 requests/s in budget; with two in flight per proxy 49-87 % made it, at 64-97
requests/s; one per proxy collapsed (25-28 requests/s: nearly every request expired at the door).

What. ``TargetLimit`` adjusts a concurrency limit so that the median time of an answer on the path
(from when the door let the request in to when its answer began) stays at or under ``target_s``:
additive increase, multiplicative decrease on a latency target, as SEDA's admission controller does for
its stages' response time (Welsh and Culler, "Adaptive Overload Control for Busy Internet Servers",
USITS 2003) and as Envoy's adaptive concurrency filter and Netflix's ``concurrency-limits`` do against a
measured minimum instead (their guard against growing a limit that is not in use is kept). The caller
reports each answer's path time and how many were in when it ended. Every ``interval_s`` with at least
``min_samples`` answers, the interval's median is compared with the target: at or under it the limit
grows by one (only while at least half of it was in use in the interval); over it, it shrinks in
proportion (``limit x target / median``, by at most half per interval), never under ``min_limit`` nor
over ``max_limit``. The door sets the target from its route's policy (half the tightest class budget),
the ceiling from the replicas' slots (its static limit) and the floor from this proxy's share of the
slots: a limit under the floor would leave replicas idle while the door holds work.

Pure: no clock, no asyncio; times are the caller's, in seconds.
"""

from __future__ import annotations

import math

__all__ = ["TargetLimit"]


class TargetLimit:
    """A concurrency limit between ``min_limit`` and ``max_limit`` that keeps the median path time of an
    interval's answers at or under ``target_s`` (module docstring). Starts at ``min_limit`` and grows while
    answers are fast enough (a slow start)."""

    def __init__(self, target_s: float, min_limit: int, max_limit: int, *, interval_s: float = 0.1,
                 min_samples: int = 5) -> None:  # fmt: skip
        if not 0 < target_s < math.inf or interval_s < 0 or min_samples < 1:
            raise ValueError(
                f"need 0 < target_s < inf, interval_s >= 0 and min_samples >= 1; got {target_s}, {interval_s} "
                f"and {min_samples}"
            )
        self.target_s, self.interval_s, self.min_samples = target_s, interval_s, min_samples
        self.min_limit, self.max_limit = _bounds(min_limit, max_limit)
        self._limit = float(self.min_limit)
        self._samples: list[float] = []
        self._busy = False  # at least half the limit was in use in this interval
        self._since = -math.inf  # when this interval began (its first answer)
        self.last_median_s = math.nan  # the last interval's median (for stats)

    @property
    def limit(self) -> int:
        """The limit now (an integer between ``min_limit`` and ``max_limit``)."""
        return max(self.min_limit, min(self.max_limit, int(self._limit)))

    def set_bounds(self, min_limit: int, max_limit: int) -> int:
        """Set the bounds (replicas or proxies came or went) and clamp to them; returns ``limit``. ValueError
        when ``min_limit < 1``; a ``max_limit`` under ``min_limit`` is raised to it."""
        self.min_limit, self.max_limit = _bounds(min_limit, max_limit)
        self._limit = max(float(self.min_limit), min(self._limit, float(self.max_limit)))
        return self.limit

    def observe(self, path_s: float, inflight: int, now: float) -> int:
        """An answer began ``path_s`` after it was let in, at ``now``, with ``inflight`` in (itself
        included); returns ``limit``, updated when an interval ended."""
        if not self._samples:
            self._since = now
        self._samples.append(path_s)
        self._busy = self._busy or 2 * inflight >= self.limit
        if now - self._since < self.interval_s or len(self._samples) < self.min_samples:
            return self.limit
        samples = sorted(self._samples)
        median = self.last_median_s = samples[len(samples) // 2]
        busy = self._busy
        self._samples, self._busy = [], False
        if median <= self.target_s:
            if busy:
                self._limit = min(float(self.max_limit), math.floor(self._limit) + 1.0)
        else:
            self._limit = max(float(self.min_limit), self._limit * max(0.5, self.target_s / median))
        return self.limit


def _bounds(min_limit: int, max_limit: int) -> tuple[int, int]:
    """``(min_limit, max(min_limit, max_limit))``; ValueError when ``min_limit < 1``."""
    if min_limit < 1:
        raise ValueError(f"need min_limit >= 1, got {min_limit}")
    return min_limit, max(min_limit, max_limit)
