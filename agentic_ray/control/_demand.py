"""Offered load for each allocation round, by where it was observed. Pure: no Ray, no clock (``now``,
wall-clock seconds, comes in).

Demand is *offered* load: every arrival, the shed and refused included. Completions alone measure
throughput, which under overload is capped by the very caps the allocator computes from them.

**Tasks.** A node's agent hears of every task placed on it (the submitter's ``Placed``); it reports per
(class, workflow) the tasks that finished or were refused at start (its summary delta,
``ClassSummary.count``, merged per zone in the ``ZoneReport``) and, in its snapshot, the tasks still there
(``inflight_by_class`` running, ``queued_by_class`` placed and not started). What was placed on a zone's
nodes between two rounds is therefore, by conservation of tasks::

    offered(zone, class) = finished + refused  +  backlog(now) - backlog(previous round)

with ``backlog`` the running plus queued tasks of the class summed over the zone's nodes, read from
their latest snapshots at each round (a node seen for the first time, or with a new agent incarnation,
counts from zero). Snapshots and summary deltas travel at different times (a task's end shows in the
next snapshot, its count in the next full report), so one round may count a task in the backlog's drop
before its completion arrives; the difference evens out at the next round instead of accumulating. The
zone's offered count is spread over its (class, workflow) keys in proportion to their finished+refused
counts (all to the class alone while nothing finished yet), and divided by the time since the previous
round (``first_window_s`` for the first).

Still not counted: tasks refused when submitted (``Overloaded`` once every eligible node closed the
class, ``NoEligibleNode``, an entitlement refusal) never reach an agent; a placed task that never starts
(its worker or node lost it) leaves the backlog uncounted when the agent forgets it after its deadline;
and summary keys of Serve work (workflow part ``serve:...``, merged by agents for drift) are left out
here because Serve's offered load comes from the replicas' own reports.

**Serve.** A replica reports per class ``offered`` (every arrival at its gate) over ``[since, at]``.
Zones pass on the latest report per replica, possibly the same one in several forwards, so a report
counts once (per replica, only reports with a later ``at`` than the last one taken). As for tasks, the
offered counts of the reports taken since the previous round, summed per (zone, deployment, class), over
the time since that round are the rates: the counts are added up as reports arrive, and a round costs
nothing per report. A replica's service time per class is the mean of the latencies it completed since
the previous round (its reports' histograms, bucket midpoints; the previous mean when none completed),
which include time queued at its gate: under load this overestimates service, so its caps err low. A
replica whose latest report is older than ``stale_after_s`` is dropped.

``OfferedLoad.take`` returns an ``OfferedDemand``: streams per (zone, class, workflow) for tasks and per
(zone, deployment, class) for Serve, and the live replicas as capacity (``ReplicaCapacity``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agentic_ray.control._reports import NodeSnapshot, ReplicaReport, ZoneReport
from agentic_ray.control._summary import BASE_MS, GROWTH, ClassSummary, LatencyHistogram

__all__ = [
    "SERVE_WORKFLOW_PREFIX",
    "DemandStream",
    "OfferedDemand",
    "OfferedLoad",
    "ReplicaCapacity",
    "histogram_mean_ms",
]

SERVE_WORKFLOW_PREFIX = "serve:"
"""Summary keys whose workflow part starts with this are Serve's (drift only; demand comes from replicas)."""


@dataclass(frozen=True, slots=True)
class DemandStream:
    """Offered arrivals per second of one class, observed in ``zone`` (``None``: anywhere, may use every
    node). Tasks name the summary key's ``workflow`` part (``"fraud/score"``, or ``None``); Serve streams
    name their ``deployment`` (``"APP/DEPLOYMENT"``)."""

    qos: str
    rate_per_s: float
    zone: str | None = None
    workflow: str | None = None
    deployment: str | None = None

    def __post_init__(self) -> None:
        r = self.rate_per_s
        if isinstance(r, bool) or not (isinstance(r, (int, float)) and math.isfinite(r) and r >= 0):
            raise ValueError(f"rate_per_s: must be a finite number >= 0, got {r!r}")


