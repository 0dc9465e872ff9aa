"""NodeAgent: one per alive Ray node, pinned to it; the node's local view and admission decisions.

It holds the node's accelerator state (``AcceleratorProbe``), the in-flight count per QoS class, EWMA
service times per (class, workflow), the per-class caps of its budget lease (pushed by its zone from
the global BudgetAllocator) and the policy version it acknowledged. Workers account tasks with it in
batches (``record_batch``, fire-and-forget); it decides admission locally (``admit`` and the
``closed_classes`` it publishes: a class is closed while its in-flight count is at its cap).

Every ``report_interval_s`` it sends its snapshot plus the summary *delta* (``ClassSummary`` per key)
to its ZoneCoordinator (an ``AgentReport``; the wire types are ``control._reports``); in between, every
``snapshot_interval_s``, it sends the snapshot alone when its placement facts (``placement_facts``:
in-flight per class, closed classes, caps, policy) changed, and at least every half report interval,
so placement sees load within about a tenth of a second and no snapshot in the view is older than
about half a report interval plus the SDK's refresh.

Serve. Replicas of ``@agentic_ray.deployment`` on the node report to their agent every ~0.25 s
(``record_replica``: a ``ReplicaReport`` with per-class offered/admitted/shed/expired/completed and
latency, plus the drift summaries of their requests, ``control.ServeTally``); the agent keeps the latest
report per replica, sends the new ones up in its next report (``AgentReport.replicas``; a pending one
makes the next tick send a snapshot-only report, so a replica's policy acknowledgement reaches the
GlobalCoordinator within about a tenth of a second) and merges the summaries into its summary delta, so
drift and burn-rate alerts cover Serve. It answers with that replica's caps from its lease
(``NodeLease.replica_caps``; none once the lease expired). Routers on the node report the requests they
shed themselves (``record_router``), merged the same way.
A restarted agent (``max_restarts=-1``) gets a new ``incarnation`` and
re-registers on its first report. Created by the GlobalCoordinator with
``NodeAffinitySchedulingStrategy(node_id, soft=False)``, ``num_cpus=0``, ``lifetime="detached"``.

``stats()`` is the telemetry seam: a JSON-able dict (see its docstring). Metrics (component
``agent``, through ``AgenticMetrics``' sink; the actor records to ``ray.util.metrics``,
``NodeAgentImpl`` defaults to a no-op sink) are aggregated per ``record_batch`` call, so their cost
is per batch, not per task:

- ``agentic_completions{qos, outcome}``: one increment per (class, outcome) by the batch's count,
  so the counts stay exact (outcome ``error`` / ``late`` (budget left < 0) / ``ok``, as
  ``AgenticMetrics.completion``);
- ``agentic_observed_latency_ms`` / ``agentic_budget_left_ms``: a histogram takes one value per call
  in ``ray.util.metrics``, so per class and batch at most ``HISTOGRAM_SAMPLES_PER_BATCH`` values are
  observed, evenly spaced over the batch's values in arrival order (all of them when there are
  fewer). Their ``_count`` therefore undercounts completions under load (use
  ``agentic_completions`` for counts); their distribution is a systematic sample;
- ``agentic_rejected{qos, "deadline_passed"}``: one increment per class by the batch's count;
- ``agentic_queue_depth{qos}`` (tasks started and not finished): for every class a batch touched and
  again every report interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

import ray

from agentic_ray._ray_env import process_env
from agentic_ray.actors._common import NAMESPACE, ControlPlaneConfig, zone_name
from agentic_ray.actors._probe import AcceleratorProbe
from agentic_ray.actors._worker import Ended, Placed, Refused, Started, TaskEvent, decode_events
from agentic_ray.control._queued import PlacedNotStarted
from agentic_ray.control._reports import AgentReport, NodeLease, NodeSnapshot, PlacementFacts, ReplicaReport
from agentic_ray.control._summary import ClassSummary, stage_key, summary_key
from agentic_ray.scheduling.estimators import Ewma
from agentic_ray.telemetry.metrics import AgenticMetrics

__all__ = ["HISTOGRAM_SAMPLES_PER_BATCH", "NodeAgent", "NodeAgentImpl", "spread_sample"]

log = logging.getLogger(__name__)

_PROBE_EVERY_S = 2.0

HISTOGRAM_SAMPLES_PER_BATCH = 32
"""Most values per class and batch that ``record_batch`` observes into each latency histogram."""


def spread_sample(values: list[float], k: int) -> list[float]:
    """At most ``k`` of ``values``, evenly spaced in their order (all of them when ``len <= k``)."""
    n = len(values)
    if n <= k:
        return values
    return [values[(i * n) // k] for i in range(k)]


class NodeAgentImpl:
    """The agent's state and logic without the actor wrapper (also usable in-process)."""

    def __init__(
        self,
        node_id: str,
        attrs: dict[str, Any],
        config: dict[str, Any] | None = None,
        nvml: Any | None = None,
        metrics: AgenticMetrics | None = None,
    ) -> None:
        self.node_id = node_id
        self.metrics = metrics if metrics is not None else AgenticMetrics(None, "agent")
        self.attrs = dict(attrs)
        self.zone = str(attrs.get("zone", "default"))
        self.config = ControlPlaneConfig.from_dict(config)
        self.incarnation = uuid.uuid4().hex[:8]
        self.started_at = time.time()
        self.process = process_env()  # what this process runs with (niceness), in every snapshot
        self.probe = AcceleratorProbe(nvml=nvml)
        self.accelerator: dict[str, Any] = self.probe.sample()
        self._probed_at = time.monotonic()
        self.policy_sha: str | None = None
        self.policy_version: str | None = None
        self.caps: dict[str, int] = {}
        self.lease: NodeLease | None = None
        self.inflight: dict[str, int] = {}  # started and not finished, per class
        self.queued = PlacedNotStarted()  # placed here by a submitter and not started, per class
        self.ewma: dict[str, Ewma] = {}
        self.delta: dict[str, ClassSummary] = {}
        self.totals = {"placed": 0, "started": 0, "finished": 0, "errors": 0, "missed": 0, "refused": 0}
        self.reports_sent = 0
        self.snapshots_sent = 0  # snapshot-only reports between full ones
        self.report_errors = 0
        self.replicas: dict[str, ReplicaReport] = {}  # latest report per Serve replica on this node
        self.replica_seen: dict[str, float] = {}
        self._replicas_pending: dict[str, ReplicaReport] = {}  # received since the last report sent up
        self.routers: dict[str, dict[str, Any]] = {}  # router id -> its last report (JSON-able), for stats()

    # -- accounting (called by workers, batched) ---------------------------------------------------
    def record_batch(self, events: list[TaskEvent]) -> int:
        """Apply worker and submitter events (``actors._worker``: ``Placed``, ``Started``, ``Ended``,
        ``Refused``); returns how many were applied (an object of another type is skipped).

        State (in-flight, queued, summaries keyed by class and ``stage_key(workflow, stage)``, EWMAs,
        totals) is updated per event; metrics once per batch (see the module docstring: counters exact,
        histograms sampled).
        """
        now = time.time()
        inflight, totals = self.inflight, self.totals
        touched: set[str] = set()
        outcomes: dict[tuple[str, str], int] = {}
        latencies: dict[str, list[float]] = {}
        budgets_left: dict[str, list[float]] = {}
        refused: dict[str, int] = {}
        applied = 0
        for ev in events:
            kind = type(ev)
            if kind is Ended:
                qos, workflow, stage, service_ms, latency_ms, ok, met, budget_left_ms = ev
                outcome = "error" if not ok else ("late" if budget_left_ms < 0 else "ok")
                outcomes[(qos, outcome)] = outcomes.get((qos, outcome), 0) + 1
                latencies.setdefault(qos, []).append(latency_ms)
                budgets_left.setdefault(qos, []).append(budget_left_ms)
                inflight[qos] = max(0, inflight.get(qos, 0) - 1)
                drift = stage_key(workflow, stage)
                self._summary(qos, drift).record(latency_ms, ok, met)
                key = summary_key(qos, drift)
                ewma = self.ewma.get(key)
                if ewma is None:
                    ewma = self.ewma[key] = Ewma(alpha=0.2)
                ewma.observe(max(0.0, service_ms), now)
                totals["finished"] += 1
                totals["errors"] += 0 if ok else 1
                totals["missed"] += 0 if (met or not ok) else 1
            elif kind is Started:
                qos = ev.qos
                inflight[qos] = inflight.get(qos, 0) + 1
                totals["started"] += 1
                self.queued.started(qos, now)
            elif kind is Placed:
                qos = ev.qos
                self.queued.placed(qos, ev.deadline_at, now)
                totals["placed"] += 1
            elif kind is Refused:
                qos, workflow, stage, latency_ms = ev
                self._summary(qos, stage_key(workflow, stage)).record(max(0.0, latency_ms), True, False)
                refused[qos] = refused.get(qos, 0) + 1
                totals["refused"] += 1
                self.queued.started(qos, now)
            else:
                continue
            touched.add(qos)
            applied += 1
        self._record_metrics(touched, outcomes, latencies, budgets_left, refused)
        return applied

    def _record_metrics(
        self,
        touched: set[str],
        outcomes: dict[tuple[str, str], int],
        latencies: dict[str, list[float]],
        budgets_left: dict[str, list[float]],
        refused: dict[str, int],
    ) -> None:
        """One batch's metrics: exact counters, histograms sampled (``HISTOGRAM_SAMPLES_PER_BATCH``)."""
        metrics = self.metrics
        sink, component = metrics.sink, metrics.component
        for (qos, outcome), n in outcomes.items():
            sink.inc("agentic_completions", {"component": component, "qos": qos, "outcome": outcome}, n)
        for name, per_class in (("agentic_observed_latency_ms", latencies), ("agentic_budget_left_ms", budgets_left)):
            for qos, values in per_class.items():
                tags = {"component": component, "qos": qos}
                for v in spread_sample([v for v in values if math.isfinite(v)], HISTOGRAM_SAMPLES_PER_BATCH):
                    sink.observe(name, v, tags)
        for qos, n in refused.items():
            metrics.rejected(qos, "deadline_passed", n)
        for qos in touched:
            metrics.queue_depth(qos, self.inflight.get(qos, 0))

    def publish_gauges(self) -> None:
        """Set ``queue_depth`` for every class seen (Ray drops gauge series that are not refreshed, so
        the report loop calls this every ``report_interval_s``)."""
        for qos, n in self.inflight.items():
            self.metrics.queue_depth(qos, n)

    def _summary(self, qos: str, workflow: str | None) -> ClassSummary:
        key = summary_key(qos, workflow)
        s = self.delta.get(key)
        if s is None:
            s = self.delta[key] = ClassSummary(qos, workflow)
        return s

    # -- Serve (replicas and routers on this node) ---------------------------------------------------
    def _merge_summaries(self, summaries: Any) -> None:
        for key, s in summaries.items():
            mine = self.delta.get(key)
            if mine is None:
                self.delta[key] = s.copy()
            else:
                mine.merge(s)

    def record_replica(self, report: ReplicaReport, summaries: Any = None) -> tuple[dict[str, int], float | None]:
        """A Serve replica's report (see the module docstring); returns ``(caps, expires_at)``: its
        per-class caps from this node's lease and when they lapse (``({}, None)``: no caps)."""
        now = time.time()
        self.replicas[report.replica_id] = report
        self.replica_seen[report.replica_id] = now
        self._replicas_pending[report.replica_id] = report
        self._merge_summaries(summaries or {})
        self._forget_stale_replicas(now)
        lease = self.lease
        if lease is None or lease.expires_at <= now:
            return {}, None
        caps = lease.replica_caps.get(report.replica_id)
        return (dict(caps), lease.expires_at) if caps else ({}, None)

    def record_router(self, deployment: str, router_id: str, classes: Any, summaries: Any = None) -> None:
        """A router's own sheds since its previous report: ``classes`` ``{qos: ReplicaClassStats}``
        (offered, shed by reason), ``summaries`` its drift summaries (merged into the delta)."""
        self._merge_summaries(summaries or {})
        self.routers[router_id] = {"deployment": deployment, "at": time.time(),
                                   "classes": {q: c.to_dict() for q, c in (classes or {}).items()}}  # fmt: skip

    def _forget_stale_replicas(self, now: float) -> None:
        stale = now - self.config.stale_after_s
        for rid in [r for r, t in self.replica_seen.items() if t < stale]:
            self.replicas.pop(rid, None)
            self.replica_seen.pop(rid, None)
        for rid in [r for r, info in self.routers.items() if info["at"] < stale]:
            del self.routers[rid]

    def _take_replicas(self) -> tuple[ReplicaReport, ...]:
        pending, self._replicas_pending = self._replicas_pending, {}
        return tuple(pending.values())

    # -- admission ---------------------------------------------------------------------------------
    def waiting(self, qos: str) -> int:
        """Tasks of ``qos`` on this node: started and not finished, plus placed and not started."""
        return self.inflight.get(qos, 0) + self.queued.count(qos, time.time())

    def closed_classes(self) -> list[str]:
        """Classes whose tasks on this node (running plus queued) reached the cap of this node's lease."""
        return sorted(q for q, cap in self.caps.items() if self.waiting(q) >= cap)

    def admit(self, qos: str) -> bool:
        """Local admission: True while ``qos``'s running plus queued count is below its cap (no cap: True)."""
        cap = self.caps.get(qos)
        return cap is None or self.waiting(qos) < cap

    # -- control from above ------------------------------------------------------------------------
    def set_policy(self, policy: Any) -> str:
        """Adopt a compiled ``Policy``; returns its sha256 as the acknowledgement."""
        self.policy_sha = policy.sha256
        self.policy_version = policy.version
        return policy.sha256

    def set_lease(self, lease: NodeLease) -> int:
        """Adopt a lease's per-class caps from the allocator; returns its ``revision`` as the acknowledgement."""
        self.caps = dict(lease.caps)
        self.lease = lease
        return lease.revision

    # -- reporting ---------------------------------------------------------------------------------
    def snapshot(self) -> NodeSnapshot:
        """The node as placement sees it. ``inflight`` counts running and queued tasks;
        ``inflight_by_class`` the running ones, ``queued_by_class`` those placed here and not started."""
        now = time.time()
        queued = self.queued.counts(now)
        if time.monotonic() - self._probed_at >= _PROBE_EVERY_S:
            self.accelerator = self.probe.sample()
            self._probed_at = time.monotonic()
        return NodeSnapshot(
            node_id=self.node_id,
            zone=self.zone,
            incarnation=self.incarnation,
            at=now,
            started_at=self.started_at,
            attrs=self.attrs,
            inflight=sum(self.inflight.values()) + sum(queued.values()),
            inflight_by_class=dict(self.inflight),
            queued_by_class=queued,
            closed_classes=tuple(self.closed_classes()),
            service_ms={k: e.estimate() for k, e in self.ewma.items()},
            accelerator=self.accelerator,
            policy_sha=self.policy_sha,
            caps=dict(self.caps),
            process=self.process,
        )

    def take_report(self) -> AgentReport:
        """Snapshot plus the summary delta since the previous report (the delta is reset; the report
        owns the summaries)."""
        delta, self.delta = self.delta, {}
        return AgentReport(self.snapshot(), delta, self._take_replicas())

    def placement_facts(self) -> PlacementFacts:
        """What placement reads from this node's snapshot: in-flight per class, closed classes, caps,
        policy. A snapshot-only report is sent between full reports only when this changed."""
        return PlacementFacts(
            running=tuple(sorted((q, n) for q, n in self.inflight.items() if n)),
            queued=tuple(sorted(self.queued.counts(time.time()).items())),
            closed=tuple(self.closed_classes()),
            caps=tuple(sorted(self.caps.items())),
            policy_sha=self.policy_sha,
        )

    def next_report(
        self, now: float, last_full: float, last_facts: PlacementFacts | None, last_sent: float | None = None
    ) -> tuple[AgentReport | None, bool, PlacementFacts]:
        """``(report, full, facts)``: what the loop should send at monotonic time ``now``, whether it is
        the full report, and the ``placement_facts()`` it reflects (to pass back as ``last_facts``).
        The full report when ``report_interval_s`` passed since ``last_full``; else the snapshot alone
        (``summaries`` empty) when the facts differ from ``last_facts`` or half a report interval passed
        since ``last_sent`` (a heartbeat: an idle node's snapshot is never older than that); else no
        report (``None``)."""
        facts = self.placement_facts()
        if now - last_full >= self.config.report_interval_s:
            return self.take_report(), True, facts
        heartbeat_due = last_sent is not None and now - last_sent >= self.config.report_interval_s / 2
        if heartbeat_due or facts != last_facts or self._replicas_pending:
            return AgentReport(self.snapshot(), {}, self._take_replicas()), False, facts
        return None, False, facts

    def stats(self) -> dict[str, Any]:
        """Telemetry seam: snapshot + totals + lease + policy version + report counters (JSON-able)."""
        out = self.snapshot().to_dict()
        lease = self.lease
        out.update(
            totals=dict(self.totals),
            lease={}
            if lease is None
            else {"granted_at": lease.granted_at, "expires_at": lease.expires_at, "revision": lease.revision},
            policy_version=self.policy_version,
            reports_sent=self.reports_sent,
            snapshots_sent=self.snapshots_sent,
            report_errors=self.report_errors,
            replicas={rid: r.to_dict() for rid, r in self.replicas.items()},
            routers={rid: dict(info) for rid, info in self.routers.items()},
        )
        return out


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class NodeAgent:
    """The Ray actor around ``NodeAgentImpl``; starts its report loop on construction."""

    def __init__(self, node_id: str, attrs: dict[str, Any], config: dict[str, Any] | None = None) -> None:
        from agentic_ray.telemetry.ray_metrics import RayMetrics

        self.impl = NodeAgentImpl(node_id, attrs, config, metrics=AgenticMetrics(RayMetrics(), "agent"))
        self._zone = None
        self._task = asyncio.get_event_loop().create_task(self._report_loop())

    async def _report_loop(self) -> None:
        cfg = self.impl.config
        tick = min(cfg.snapshot_interval_s, cfg.report_interval_s)
        last_full = last_sent = -math.inf
        last_facts = None
        while True:
            try:
                if self._zone is None:
                    self._zone = ray.get_actor(zone_name(self.impl.zone), namespace=NAMESPACE)
                now = time.monotonic()
                report, full, facts = self.impl.next_report(now, last_full, last_facts, last_sent)
                if report is not None:
                    await self._zone.report.remote(report)
                    last_facts, last_sent = facts, now
                    if full:
                        last_full = now
                        self.impl.reports_sent += 1
                        self.impl.publish_gauges()
                    else:
                        self.impl.snapshots_sent += 1
            except Exception as exc:  # zone not there yet / restarting: look it up again next time
                self._zone = None
                last_facts = None
                self.impl.report_errors += 1
                log.debug("agent %s: report failed: %s", self.impl.node_id[:12], exc)
            await asyncio.sleep(tick)

    async def record_batch(self, rows: list[list[Any]]) -> int:
        """Events from a worker's or submitter's accountant, as ``_worker.encode_events`` rows."""
        return self.impl.record_batch(decode_events(rows))

    async def admit(self, qos: str) -> bool:
        return self.impl.admit(qos)

    async def record_replica(self, report: ReplicaReport, summaries: Any = None) -> tuple[dict[str, int], float | None]:
        """A Serve replica's report (``NodeAgentImpl.record_replica``); answers its caps."""
        return self.impl.record_replica(report, summaries)

    async def record_router(self, deployment: str, router_id: str, classes: Any, summaries: Any = None) -> None:
        """A router's own sheds (``NodeAgentImpl.record_router``)."""
        self.impl.record_router(deployment, router_id, classes, summaries)

    async def set_policy(self, policy: Any) -> str:
        return self.impl.set_policy(policy)

    async def set_lease(self, lease: NodeLease | dict[str, int], *v1: Any) -> int:
        """Adopt a ``NodeLease`` (a zone of wire version 1 calls ``set_lease(caps, granted_at, lease_s, revision)``)."""
        return self.impl.set_lease(NodeLease.from_wire(lease, *v1))

    async def snapshot(self) -> NodeSnapshot:
        return self.impl.snapshot()

    async def stats(self) -> dict[str, Any]:
        return self.impl.stats()

    async def identity(self) -> dict[str, Any]:
        """``node_id`` given, the node it really runs on, ``incarnation`` and ``pid``."""
        import os

        return {
            "node_id": self.impl.node_id,
            "running_on": ray.get_runtime_context().get_node_id(),
            "incarnation": self.impl.incarnation,
            "pid": os.getpid(),
        }
