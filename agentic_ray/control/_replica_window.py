"""Per-replica figures over a sliding window, from Serve replicas' reports. Pure: ``now`` comes in.

Replicas report per-class deltas (``ReplicaReport``: offered, completed, missed, failed, expired and a
latency histogram) every 0.25 s through their agents and zones; the GlobalCoordinator keeps only the
latest of each. Two deciders need more than the latest delta:

- the actions (``control._actions``) ask which replica's (or node's) latency *drifted*: the median
  latency of each replica over the window, against the median of the others of its deployment;
- the canary judge (``control._canary``) asks the burn rate and p99 of each policy *version*: the
  replicas' windows merged by the policy sha256 each report carries.

``observe(reports, now)`` takes reports as zones forward them; a report already taken (same replica,
same ``at``; zones may forward the latest one more than once) or older than the last one taken is
ignored. Deltas older than ``window_s`` are dropped. ``bad`` counts what the SLO counts against the
budget: completions that missed their deadline, failed ones and requests that expired in the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agentic_ray.control._reports import ReplicaReport
from agentic_ray.control._summary import LatencyHistogram

__all__ = ["ReplicaWindow", "WindowStats"]


@dataclass(slots=True)
class WindowStats:
    """What happened over the window: ``count`` judged requests (completed + expired), ``bad`` (missed,
    failed or expired), the completed requests' latency histogram, and where (deployment, node, zone,
    policy sha256 of the latest report)."""

    deployment: str = ""
    node_id: str = ""
    zone: str = ""
    policy_sha: str | None = None
    count: int = 0
    bad: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, count: int, bad: int, latency: LatencyHistogram) -> None:
        self.count += count
        self.bad += bad
        self.latency.merge(latency)

    def median_ms(self) -> float | None:
        return self.latency.quantile(0.5) if self.latency.count else None

    def quantile_ms(self, q: float) -> float | None:
        return self.latency.quantile(q) if self.latency.count else None

    def p99_ms(self) -> float | None:
        return self.latency.quantile(0.99) if self.latency.count else None

    def burn_rate(self, slo_target: float) -> float:
        """``(bad / count) / (1 - slo_target)`` (0.0 without requests)."""
        return (self.bad / self.count) / (1.0 - slo_target) if self.count else 0.0


class ReplicaWindow:
    """Sliding windows of each replica's reported deltas (see the module docstring)."""

    def __init__(self, window_s: float = 5.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s: must be > 0, got {window_s!r}")
        self.window_s = window_s
        # replica id -> (received at, policy sha256 of the report, {class: (count, bad, latency)})
        self._deltas: dict[str, deque[tuple[float, str, dict[str, tuple[int, int, LatencyHistogram]]]]] = {}
        self._last_at: dict[str, float] = {}
        self._where: dict[str, ReplicaReport] = {}

    def observe(self, reports: Iterable[ReplicaReport], now: float) -> None:
        """Take replicas' reports received at ``now`` (repeats and older ones are ignored)."""
        for r in reports:
            last = self._last_at.get(r.replica_id)
            if last is not None and r.at <= last:
                continue
            self._last_at[r.replica_id] = r.at
            self._where[r.replica_id] = r
            per_class = {}
            for qos, c in r.classes.items():
                count = c.completed + c.expired
                if count or c.latency.count:
                    hist = LatencyHistogram(dict(c.latency.buckets), c.latency.count)
                    per_class[qos] = (count, c.missed + c.failed + c.expired, hist)
            self._deltas.setdefault(r.replica_id, deque()).append((now, r.policy_sha or "", per_class))
        self._prune(now)

    def _prune(self, now: float) -> None:
        cut = now - self.window_s
        for rid in list(self._deltas):
            d = self._deltas[rid]
            while d and d[0][0] <= cut:
                d.popleft()
            if not d and now - self._last_at.get(rid, now) > 10 * self.window_s:
                del self._deltas[rid]  # a replica gone for long: forget it
                self._last_at.pop(rid, None)
                self._where.pop(rid, None)

    def forget(self, replica_ids: Iterable[str]) -> None:
        for rid in replica_ids:
            self._deltas.pop(rid, None)
            self._last_at.pop(rid, None)
            self._where.pop(rid, None)

    def replicas(self, now: float, qos: str | None = None, span_s: float | None = None) -> dict[str, WindowStats]:
        """``{replica id: WindowStats}`` over the last ``span_s`` (default: the whole window) before
        ``now`` (one class, or all)."""
        self._prune(now)
        cut = now - (span_s if span_s is not None else self.window_s)
        out: dict[str, WindowStats] = {}
        for rid, deltas in self._deltas.items():
            where = self._where[rid]
            stats = WindowStats(where.deployment, where.node_id, where.zone, where.policy_sha)
            for t, _, per_class in deltas:
                if t <= cut:
                    continue
                for q, (count, bad, hist) in per_class.items():
                    if qos is None or q == qos:
                        stats.add(count, bad, hist)
            out[rid] = stats
        return out

    def by_version(
        self,
        now: float,
        deployments: Mapping[str, object] | None = None,
        qos: str | None = None,
        span_s: float | None = None,
    ) -> dict[str, WindowStats]:
        """The window (its last ``span_s``) merged by the policy sha256 each delta was reported under
        (``deployments``: only their replicas; ``qos``: one class)."""
        self._prune(now)
        cut = now - (span_s if span_s is not None else self.window_s)
        out: dict[str, WindowStats] = {}
        for rid, deltas in self._deltas.items():
            if deployments is not None and self._where[rid].deployment not in deployments:
                continue
            for t, sha, per_class in deltas:
                if t <= cut:
                    continue
                merged = out.setdefault(sha, WindowStats(policy_sha=sha))
                for q, (count, bad, hist) in per_class.items():
                    if qos is None or q == qos:
                        merged.add(count, bad, hist)
        return out