class ReplicaCapacity(NamedTuple):
    """A live Serve replica as the allocator counts it: ``slots`` calls at once on ``node_id`` and its
    mean service time per class (ms; classes it has not completed yet are absent). A NamedTuple: one is
    built per replica and round."""

    replica_id: str
    deployment: str
    node_id: str
    zone: str
    accelerator: str
    slots: int
    service_ms: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class OfferedDemand:
    """One round's demand: task and Serve streams, the live replicas, and the window (s) measured."""

    tasks: tuple[DemandStream, ...] = ()
    serve: tuple[DemandStream, ...] = ()
    replicas: Mapping[str, ReplicaCapacity] = field(default_factory=dict)
    window_s: float = 1.0

    @classmethod
    def cluster_wide(cls, rates_per_s: Mapping[str, float]) -> OfferedDemand:
        """Task demand per class observed nowhere in particular (every node may serve it)."""
        return cls(tasks=tuple(DemandStream(q, float(r)) for q, r in rates_per_s.items() if r > 0))

    def rates_per_s(self) -> dict[str, float]:
        """Offered arrivals per second per class, tasks and Serve together."""
        out: dict[str, float] = {}
        for s in (*self.tasks, *self.serve):
            out[s.qos] = out.get(s.qos, 0.0) + s.rate_per_s
        return out

    def rates_by_zone(self) -> dict[str, dict[str, float]]:
        """``{zone: {class: offered per second}}``, tasks and Serve together (zone ``"*"``: anywhere)."""
        out: dict[str, dict[str, float]] = {}
        for s in (*self.tasks, *self.serve):
            zone = out.setdefault(s.zone if s.zone is not None else "*", {})
            zone[s.qos] = zone.get(s.qos, 0.0) + s.rate_per_s
        return out


_MIDPOINTS: dict[int, float] = {}


def _histogram_total_ms(h: LatencyHistogram) -> float:
    """Sum of a histogram's samples, each taken at its bucket's geometric midpoint."""
    mids = _MIDPOINTS
    total = 0.0
    for b, n in h.buckets.items():
        mid = mids.get(b)
        if mid is None:
            mid = mids[b] = BASE_MS * GROWTH ** (b - 0.5) if b > 0 else BASE_MS
        total += n * mid
    return total


def histogram_mean_ms(h: LatencyHistogram) -> float | None:
    """Mean of a latency histogram from its buckets' geometric midpoints (``None`` when empty)."""
    return _histogram_total_ms(h) / h.count if h.count > 0 else None


@dataclass(slots=True)
class _Replica:
    """What ``OfferedLoad`` keeps per replica: where it runs (``place``: deployment, node, zone,
    accelerator, slots, a tuple of plain values), when its latest report was made, the latencies it
    completed since the last round (sum and count per class) and its service times. Not the report
    itself: the coordinator holds tens of thousands of these, and every object they keep alive is one
    more for the garbage collector to walk."""

    place: tuple[str, str, str, str, int]
    at: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    service_ms: dict[str, float] = field(default_factory=dict)

    def add(self, report: ReplicaReport) -> None:
        self.place = (report.deployment, report.node_id, report.zone, report.accelerator, report.slots)
        self.at = report.at
        for qos, c in report.classes.items():
            h = c.latency
            if h.count:
                self.latency_ms[qos] = self.latency_ms.get(qos, 0.0) + _histogram_total_ms(h)
                self.completed[qos] = self.completed.get(qos, 0) + h.count

    def roll(self) -> None:
        """End of a round: service times from what completed since the last one. ``service_ms`` is
        replaced, never changed, so a round's ``ReplicaCapacity`` may share it."""
        if self.completed:
            service = self.service_ms.copy()
            for qos, n in self.completed.items():
                service[qos] = self.latency_ms[qos] / n
            self.service_ms = service
            self.latency_ms.clear()
            self.completed.clear()


def _add_backlog(
    offered: dict[tuple[str, str], float], zone: str, now: Mapping[str, int], before: Mapping[str, int]
) -> None:
    """Add the change of one per-class count from ``before`` to ``now`` to ``offered`` of ``zone``."""
    for qos in now.keys() | before.keys():
        delta = now.get(qos, 0) - before.get(qos, 0)
        if delta:
            offered[(zone, qos)] = offered.get((zone, qos), 0.0) + delta


