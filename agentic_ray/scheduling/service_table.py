"""A router's service-time estimates per replica and model: smoothed mean and mean deviation.

For every (replica, model) that has answered, ``MeanDeviation`` (``estimators.py``) keeps the
Jacobson/Karels estimates (Jacobson, "Congestion Avoidance and Control", SIGCOMM 1988; RFC 6298 for
TCP's retransmission timeout)::

    dev  <- dev + beta * (|x - mean| - dev)
    mean <- mean + alpha * (x - mean)

and the table keeps a hot-path copy ``(mean, mean + k * dev)`` per model and replica, read once per
routing decision (``by_replica(model)``): ``mean`` prices the queue ahead of a request, ``mean + k * dev``
its own service time (a likely-but-not-worst-case draw). A replica that has not answered yet falls back
to its published service time for the model, then its ``"default"`` one, then ``default_ms``
(``estimate``). It measures; it never decides. Pure: time comes in as ``now``.

Outliers. A sample above ``clip`` times the current mean (default 4) enters the estimates as ``clip``
times the mean (winsorised; Tukey, 1962; Huber's robust M-estimation, 1964). A rare slow request is a
property of the request, not of the replica: with bimodal service (95 % of requests 5 ms, 5 % 200 ms) an
unclipped 200 ms sample lifted that one replica's mean by 10 ms and its deviation by 47 ms, so an idle
replica that had just served a slow request ranked behind a busy one and critical work queued behind
the next slow request (``hol`` in the SLO matrix). The slow mode itself stays known: the residual-life
estimate (``residual.py``) takes the raw samples. A replica that really slows down (a straggler) still
moves its mean by up to ``alpha * (clip - 1)`` (15 %) per sample.

Long silences (``tau_s``). A sample that comes ``gap >= 2 * tau_s`` seconds after the replica's previous
one weighs ``1 - exp(-gap / tau_s)`` (at least 86 %) in the mean, unclipped (the replica may have changed
since): the time decay of Finagle's and Linkerd's Peak-EWMA estimates, for a replica probed after a long
silence (``AgenticRouter``'s ``probe_after_s``), which its first answer then re-measures instead of the
~1/alpha answers a fixed alpha needs to forget an old value. Shorter gaps keep ``alpha``: routers get
replicas' samples in batches a report apart, and weighing each batch's first sample by the gap before it
made the estimates follow single samples (the HTTP front door at 120 clients lost 5-15 % of goodput).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from agentic_ray.scheduling.estimators import MeanDeviation
from agentic_ray.scheduling.types import ReplicaView

__all__ = ["ServiceTable"]

_EMPTY: Mapping[str, tuple[float, float]] = {}


class ServiceTable:
    """Mean and mean + ``k`` deviations of service time (ms) per model and replica (module docstring)."""

    __slots__ = ("_hot", "_stats", "alpha", "beta", "clip", "k", "tau_s")

    def __init__(self, alpha: float = 0.05, beta: float = 0.25, k: float = 2.0, clip: float | None = 8.0,
                 tau_s: float | None = None) -> None:  # fmt: skip
        if clip is not None and not clip > 1:
            raise ValueError(f"clip: must be > 1 or None, got {clip!r}")
        if tau_s is not None and not (tau_s > 0 and math.isfinite(tau_s)):
            raise ValueError(f"tau_s: must be a finite number > 0 or None, got {tau_s!r}")
        self.tau_s = tau_s
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.clip = clip
        self._stats: dict[str, dict[str, MeanDeviation]] = {}  # model -> replica id -> estimator
        self._hot: dict[str, dict[str, tuple[float, float]]] = {}  # model -> replica id -> (mean, upper)

    def observe(self, replica_id: str, model: str, service_ms: float, now: float) -> float | None:
        """Add one measured service time; returns the mean before it (None for the first sample)."""
        stats = self._stats.get(model)
        if stats is None:
            stats = self._stats[model] = {}
        st = stats.get(replica_id)
        if st is None:
            st = stats[replica_id] = MeanDeviation(self.alpha, self.beta)
        before = st.mean
        clip = self.clip
        alpha = None
        tau = self.tau_s
        if before is not None and tau is not None and st.last_at is not None and now - st.last_at >= 2.0 * tau:
            weight = 1.0 - math.exp(-(now - st.last_at) / tau)  # a long silence since the last sample
            if weight > self.alpha:
                alpha = weight
                clip = None  # after a long gap the replica may have changed: no outlier clipping
        if clip is not None and before is not None and service_ms > clip * before:
            service_ms = clip * before  # a request-level outlier (bimodal service): see the module docstring
        st.observe(service_ms, now, alpha)
        mean = st.mean if st.mean is not None else service_ms  # set by the observation just made
        self._hot.setdefault(model, {})[replica_id] = (mean, mean + self.k * st.dev)
        return before

    def last_at(self, replica_id: str, model: str) -> float | None:
        """When ``replica_id`` last answered ``model`` (None: never)."""
        st = self._stats.get(model, {}).get(replica_id)
        return None if st is None else st.last_at

    def by_replica(self, model: str) -> Mapping[str, tuple[float, float]]:
        """Replica id -> ``(mean, mean + k * dev)`` for ``model`` (the hot-path read; do not modify)."""
        return self._hot.get(model) or _EMPTY

    def mean(self, replica_id: str, model: str) -> float | None:
        """The measured mean of ``model`` on ``replica_id``, None before its first answer."""
        est = self._hot.get(model, _EMPTY).get(replica_id)
        return None if est is None else est[0]

    def estimate(self, replica: ReplicaView, model: str, default_ms: float) -> tuple[float, float]:
        """``(mean, mean + k * dev)`` of ``model`` on ``replica``, or its published time (twice) before
        it has answered (for ``model``, else ``"default"``, else ``default_ms``)."""
        est = self._hot.get(model, _EMPTY).get(replica.replica_id)
        if est is None:
            sm = replica.service_ms
            s = sm.get(model) or sm.get("default") or default_ms
            est = (s, s)
        return est
