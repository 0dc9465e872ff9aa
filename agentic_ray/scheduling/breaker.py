"""Circuit breaking by outlier ejection, per replica (Envoy outlier detection, Hystrix half-open).

States per replica: ``closed`` (takes traffic) -> ``open`` (ejected until ``until``) -> ``half_open``
(ejection expired: exactly one probe request may go) -> ``closed`` when the probe succeeds, ``open``
again when it fails.

A closed replica is ejected when

- ``consecutive_failures`` results in a row failed, or
- ``latency_outlier_factor`` is set, at least three replicas have a latency EWMA, and this replica's
  EWMA exceeds ``factor * median`` of all replicas' EWMAs (Envoy's "failure percentage"/"success rate"
  detectors compare a host with the cluster the same way),

unless ejecting it would put more than ``max_ejected_fraction`` of the known replicas out (open or
half-open): ``ejected + 1 <= floor(max_ejected_fraction * known)``, as Envoy's ``max_ejection_percent``.
The k-th ejection of a replica lasts ``min(ejection_s * 2**(k-1), max_ejection_s)``; like Envoy's
ejection multiplier, k decays by one for every such period the replica then stays closed, so a replica
that recovered for good goes back to short ejections. A failed half-open probe re-ejects regardless
of the fraction cap (the replica was already counted as out).

Use: a router sets ``ReplicaView.healthy = breaker.available(replica_id, now)``, calls
``on_dispatch(replica_id, now)`` when it sends (this takes the half-open probe) and ``record(...)``
with each result. Settings come from ``BreakerSettings`` in the policy.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from agentic_ray.policies.types import BreakerSettings

__all__ = ["BreakerState", "CircuitBreaker", "ReplicaHealth"]


class BreakerState(str, Enum):
    """Per-replica breaker state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class ReplicaHealth:
    """One replica's breaker state for snapshots: ``until`` is when an open ejection expires."""

    replica_id: str
    state: BreakerState
    until: float | None
    ejections: int
    consecutive_failures: int
    latency_ewma_ms: float | None


class _Replica:
    __slots__ = ("closed_since", "ejections", "failures", "latency", "probe_out", "state", "until")

    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.until: float | None = None
        self.ejections = 0
        self.failures = 0
        self.latency: float | None = None
        self.probe_out = False
        self.closed_since = 0.0