class OfferedLoad:
    """Offered load since the previous allocation round (see the module docstring)."""

    def __init__(self) -> None:
        self.finished: dict[tuple[str, str, str | None], int] = {}  # (zone, class, workflow) -> finished+refused
        # node -> (incarnation, running, queued) per class at the last round (the snapshot's own mappings)
        self.backlog: dict[str, tuple[str, Mapping[str, int], Mapping[str, int]]] = {}
        self.replicas: dict[str, _Replica] = {}
        self.serve_offered: dict[tuple[str, str, str], int] = {}  # (zone, deployment, class) -> offered
        self.since: float | None = None

    def observe(self, report: ZoneReport) -> None:
        """Count a zone's report: its summary delta (tasks) and its replicas' reports."""
        self.observe_tasks(report.zone, report.summaries.values())
        if report.replicas:
            self.observe_replicas(report.replicas.values())

    def observe_tasks(self, zone: str, summaries: Iterable[ClassSummary]) -> None:
        """Count finished and refused tasks per (class, workflow) reported by ``zone``."""
        finished = self.finished
        for s in summaries:
            if s.count and not (s.workflow or "").startswith(SERVE_WORKFLOW_PREFIX):
                key = (zone, s.qos, s.workflow)
                finished[key] = finished.get(key, 0) + s.count

    def observe_replicas(self, reports: Iterable[ReplicaReport]) -> None:
        """Take replicas' reports; one seen before (same replica, no later ``at``) is skipped."""
        replicas, offered = self.replicas, self.serve_offered
        for r in reports:
            known = replicas.get(r.replica_id)
            if known is None:
                replicas[r.replica_id] = known = _Replica(
                    (r.deployment, r.node_id, r.zone, r.accelerator, r.slots), r.at
                )
            elif r.at <= known.at:
                continue
            known.add(r)
            for qos, c in r.classes.items():
                if c.offered:
                    key = (r.zone, r.deployment, qos)
                    offered[key] = offered.get(key, 0) + c.offered

    def take(
        self, now: float, snapshots: Mapping[str, NodeSnapshot], first_window_s: float, stale_after_s: float = 5.0
    ) -> OfferedDemand:
        """The demand since the previous call (``first_window_s`` back for the first), with the nodes'
        latest ``snapshots``; counting starts again at ``now``."""
        window = max(1e-3, now - self.since if self.since is not None else first_window_s)
        tasks = self._task_streams(snapshots, window)
        serve, replicas = self._serve(now, window, stale_after_s)
        self.finished, self.since = {}, now
        return OfferedDemand(tasks, serve, replicas, window)

    def _task_streams(self, snapshots: Mapping[str, NodeSnapshot], window: float) -> tuple[DemandStream, ...]:
        offered: dict[tuple[str, str], float] = {}
        for (zone, qos, _), n in self.finished.items():
            offered[(zone, qos)] = offered.get((zone, qos), 0.0) + n
        previous = self.backlog
        backlog: dict[str, Any] = {}
        empty: dict[str, int] = {}
        for node_id, snap in snapshots.items():
            running, queued = snap.inflight_by_class, snap.queued_by_class
            backlog[node_id] = (snap.incarnation, running, queued)
            before = previous.get(node_id)
            if before is None or before[0] != snap.incarnation:
                before = (snap.incarnation, empty, empty)
            if running != before[1]:
                _add_backlog(offered, snap.zone, running, before[1])
            if queued != before[2]:
                _add_backlog(offered, snap.zone, queued, before[2])
        self.backlog = backlog
        finished_by: dict[tuple[str, str], list[tuple[Any, float]]] = {}
        for (zone, qos, workflow), n in self.finished.items():
            finished_by.setdefault((zone, qos), []).append((workflow, n))
        streams = []
        for (zone, qos), total in offered.items():
            if total <= 0:
                continue
            keys = finished_by.get((zone, qos))
            if not keys:
                streams.append(DemandStream(qos, total / window, zone))
                continue
            done = sum(n for _, n in keys)
            streams.extend(DemandStream(qos, total * n / done / window, zone, workflow) for workflow, n in keys)
        return tuple(streams)

    def _serve(
        self, now: float, window: float, stale_after_s: float
    ) -> tuple[tuple[DemandStream, ...], dict[str, ReplicaCapacity]]:
        for rid in [r for r, t in self.replicas.items() if t.at < now - stale_after_s]:
            del self.replicas[rid]
        capacity: dict[str, ReplicaCapacity] = {}
        for rid, track in self.replicas.items():
            track.roll()
            # service_ms is replaced, never changed, by roll(): safe to share
            capacity[rid] = ReplicaCapacity(rid, *track.place, track.service_ms)
        streams = tuple(
            DemandStream(qos, n / window, zone, deployment=dep)
            for (zone, dep, qos), n in self.serve_offered.items()
            if n > 0
        )
        self.serve_offered = {}
        return streams, capacity
