"""ZoneCoordinator: one per zone; merges its agents' reports and passes leases down.

Agents call ``report(report)`` every ``report_interval_s`` with their snapshot and summary delta. The
zone keeps the latest snapshot per node, sums the deltas (``ClassSummary.merge``) and, every
``report_interval_s``, sends ``{"nodes": snapshots, "summaries": merged delta}`` to the
GlobalCoordinator (``zone_report``), then starts a new delta. A report also wakes the forward loop, so
a snapshot reaches the GlobalCoordinator at once rather than up to ``report_interval_s`` later; reports
that arrive while a forward is in flight go together in the next one, and forwards are at least
``snapshot_interval_s / 2`` apart (at most 20 a second with the defaults, however many agents).
A report from an agent with a new ``incarnation`` counts as a (re-)registration. ``push_leases``
forwards per-node caps to the agents.

``stats()`` is the telemetry seam (JSON-able): zone, agents with their last report age and incarnation,
registrations, reports forwarded. Each forward round counts ``agentic_coordinator_rounds{level="zone"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray

from agentic_ray.actors._common import GLOBAL_NAME, NAMESPACE, ControlPlaneConfig, agent_name
from agentic_ray.control._summary import ClassSummary
from agentic_ray.telemetry.metrics import AgenticMetrics
from agentic_ray.telemetry.ray_metrics import RayMetrics

__all__ = ["ZoneCoordinator"]

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class ZoneCoordinator:
    """Per-zone aggregation point between NodeAgents and the GlobalCoordinator."""

    def __init__(self, zone: str, config: dict[str, Any] | None = None) -> None:
        self.zone = zone
        self.config = ControlPlaneConfig.from_dict(config)
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.received_at: dict[str, float] = {}
        self.registrations: dict[str, list[str]] = {}
        self.delta: dict[str, ClassSummary] = {}
        self.forwarded = 0
        self.forward_errors = 0
        self._global = None
        self._agents: dict[str, Any] = {}
        self.metrics = AgenticMetrics(RayMetrics(), "coordinator")
        self._wake = asyncio.Event()
        self._task = asyncio.get_event_loop().create_task(self._forward_loop())

    async def report(self, report: dict[str, Any]) -> None:
        """Called by a NodeAgent with ``{"snapshot": ..., "summaries": {key: ClassSummary dict}}``."""
        snap = report["snapshot"]
        node_id = snap["node_id"]
        seen = self.registrations.setdefault(node_id, [])
        if not seen or seen[-1] != snap["incarnation"]:
            seen.append(snap["incarnation"])
            log.info("zone %s: agent %s registered (incarnation %s)", self.zone, node_id[:12], snap["incarnation"])
        self.snapshots[node_id] = snap
        self.received_at[node_id] = time.time()
        self._wake.set()
        for key, data in report.get("summaries", {}).items():
            s = ClassSummary.from_dict(data)
            if key in self.delta:
                self.delta[key].merge(s)
            else:
                self.delta[key] = s

    def _fresh_nodes(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        stale = [n for n, t in self.received_at.items() if now - t > self.config.stale_after_s]
        for n in stale:
            self.snapshots.pop(n, None)
            self.received_at.pop(n, None)
        return {n: dict(s, age_s=now - self.received_at[n]) for n, s in self.snapshots.items()}

    async def _forward_loop(self) -> None:
        while True:
            try:
                if self._global is None:
                    self._global = ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)
                delta, self.delta = self.delta, {}
                payload = {
                    "nodes": self._fresh_nodes(),
                    "summaries": {k: s.to_dict() for k, s in delta.items()},
                    "registrations": {n: list(v) for n, v in self.registrations.items()},
                }
                await self._global.zone_report.remote(self.zone, payload)
                self.forwarded += 1
                self.metrics.coordinator_round("zone")
            except Exception as exc:
                self._global = None
                self.forward_errors += 1
                log.debug("zone %s: forward failed: %s", self.zone, exc)
            await asyncio.sleep(self.config.snapshot_interval_s / 2)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.report_interval_s)
            self._wake.clear()

    async def push_leases(
        self, leases: dict[str, dict[str, int]], granted_at: float, lease_s: float, revision: int
    ) -> dict[str, bool]:
        """Send each node's per-class caps to its agent; returns ``{node_id: acknowledged}``."""
        calls = {}
        for node_id, caps in leases.items():
            try:
                handle = self._agents.get(node_id) or ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
                self._agents[node_id] = handle
                calls[node_id] = handle.set_lease.remote(caps, granted_at, lease_s, revision)
            except Exception:
                self._agents.pop(node_id, None)
        acks = {}
        for node_id, ref in calls.items():
            try:
                acks[node_id] = (await asyncio.wait_for(ref, timeout=self.config.ack_timeout_s)) == revision
            except Exception:
                self._agents.pop(node_id, None)
                acks[node_id] = False
        return acks

    async def forget(self, node_id: str) -> None:
        """Drop a node that left the cluster."""
        for table in (self.snapshots, self.received_at, self._agents):
            table.pop(node_id, None)

    async def stats(self) -> dict[str, Any]:
        """Telemetry seam: zone, agents (report age, incarnations), forwarded reports (JSON-able)."""
        now = time.time()
        return {
            "zone": self.zone,
            "agents": {
                n: {
                    "age_s": now - self.received_at[n],
                    "incarnation": s["incarnation"],
                    "registrations": len(self.registrations.get(n, [])),
                    "inflight": s.get("inflight", 0),
                }
                for n, s in self.snapshots.items()
            },
            "forwarded": self.forwarded,
            "forward_errors": self.forward_errors,
        }
