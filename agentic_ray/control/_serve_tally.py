"""What one Serve replica (or router) counts per QoS class for the control plane. Pure: no Ray, no clock.

A replica's admission wrapper calls the tally on every arrival and outcome at its gate (``offer``,
``admit``, ``shed``, ``expire``, ``complete``); a router calls ``offer`` and ``shed`` for the requests it
refuses before any replica sees them. A reporter thread calls ``take()`` every report interval and gets
what happened since its previous ``take``:

- per class a ``ReplicaClassStats`` (offered, admitted, shed by reason, expired, completed, failed,
  missed, a latency histogram of the completions): the ``ReplicaReport.classes`` the node agent keeps;
- per drift key a ``ClassSummary`` (``summary_key(class, drift)``): what the agent merges into its summary
  delta so drift and burn-rate alerts see Serve. The drift part is the request's workflow or stage
  (``stage_key``: ``"fraud/score"``) when it names one, else ``serve_drift_key(deployment)``
  (``"serve:APP/DEPLOYMENT"``), so an alert names the deployment. Completions count with their
  latency (``missed`` when they ended after the deadline); requests shed or expired at this hop count as
  refused, as the task path counts a task refused at start (``Refused``): they spend error budget.

Counts are cumulative and ``take`` returns the difference from the previous ``take``. The owner's event
loop adds while the reporter thread takes: each counter is one Python int or dict that the thread copies
in one step (atomic under the GIL), so a take may see a completion's count before its latency bucket,
but nothing is lost or counted twice: what one take misses, the next one returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentic_ray.control._reports import ReplicaClassStats
from agentic_ray.control._summary import ClassSummary, LatencyHistogram, stage_key, summary_key

__all__ = ["SERVE_DRIFT_PREFIX", "ServeTally", "drift_workflow", "serve_drift_key"]

SERVE_DRIFT_PREFIX = "serve:"


def serve_drift_key(deployment: str) -> str:
    """The workflow part of the drift key of a deployment's requests that name no workflow:
    ``"serve:APP/DEPLOYMENT"``."""
    return SERVE_DRIFT_PREFIX + deployment


class _ClassCounts:
    __slots__ = ("admitted", "completed", "expired", "failed", "latency", "missed", "offered", "shed")

    def __init__(self) -> None:
        self.offered = 0
        self.admitted = 0
        self.expired = 0
        self.completed = 0
        self.failed = 0
        self.missed = 0
        self.shed: dict[str, int] = {}
        self.latency = LatencyHistogram()

    def frozen(self) -> ReplicaClassStats:
        buckets = dict(self.latency.buckets)
        latency = LatencyHistogram(buckets, sum(buckets.values()))
        return ReplicaClassStats(self.offered, self.admitted, dict(self.shed), self.expired, self.completed,
                                 self.failed, self.missed, latency)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _SummaryMark:
    count: int
    errors: int
    missed: int
    buckets: dict[int, int]


def _minus(now: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {b: n - before.get(b, 0) for b, n in now.items() if n != before.get(b, 0)}


def _delta(now: ReplicaClassStats, before: ReplicaClassStats | None) -> ReplicaClassStats:
    if before is None:
        return now
    shed = {r: n - before.shed.get(r, 0) for r, n in now.shed.items() if n != before.shed.get(r, 0)}
    buckets = _minus(now.latency.buckets, before.latency.buckets)
    return ReplicaClassStats(now.offered - before.offered, now.admitted - before.admitted, shed,
                             now.expired - before.expired, now.completed - before.completed,
                             now.failed - before.failed, now.missed - before.missed,
                             LatencyHistogram(buckets, sum(buckets.values())))  # fmt: skip


def _changed(d: ReplicaClassStats) -> bool:
    return bool(d.offered or d.admitted or d.shed or d.expired or d.completed)


class ServeTally:
    """Cumulative per-class counts of one replica or router of ``deployment`` (``"APP/DEPLOYMENT"``);
    ``take`` returns the deltas (see the module docstring)."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.default_drift = serve_drift_key(deployment)
        self._classes: dict[str, _ClassCounts] = {}
        self._drift: dict[tuple[str, str], ClassSummary] = {}
        self._taken_classes: dict[str, ReplicaClassStats] = {}
        self._taken_drift: dict[tuple[str, str], _SummaryMark] = {}

    # -- the owner's hot path ----------------------------------------------------------------------
    def _counts(self, qos: str) -> _ClassCounts:
        c = self._classes.get(qos)
        if c is None:
            c = self._classes[qos] = _ClassCounts()
        return c

    def _summary(self, qos: str, workflow: str | None) -> ClassSummary:
        key = (qos, workflow or self.default_drift)
        s = self._drift.get(key)
        if s is None:
            s = self._drift[key] = ClassSummary(qos, key[1])
        return s

    def offer(self, qos: str) -> None:
        """A request of ``qos`` arrived (whatever happens to it next)."""
        c = self._classes.get(qos)  # inlined ``_counts``: this runs once per request on a router
        if c is None:
            c = self._counts(qos)
        c.offered += 1

    def admit(self, qos: str) -> None:
        """The gate started or queued it."""
        c = self._classes.get(qos)
        if c is None:
            c = self._counts(qos)
        c.admitted += 1

    def shed(self, qos: str, reason: str, waited_ms: float = 0.0, workflow: str | None = None) -> None:
        """It was refused (or evicted) for ``reason`` after ``waited_ms`` at this hop."""
        c = self._counts(qos)
        c.shed[reason] = c.shed.get(reason, 0) + 1
        self._summary(qos, workflow).record(max(0.0, waited_ms), True, False)

    def expire(self, qos: str, waited_ms: float, workflow: str | None = None) -> None:
        """Its deadline passed while it waited in the queue."""
        self._counts(qos).expired += 1
        self._summary(qos, workflow).record(max(0.0, waited_ms), True, False)

    def complete(self, qos: str, latency_ms: float, ok: bool, met: bool, workflow: str | None = None) -> None:
        """It ran to the end after ``latency_ms`` (``ok``: no exception; ``met``: by its deadline)."""
        c = self._counts(qos)
        latency_ms = max(0.0, latency_ms)
        c.completed += 1
        c.failed += 0 if ok else 1
        c.missed += 0 if (met or not ok) else 1
        c.latency.record(latency_ms)
        self._summary(qos, workflow).record(latency_ms, ok, met)

    # -- the reporter ------------------------------------------------------------------------------
    def classes_seen(self) -> list[str]:
        """Every class that ever arrived here, sorted."""
        return sorted(self._classes)

    def take(self) -> tuple[dict[str, ReplicaClassStats], dict[str, ClassSummary]]:
        """``(per class, per summary key)`` since the previous ``take``: the classes with any change,
        and the drift summaries with any count."""
        classes: dict[str, ReplicaClassStats] = {}
        for qos, counts in list(self._classes.items()):
            now = counts.frozen()
            d = _delta(now, self._taken_classes.get(qos))
            self._taken_classes[qos] = now
            if _changed(d):
                classes[qos] = d
        summaries: dict[str, ClassSummary] = {}
        for key, s in list(self._drift.items()):
            mark = _SummaryMark(s.count, s.errors, s.missed, dict(s.latency.buckets))
            before = self._taken_drift.get(key) or _SummaryMark(0, 0, 0, {})
            self._taken_drift[key] = mark
            count = mark.count - before.count
            if count <= 0:
                continue
            buckets = _minus(mark.buckets, before.buckets)
            latency = LatencyHistogram(buckets, sum(buckets.values()))
            summaries[summary_key(key[0], key[1])] = ClassSummary(
                key[0], key[1], count, mark.errors - before.errors, mark.missed - before.missed, latency
            )
        return classes, summaries


def drift_workflow(workflow: str | None, stage: str | None) -> str | None:
    """The drift part a request names itself (``stage_key``), or None (the deployment's key applies)."""
    return stage_key(workflow, stage) if workflow else None
