"""A ZoneCoordinator's state: its agents' latest snapshots and the summary delta it forwards. Pure: no
Ray, no clock (``now``, wall-clock seconds, comes in).

Agents report (``on_report``) a snapshot and the summary delta since their previous full report; the
zone keeps the latest snapshot per node and adds the deltas up per ``summary_key`` (``ClassSummary.merge``:
exact, the histograms add bucket by bucket). ``take_forward`` hands the GlobalCoordinator a
``ZoneReport`` of the fresh snapshots and the merged delta, and starts a new delta; a node whose agent
has not reported for ``stale_after_s`` is dropped from it. A report from an agent with an incarnation
the zone has not seen last for that node is a (re-)registration; the incarnations are kept in order.
Serve replicas' reports (``AgentReport.replicas``) are kept latest per replica id until the next
forward, which carries them (``ZoneReport.replicas``) and starts again from none.
"""

from __future__ import annotations

from typing import Any

from agentic_ray.control._reports import AgentReport, NodeSnapshot, ReplicaReport, ZoneReport
from agentic_ray.control._summary import ClassSummary

__all__ = ["ZoneState"]


class ZoneState:
    """Snapshots, registrations and the pending summary delta of one zone."""

    def __init__(self, zone: str, stale_after_s: float) -> None:
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s: must be > 0, got {stale_after_s!r}")
        self.zone = zone
        self.stale_after_s = stale_after_s
        self.snapshots: dict[str, NodeSnapshot] = {}
        self.received_at: dict[str, float] = {}
        self.registrations: dict[str, list[str]] = {}
        self.delta: dict[str, ClassSummary] = {}
        self.replicas: dict[str, ReplicaReport] = {}  # latest per replica id since the last forward

    def on_report(self, report: AgentReport, now: float) -> bool:
        """Take an agent's report received at ``now``; True when it (re-)registers the agent."""
        snap = report.snapshot
        seen = self.registrations.setdefault(snap.node_id, [])
        registered = not seen or seen[-1] != snap.incarnation
        if registered:
            seen.append(snap.incarnation)
        self.snapshots[snap.node_id] = snap
        self.received_at[snap.node_id] = now
        for r in report.replicas:
            self.replicas[r.replica_id] = r
        delta = self.delta
        for key, s in report.summaries.items():
            mine = delta.get(key)
            if mine is None:
                delta[key] = s.copy()  # merged into later: never alias the sender's object
            else:
                mine.merge(s)
        return registered

    def take_forward(self, now: float) -> ZoneReport:
        """The report for the GlobalCoordinator at ``now``; the delta starts again from empty."""
        for node_id in [n for n, t in self.received_at.items() if now - t > self.stale_after_s]:
            self.snapshots.pop(node_id, None)
            self.received_at.pop(node_id, None)
        delta, self.delta = self.delta, {}
        replicas, self.replicas = self.replicas, {}
        return ZoneReport(
            zone=self.zone,
            nodes=dict(self.snapshots),
            summaries=delta,
            registrations={n: tuple(v) for n, v in self.registrations.items()},
            replicas=replicas,
        )

    def forget(self, node_id: str) -> None:
        """Drop a node that left the cluster (its registrations stay: they are history)."""
        self.snapshots.pop(node_id, None)
        self.received_at.pop(node_id, None)

    def agents(self, now: float) -> dict[str, dict[str, Any]]:
        """``{node_id: {age_s, incarnation, registrations, inflight}}`` (JSON-able) for the nodes held."""
        return {
            n: {
                "age_s": now - self.received_at[n],
                "incarnation": s.incarnation,
                "registrations": len(self.registrations.get(n, [])),
                "inflight": s.inflight,
            }
            for n, s in self.snapshots.items()
        }