class CircuitBreaker:
    """Outlier ejection over a set of replicas (see the module docstring)."""

    def __init__(
        self, settings: BreakerSettings | None = None, replicas: Iterable[str] = (), *, alpha: float = 0.3
    ) -> None:
        self.settings = settings if settings is not None else BreakerSettings()
        s = self.settings
        if s.consecutive_failures < 1 or s.ejection_s <= 0 or s.max_ejection_s < s.ejection_s:
            raise ValueError(f"settings: need consecutive_failures >= 1, 0 < ejection_s <= max_ejection_s: {s}")
        if not 0.0 <= s.max_ejected_fraction <= 1.0:
            raise ValueError(f"settings.max_ejected_fraction: must be in [0, 1], got {s.max_ejected_fraction}")
        self.alpha = alpha
        self._plain = s.latency_outlier_factor is None  # no latency detector: a success only resets failures
        self._replicas: dict[str, _Replica] = {}
        for rid in replicas:
            self.add(rid)

    def add(self, replica_id: str) -> None:
        """Know ``replica_id`` (counts toward the ejected fraction); no-op when known."""
        if replica_id not in self._replicas:
            self._replicas[replica_id] = _Replica()

    def remove(self, replica_id: str) -> None:
        """Forget a replica that went away."""
        self._replicas.pop(replica_id, None)

    def _get(self, replica_id: str) -> _Replica:
        r = self._replicas.get(replica_id)
        if r is None:
            r = self._replicas[replica_id] = _Replica()
        return r

    def state(self, replica_id: str, now: float) -> BreakerState:
        """The state at ``now`` (an expired ejection reads as half-open)."""
        r = self._get(replica_id)
        if r.state is BreakerState.OPEN and r.until is not None and now >= r.until:
            r.state = BreakerState.HALF_OPEN
            r.probe_out = False
        return r.state

    def available(self, replica_id: str, now: float) -> bool:
        """True when a request may be sent: closed, or half-open with its single probe not yet taken."""
        state = self.state(replica_id, now)
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self._replicas[replica_id].probe_out

    def retry_after_s(self, replica_id: str, now: float) -> float | None:
        """Seconds until an open replica's ejection expires (None when it is not open)."""
        r = self._get(replica_id)
        if self.state(replica_id, now) is not BreakerState.OPEN or r.until is None:
            return None
        return r.until - now

    def on_dispatch(self, replica_id: str, now: float) -> None:
        """A request was sent; in half-open state it is the one probe."""
        if self.state(replica_id, now) is BreakerState.HALF_OPEN:
            self._replicas[replica_id].probe_out = True

    def record(self, replica_id: str, ok: bool, latency_ms: float | None, now: float) -> BreakerState:
        """Record one result; returns the replica's state after it."""
        r = self._get(replica_id)
        if ok and r.state is BreakerState.CLOSED and not r.failures and latency_ms is None and self._plain:
            # Nothing to change (the ejection count decays lazily at the next failure): the common case.
            return r.state
        state = self.state(replica_id, now)
        if latency_ms is not None and ok:
            r.latency = latency_ms if r.latency is None else r.latency + self.alpha * (latency_ms - r.latency)
        if state is BreakerState.HALF_OPEN:
            if not r.probe_out:
                return state  # a late result from before the ejection; the probe is still to come
            r.probe_out = False
            if ok:
                r.state, r.until, r.failures, r.closed_since = BreakerState.CLOSED, None, 0, now
                if latency_ms is not None:
                    r.latency = latency_ms  # start afresh; the old average made it an outlier
            else:
                self._open(r, now, force=True)
            return r.state
        if state is BreakerState.OPEN:
            return state
        self._decay(r, now)
        r.failures = 0 if ok else r.failures + 1
        if r.failures >= self.settings.consecutive_failures or self._latency_outlier(r):
            self._open(r, now)
        return r.state

    def _decay(self, r: _Replica, now: float) -> None:
        s = self.settings
        while r.ejections > 0:
            period = min(s.ejection_s * 2 ** (r.ejections - 1), s.max_ejection_s)
            if now - r.closed_since < period:
                break
            r.ejections -= 1
            r.closed_since += period

    def _latency_outlier(self, r: _Replica) -> bool:
        factor = self.settings.latency_outlier_factor
        if factor is None or r.latency is None:
            return False
        values = [x.latency for x in self._replicas.values() if x.latency is not None]
        if len(values) < 3:
            return False
        return r.latency > factor * statistics.median(values)

    def _open(self, r: _Replica, now: float, *, force: bool = False) -> None:
        if not force:
            ejected = sum(1 for x in self._replicas.values() if x.state is not BreakerState.CLOSED)
            if ejected + 1 > int(self.settings.max_ejected_fraction * len(self._replicas)):
                return
        r.ejections += 1
        s = self.settings
        r.state = BreakerState.OPEN
        r.until = now + min(s.ejection_s * 2 ** (r.ejections - 1), s.max_ejection_s)
        r.failures = 0
        r.probe_out = False

    def ejected(self, now: float) -> list[str]:
        """Replicas currently open or half-open."""
        return [rid for rid in self._replicas if self.state(rid, now) is not BreakerState.CLOSED]

    def snapshot(self, now: float) -> list[ReplicaHealth]:
        """Every known replica's state."""
        return [
            ReplicaHealth(rid, self.state(rid, now), r.until, r.ejections, r.failures, r.latency)
            for rid, r in self._replicas.items()
        ]
