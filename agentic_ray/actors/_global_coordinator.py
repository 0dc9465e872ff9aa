"""GlobalCoordinator: membership, policy rollout, budget allocation, drift alerts, cluster view.

One detached, named (``agentic-global``), restartable actor. Every ``reconcile_interval_s`` it compares
``ray.nodes()`` with its agents: an alive node without an agent gets one (and its zone a
ZoneCoordinator); the agent of a dead node is killed and dropped, so the cluster view stops offering
that node and new work is placed elsewhere. Agents whose acknowledged policy differs from the active
one get it again (a restarted agent catches up this way).

Zones send ``zone_report`` every ``report_interval_s``; the coordinator keeps the latest node snapshots
(the **cluster view** the SDK caches, ``view()``) and feeds the summary deltas into the
``DriftDetector`` (per class and workflow: p99 vs budget, multiwindow burn rate). Every
``allocate_interval_s`` it computes per-node per-class caps (``leases.allocate_caps``) and pushes them
down through the zones.

State that must survive a restart (policy history, the last allocation) is checkpointed in Ray's
internal KV (``common.save_checkpoint``); ``__init__`` resumes from it, so a restarted coordinator
serves the same policy version.

``status()`` is the telemetry seam for ``agentic-ray status`` (see its docstring). Metrics
(``AgenticMetrics(RayMetrics(), "coordinator")``): every drift evaluation goes through
``telemetry.publish_drift_report`` (``agentic_alerts_active``/``agentic_alerts_raised``, WARNING/INFO
records on the ``agentic_ray.alerts`` logger, ``agentic_slo_attainment`` per class); each allocation
round counts ``agentic_coordinator_rounds{level="global"}``; the active policy version is
``agentic_policy_version_info{version}`` (set on start/restore, rollout and rollback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray

from agentic_ray.actors._common import (
    NAMESPACE,
    ControlPlaneConfig,
    agent_name,
    load_checkpoint,
    save_checkpoint,
    zone_name,
)
from agentic_ray.control._drift import DriftDetector
from agentic_ray.control._leases import allocate_caps, service_by_class
from agentic_ray.control._placement import node_attrs_from_ray
from agentic_ray.control._summary import ClassSummary, split_stage_key
from agentic_ray.policies import Policy, default_policy, parse_policy
from agentic_ray.telemetry.alerts import publish_drift_report
from agentic_ray.telemetry.metrics import AgenticMetrics
from agentic_ray.telemetry.ray_metrics import RayMetrics

__all__ = ["GlobalCoordinator"]

log = logging.getLogger(__name__)

_HISTORY_LIMIT = 20


def _entry(policy: Policy, revision: int, source: str | None) -> dict[str, Any]:
    return {
        "text": policy.to_yaml(),
        "source": source or policy.source or "<policy>",
        "sha256": policy.sha256,
        "version": policy.version,
        "name": policy.name,
        "revision": revision,
        "applied_at": time.time(),
    }


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class GlobalCoordinator:
    """The root of the control plane (see the module docstring)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.started_at = time.time()
        self.metrics = AgenticMetrics(RayMetrics(), "coordinator")
        self.restored = False
        self.history: list[dict[str, Any]] = []
        self.allocation: dict[str, Any] = {}
        ckpt = None
        try:
            ckpt = load_checkpoint()
        except Exception as exc:
            log.warning("global: could not read checkpoint: %s", exc)
        if config is None and ckpt and ckpt.get("config"):
            config = ckpt["config"]  # a coordinator created again without settings keeps the old ones
        self.config = ControlPlaneConfig.from_dict(config)
        if ckpt and ckpt.get("history"):
            self.history = ckpt["history"]
            self.allocation = ckpt.get("allocation") or {}
            self.restored = True
        if self.history:
            last = self.history[-1]
            self.policy = parse_policy(last["text"], last["source"])
        else:
            self.policy = default_policy()
            self.history = [_entry(self.policy, 1, "<default policy>")]
            self._checkpoint()
        self.metrics.policy_version(self.policy.version)
        self.agents: dict[str, dict[str, Any]] = {}
        self.zones: dict[str, Any] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.registrations: dict[str, list[str]] = {}
        self.acked: dict[str, str] = {}
        self.drift = DriftDetector(self.config.drift_config())
        self.alerts: list[dict[str, Any]] = []
        self.alert_log: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.log_heads: dict[str, dict[str, Any]] = {}
        self._last_alloc = 0.0
        self._arrivals: dict[str, int] = {}
        self._arrivals_since: float | None = None
        self._pushing: dict[str, Any] = {}
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # -- persistence -------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        save_checkpoint(
            {"history": self.history[-_HISTORY_LIMIT:], "allocation": self.allocation, "config": self.config.to_dict()}
        )

    def _event(self, kind: str, **fields: Any) -> None:
        self.events.append({"at": time.time(), "kind": kind, **fields})
        del self.events[:-200]

    # -- the loop ----------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self._reconcile()
                now = time.time()
                if now - self._last_alloc >= self.config.allocate_interval_s:
                    self._last_alloc = now
                    await self._allocate(now)
                self._evaluate_drift(now)
                # Ray drops gauge series not refreshed within ~2 export intervals: set it again each time.
                self.metrics.policy_version(self.policy.version)
            except Exception as exc:
                log.warning("global: loop iteration failed: %r", exc)
            await asyncio.sleep(self.config.reconcile_interval_s)

    def _zone_handle(self, zone: str) -> Any:
        handle = self.zones.get(zone)
        if handle is None:
            from agentic_ray.actors._zone import ZoneCoordinator

            handle = ZoneCoordinator.options(
                name=zone_name(zone), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
            ).remote(zone, self.config.to_dict())
            self.zones[zone] = handle
        return handle

    async def _reconcile(self) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from agentic_ray.actors._node_agent import NodeAgent

        alive: dict[str, dict[str, Any]] = {}
        for n in ray.nodes():
            if n.get("Alive"):
                node_id = n["NodeID"]
                attrs = node_attrs_from_ray(node_id, n.get("Labels") or {}, n.get("Resources") or {})
                alive[node_id] = {
                    "node_id": node_id,
                    "zone": attrs.zone,
                    "accelerator": attrs.accelerator,
                    "labels": dict(attrs.labels),
                    "resources": dict(n.get("Resources") or {}),
                }
        self.nodes = alive
        for node_id, info in alive.items():
            if node_id in self.agents:
                continue
            zone = self._zone_handle(info["zone"])  # the zone first, so the agent's first report lands
            del zone
            handle = NodeAgent.options(
                name=agent_name(node_id),
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(
                node_id,
                {"zone": info["zone"], "accelerator": info["accelerator"], "labels": info["labels"]},
                self.config.to_dict(),
            )
            self.agents[node_id] = {
                "handle": handle,
                "name": agent_name(node_id),
                "zone": info["zone"],
                "created_at": time.time(),
            }
            self._event("agent_started", node_id=node_id, zone=info["zone"])
        for node_id in [n for n in self.agents if n not in alive]:
            entry = self.agents.pop(node_id)
            self.snapshots.pop(node_id, None)
            self.acked.pop(node_id, None)
            with contextlib.suppress(Exception):
                ray.kill(entry["handle"], no_restart=True)
            zone = self.zones.get(entry["zone"])
            if zone is not None:
                zone.forget.remote(node_id)
            self._event("agent_dropped", node_id=node_id, zone=entry["zone"])
        # Agents that have not acknowledged the active policy get it (again).
        sha = self.policy.sha256
        for node_id, entry in self.agents.items():
            snap = self.snapshots.get(node_id)
            if snap is not None and snap.get("policy_sha") == sha:
                self.acked[node_id] = sha
                continue
            if node_id not in self._pushing:
                self._pushing[node_id] = asyncio.get_event_loop().create_task(self._push_policy(node_id, entry))

    async def _push_policy(self, node_id: str, entry: dict[str, Any]) -> bool:
        policy = self.policy
        try:
            ack = await asyncio.wait_for(entry["handle"].set_policy.remote(policy), self.config.ack_timeout_s)
            if ack == policy.sha256:
                self.acked[node_id] = ack
                return True
            return False
        except Exception as exc:
            log.debug("global: policy push to %s failed: %s", node_id[:12], exc)
            return False
        finally:
            self._pushing.pop(node_id, None)

    async def _allocate(self, now: float) -> None:
        nodes = {n: info for n, info in self.nodes.items() if n in self.snapshots}
        if not nodes:
            return
        elapsed = max(1e-3, now - (self._arrivals_since or now - self.config.allocate_interval_s))
        rates = {qos: n / elapsed for qos, n in self._arrivals.items()}
        self._arrivals, self._arrivals_since = {}, now
        leases = allocate_caps(self.policy, nodes, self.snapshots, rates)
        self.metrics.coordinator_round("global")
        revision = int(self.allocation.get("revision", 0)) + 1
        lease_s = max(3 * self.config.allocate_interval_s, 1.0)
        changed = leases != self.allocation.get("leases")
        self.allocation = {
            "revision": revision,
            "leases": leases,
            "granted_at": now,
            "lease_s": lease_s,
            "arrival_rates_per_s": rates,
        }
        by_zone: dict[str, dict[str, dict[str, int]]] = {}
        for node_id, caps in leases.items():
            by_zone.setdefault(nodes[node_id]["zone"], {})[node_id] = caps
        for zone, part in by_zone.items():
            self._zone_handle(zone).push_leases.remote(part, now, lease_s, revision)
        if changed:
            self._checkpoint()

    def _budget_of(self, qos: str, workflow: str | None) -> float:
        """The budget drift judges a summary key against: a stage's (``"fraud/score"``, nominal stage
        budget), a workflow's, else the class's."""
        if workflow:
            workflow, stage = split_stage_key(workflow)
            wf = self.policy.workflows.get(workflow)
            for s in wf.stages if wf is not None and stage is not None else ():
                if s.name == stage:
                    return s.budget_ms
        if workflow and workflow in self.policy.workflows:
            return self.policy.workflows[workflow].budget_ms
        cls = self.policy.classes.get(qos)
        return cls.budget_ms if cls is not None else float("inf")

    def _evaluate_drift(self, now: float) -> None:
        report = self.drift.evaluate(now)
        try:  # metrics + WARNING/INFO records on the ``agentic_ray.alerts`` logger
            publish_drift_report(self.metrics, report)
        except Exception as exc:
            log.warning("global: publishing alerts failed: %r", exc)
        for a in report.raised:
            self.alert_log.append({"event": "raised", **a.to_dict()})
        for a in report.cleared:
            self.alert_log.append({"event": "cleared", "at": now, **a.to_dict()})
        del self.alert_log[:-200]
        self.alerts = [a.to_dict() for a in report.active]
        self.drift_figures = {k: dict(v) for k, v in report.figures.items()}

    # -- inputs ------------------------------------------------------------------------------------
    async def zone_report(self, zone: str, payload: dict[str, Any]) -> None:
        """Called by a ZoneCoordinator with its fresh node snapshots and merged summary delta."""
        now = time.time()
        for node_id in [n for n, s in self.snapshots.items() if s.get("zone") == zone]:
            if node_id not in payload["nodes"]:
                self.snapshots.pop(node_id, None)
        for node_id, snap in payload["nodes"].items():
            if node_id in self.agents:
                self.snapshots[node_id] = snap
        for node_id, incs in payload.get("registrations", {}).items():
            self.registrations[node_id] = list(incs)
        for data in payload.get("summaries", {}).values():
            s = ClassSummary.from_dict(data)
            self._arrivals[s.qos] = self._arrivals.get(s.qos, 0) + s.count
            budget = self._budget_of(s.qos, s.workflow)
            if budget != float("inf"):
                self.drift.observe(s, budget, now)

    async def report_log_head(self, log_id: str, head: dict[str, Any]) -> None:
        """Anchor a decision log's checkpoint head (``{count, hash}``) reported by the process writing it;
        shown in ``status()["decision_logs"]`` so a later ``verify`` can compare against it."""
        self.log_heads[log_id] = dict(head, at=time.time())
        if len(self.log_heads) > 200:
            oldest = min(self.log_heads, key=lambda k: self.log_heads[k]["at"])
            self.log_heads.pop(oldest)

    # -- policy rollout ----------------------------------------------------------------------------
    async def _rollout(self, policy: Policy, wait: bool) -> dict[str, Any]:
        self.policy = policy
        self.metrics.policy_version(policy.version)
        self.acked = {}
        self._checkpoint()
        for task in list(self._pushing.values()):
            task.cancel()
        self._pushing = {}
        pushes = {n: self._push_policy(n, e) for n, e in self.agents.items()}
        if wait and pushes:
            results = await asyncio.gather(*pushes.values())
            acked = sorted(n for n, ok in zip(pushes, results, strict=True) if ok)
        else:
            for n, coro in pushes.items():
                self._pushing[n] = asyncio.get_event_loop().create_task(coro)
            acked = []
        return self._policy_info() | {"acked": acked, "missing": sorted(set(self.agents) - set(acked))}

    async def apply_policy(self, policy: Policy, source: str | None = None, wait: bool = True) -> dict[str, Any]:
        """Make ``policy`` active (a compiled ``Policy``, validated by whoever built it), checkpoint it and
        push it to every agent; with ``wait`` returns after the acknowledgements (``acked``/``missing``).
        Applying the active policy again is a no-op that still reports the acknowledgements."""
        if policy.sha256 == self.policy.sha256:
            return self._policy_info() | {
                "acked": sorted(self.acked),
                "missing": sorted(set(self.agents) - set(self.acked)),
                "unchanged": True,
            }
        revision = int(self.history[-1]["revision"]) + 1
        self.history.append(_entry(policy, revision, source))
        del self.history[:-_HISTORY_LIMIT]
        self._event("policy_applied", sha256=policy.sha256, version=policy.version, revision=revision)
        return await self._rollout(policy, wait)

    async def rollback_policy(self, wait: bool = True) -> dict[str, Any]:
        """Return to the previous policy version. ``ValueError`` when there is none."""
        if len(self.history) < 2:
            raise ValueError("rollback_policy: there is no previous policy version")
        self.history.pop()
        prev = self.history[-1]
        policy = parse_policy(prev["text"], prev["source"])
        self._event("policy_rolled_back", sha256=policy.sha256, version=policy.version)
        return await self._rollout(policy, wait)

    def _policy_info(self) -> dict[str, Any]:
        top = self.history[-1]
        return {
            "name": self.policy.name,
            "version": self.policy.version,
            "sha256": self.policy.sha256,
            "revision": top["revision"],
            "source": top["source"],
        }

    async def policy(self) -> dict[str, Any]:
        """The active policy: name, version, sha256, revision, source, canonical YAML ``text``."""
        return self._policy_info() | {"text": self.history[-1]["text"]}

    # -- outputs -----------------------------------------------------------------------------------
    async def view(self) -> dict[str, Any]:
        """The cluster view for placement: active policy ids and every alive node with its agent's
        latest snapshot (``snapshot`` is ``None`` until the agent reported)."""
        now = time.time()
        nodes = []
        for node_id, info in self.nodes.items():
            snap = self.snapshots.get(node_id)
            nodes.append(
                info
                | {
                    "agent": node_id in self.agents,
                    "inflight": snap.get("inflight", 0) if snap else 0,
                    "closed_classes": snap.get("closed_classes", []) if snap else [],
                    "service_ms": service_by_class(snap),
                    "age_s": (now - snap["at"]) if snap else None,
                    "reported": snap is not None,
                }
            )
        return {
            "at": now,
            "policy_sha": self.policy.sha256,
            "policy_version": self.policy.version,
            "revision": self.history[-1]["revision"],
            "nodes": nodes,
        }

    async def agents_info(self) -> dict[str, dict[str, Any]]:
        """``{node_id: {name, zone, incarnation, registrations, acked_policy}}`` for every known agent."""
        out = {}
        for node_id, entry in self.agents.items():
            snap = self.snapshots.get(node_id) or {}
            out[node_id] = {
                "name": entry["name"],
                "zone": entry["zone"],
                "incarnation": snap.get("incarnation"),
                "registrations": list(self.registrations.get(node_id, [])),
                "acked_policy": self.acked.get(node_id),
                "reported": bool(snap),
            }
        return out

    async def status(self) -> dict[str, Any]:
        """Telemetry seam for ``agentic-ray status`` (JSON-able): ``policy`` (name, version, sha256,
        revision, source, acked/missing agents), ``zones`` -> list of agents with accelerator state and
        in-flight counts, ``classes`` (per class/workflow budget vs observed p99 and burn rates),
        ``alerts`` (active), ``alert_log``, ``allocation``, ``events``, ``restored`` (from checkpoint),
        ``decision_logs`` (``{log id: {count, hash, at}}``: checkpoint heads of per-process decision logs)."""
        zones: dict[str, list[dict[str, Any]]] = {}
        now = time.time()
        for node_id, info in self.nodes.items():
            snap = self.snapshots.get(node_id) or {}
            zones.setdefault(info["zone"], []).append(
                {
                    "node_id": node_id,
                    "agent": agent_name(node_id),
                    "accelerator": info["accelerator"],
                    "accelerator_state": snap.get("accelerator"),
                    "inflight_by_class": snap.get("inflight_by_class", {}),
                    "closed_classes": snap.get("closed_classes", []),
                    "caps": snap.get("caps", {}),
                    "policy_sha": snap.get("policy_sha"),
                    "incarnation": snap.get("incarnation"),
                    "report_age_s": (now - snap["at"]) if snap else None,
                }
            )
        return {
            "at": now,
            "started_at": self.started_at,
            "restored": self.restored,
            "policy": self._policy_info()
            | {"acked": sorted(self.acked), "missing": sorted(set(self.agents) - set(self.acked))},
            "history": [{k: e[k] for k in ("sha256", "version", "revision", "source")} for e in self.history],
            "zones": zones,
            "classes": getattr(self, "drift_figures", {}),
            "alerts": list(self.alerts),
            "alert_log": list(self.alert_log[-50:]),
            "allocation": dict(self.allocation),
            "events": list(self.events[-50:]),
            "decision_logs": dict(self.log_heads),
            "config": self.config.to_dict(),
        }

    async def ping(self) -> float:
        return time.time()
