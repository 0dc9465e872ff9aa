"""ZoneCoordinator: one per zone; merges its agents' reports and passes leases down.

Agents call ``report(report)`` (an ``AgentReport``, or the dict of an agent of wire version 1) every
``report_interval_s`` with their snapshot and summary delta, and in between with the snapshot alone
when their placement facts changed. The zone's state and merging are ``control.ZoneState`` (pure); this
actor does the I/O: it forwards ``ZoneState.take_forward``'s ``ZoneReport`` to the GlobalCoordinator
(``zone_report``) every ``report_interval_s``. A report also wakes the forward loop, so a snapshot
reaches the GlobalCoordinator at once rather than up to ``report_interval_s`` later; reports that arrive
while a forward is in flight go together in the next one, and forwards are at least
``snapshot_interval_s / 2`` apart (at most 20 a second with the defaults, however many agents).
A report from an agent with a new ``incarnation`` counts as a (re-)registration. ``push_leases``
forwards each node's ``NodeLease`` to its agent.

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
from agentic_ray.control._reports import AgentReport, NodeLease
from agentic_ray.control._zone_state import ZoneState
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
        self.state = ZoneState(zone, self.config.stale_after_s)
        self.forwarded = 0
        self.forward_errors = 0
        self._global = None
        self._agents: dict[str, Any] = {}
        self.metrics = AgenticMetrics(RayMetrics(), "coordinator")
        self._wake = asyncio.Event()
        self._task = asyncio.get_event_loop().create_task(self._forward_loop())

    async def report(self, report: AgentReport | dict[str, Any]) -> None:
        """Called by a NodeAgent with its snapshot and summary delta."""
        report = AgentReport.from_wire(report)
        if self.state.on_report(report, time.time()):
            snap = report.snapshot
            log.info("zone %s: agent %s registered (incarnation %s)", self.zone, snap.node_id[:12], snap.incarnation)
        self._wake.set()

    async def _forward_loop(self) -> None:
        while True:
            try:
                if self._global is None:
                    self._global = ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)
                await self._global.zone_report.remote(self.zone, self.state.take_forward(time.time()))
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

    async def push_leases(self, leases: dict[str, Any], *v1: Any) -> dict[str, bool]:
        """Send each node's ``NodeLease`` to its agent; returns ``{node_id: acknowledged}``. A coordinator
        of wire version 1 calls ``push_leases({node_id: caps}, granted_at, lease_s, revision)``."""
        leases = {node_id: NodeLease.from_wire(lease, *v1) for node_id, lease in leases.items()}
        calls = {}
        for node_id, lease in leases.items():
            try:
                handle = self._agents.get(node_id) or ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
                self._agents[node_id] = handle
                calls[node_id] = handle.set_lease.remote(lease)
            except Exception:
                self._agents.pop(node_id, None)
        acks = {}
        for node_id, ref in calls.items():
            try:
                ack = await asyncio.wait_for(ref, timeout=self.config.ack_timeout_s)
                acks[node_id] = ack == leases[node_id].revision
            except Exception:
                self._agents.pop(node_id, None)
                acks[node_id] = False
        return acks

    async def forget(self, node_id: str) -> None:
        """Drop a node that left the cluster."""
        self.state.forget(node_id)
        self._agents.pop(node_id, None)

    async def stats(self) -> dict[str, Any]:
        """Telemetry seam: zone, agents (report age, incarnations), forwarded reports (JSON-able)."""
        return {
            "zone": self.zone,
            "agents": self.state.agents(time.time()),
            "forwarded": self.forwarded,
            "forward_errors": self.forward_errors,
        }
