"""The GlobalCoordinator's state as one typed object, and how reports, drift evaluations and membership
changes update it. Pure: no Ray, no clock (``now``, wall-clock seconds, comes in).

``GlobalState`` holds what the coordinator knows: the policy rollout (``rollout.PolicyRollout``), the
alive nodes and their agents (``membership``), each agent's latest snapshot and incarnations, the offered
load since the last allocation round and the last round (``allocation``), the drift detector with the
alerts it raised, a bounded log of control events, the decision-log heads processes anchored, and Serve
(``serve``: registered deployments, their routers' and replicas' reports and policy targets,
``control._serve_state``). The
Ray actor (``actors._global_coordinator``) owns one, feeds it what arrives and acts on what the pure
pieces decide; ``status`` and ``view`` project it for ``agentic-ray status`` and for placement.

Reports (``ingest``): a zone's ``ZoneReport`` replaces the snapshots of that zone's nodes (a node the
zone no longer reports, stale or gone, leaves the view); its summary deltas and its replicas' reports
count as offered load of that zone (``_demand.OfferedLoad``, which an allocation round ``take``s with
the snapshots), the summaries go to drift detection, each judged against its budget
(``judged_budget_ms``: a stage's, else its workflow's, else its class's; a Serve deployment's key
``serve:APP/DEPLOYMENT`` is judged against its class's), and its replicas' latest reports go to ``serve``.

What survives a restart is the checkpoint (``checkpoint`` / ``restore``): the policy history, the last
allocation and Serve's per-deployment policy targets, as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._allocation import Allocation
from agentic_ray.control._demand import OfferedDemand, OfferedLoad
from agentic_ray.control._drift import Alert, DriftConfig, DriftDetector, DriftReport
from agentic_ray.control._membership import AgentRecord, NodeInfo
from agentic_ray.control._reports import NodeSnapshot, ZoneReport
from agentic_ray.control._rollout import PolicyEntry, PolicyRollout
from agentic_ray.control._serve_state import ServeState
from agentic_ray.control._serve_tally import SERVE_DRIFT_PREFIX
from agentic_ray.control._summary import split_stage_key
from agentic_ray.policies import Policy

__all__ = ["AlertLogEntry", "ControlEvent", "GlobalState", "LogHeadAnchor", "judged_budget_ms"]

EVENTS_KEPT = 200
ALERT_LOG_KEPT = 200
LOG_HEADS_KEPT = 200


def judged_budget_ms(policy: Policy, qos: str, workflow: str | None) -> float:
    """The budget drift judges a summary key against: a stage's (``"fraud/score"``, its nominal stage
    budget), a workflow's, else the class's (a Serve deployment's ``serve:...`` key included); ``inf``
    for an unknown class."""
    if workflow and not workflow.startswith(SERVE_DRIFT_PREFIX):
        name, stage = split_stage_key(workflow)
        wf = policy.workflows.get(name)
        for s in wf.stages if wf is not None and stage is not None else ():
            if s.name == stage:
                return s.budget_ms
        if name in policy.workflows:
            return policy.workflows[name].budget_ms
    cls = policy.classes.get(qos)
    return cls.budget_ms if cls is not None else float("inf")


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """Something the control plane did (``agent_started``, ``agent_dropped``, ``policy_applied``,
    ``policy_rolled_back``) at ``at``, with its figures."""

    at: float
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, **self.fields}


@dataclass(frozen=True, slots=True)
class AlertLogEntry:
    """An alert raised or cleared (``event``); a cleared one carries when (``at``)."""

    event: str
    alert: Alert
    at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {"event": self.event} if self.at is None else {"event": self.event, "at": self.at}
        return head | self.alert.to_dict()


@dataclass(frozen=True, slots=True)
class LogHeadAnchor:
    """A decision log's checkpoint head (``count`` records, last ``hash``) as anchored at ``at``."""

    count: int
    hash: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "hash": self.hash, "at": self.at}


@dataclass(slots=True)
class GlobalState:
    """What the GlobalCoordinator knows (see the module docstring)."""

    rollout: PolicyRollout
    drift: DriftDetector
    started_at: float
    restored: bool = False
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    agents: dict[str, AgentRecord] = field(default_factory=dict)
    snapshots: dict[str, NodeSnapshot] = field(default_factory=dict)
    registrations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    offered: OfferedLoad = field(default_factory=OfferedLoad)
    allocation: Allocation | None = None
    alerts: tuple[Alert, ...] = ()
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    alert_log: list[AlertLogEntry] = field(default_factory=list)
    events: list[ControlEvent] = field(default_factory=list)
    log_heads: dict[str, LogHeadAnchor] = field(default_factory=dict)
    serve: ServeState = field(default_factory=ServeState)

    # -- life cycle --------------------------------------------------------------------------------
    @classmethod
    def restore(
        cls, checkpoint: Mapping[str, Any] | None, default: Policy, drift: DriftConfig, now: float
    ) -> GlobalState:
        """The state a coordinator starting at ``now`` resumes: the checkpoint's policy history and last
        allocation (``restored``), else ``default`` as revision 1 ("<default policy>")."""
        history = [PolicyEntry.from_dict(e) for e in (checkpoint or {}).get("history") or ()]
        if history:
            rollout = PolicyRollout(history, highest_sequence=(checkpoint or {}).get("highest_sequence"))
            allocation = Allocation.from_dict((checkpoint or {}).get("allocation"))
            state = cls(rollout, DriftDetector(drift), now, restored=True, allocation=allocation)
            state.serve.restore((checkpoint or {}).get("serve"), now)
            return state
        return cls(PolicyRollout.first(default, "<default policy>", now), DriftDetector(drift), now)

    def checkpoint(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON the coordinator checkpoints: policy history, last allocation (without replica caps,
        which the next round recomputes), its ``config``."""
        return {
            "history": [e.to_dict() for e in self.rollout.history],
            "highest_sequence": self.rollout.highest_sequence,
            "allocation": self.allocation.to_dict(replicas=False) if self.allocation is not None else {},
            "serve": self.serve.to_dict(),
            "config": dict(config),
        }

    @property
    def policy(self) -> Policy:
        """The active compiled policy."""
        return self.rollout.policy

    def record_event(self, now: float, kind: str, **fields: Any) -> None:
        self.events.append(ControlEvent(now, kind, fields))
        del self.events[:-EVENTS_KEPT]

    # -- membership --------------------------------------------------------------------------------
    def agent_started(self, info: NodeInfo, name: str, now: float) -> AgentRecord:
        """Record the agent started on ``info``'s node."""
        record = self.agents[info.node_id] = AgentRecord(info.node_id, name, info.zone, now)
        self.record_event(now, "agent_started", node_id=info.node_id, zone=info.zone)
        return record

    def agent_dropped(self, node_id: str, now: float) -> AgentRecord | None:
        """Forget the agent of a node that left (its snapshot and acknowledgement too)."""
        record = self.agents.pop(node_id, None)
        self.snapshots.pop(node_id, None)
        self.rollout.forget(node_id)
        if record is not None:
            self.record_event(now, "agent_dropped", node_id=node_id, zone=record.zone)
        return record

    def reported_policies(self) -> dict[str, str | None]:
        """``{node_id: policy sha256 in its last snapshot}`` for every agent (``None``: none yet)."""
        snaps = self.snapshots
        return {n: (s.policy_sha if (s := snaps.get(n)) is not None else None) for n in self.agents}

    def reported_nodes(self) -> dict[str, NodeInfo]:
        """The alive nodes whose agent has reported (what an allocation round covers)."""
        return {n: info for n, info in self.nodes.items() if n in self.snapshots}

    def take_demand(self, now: float, first_window_s: float, stale_after_s: float) -> OfferedDemand:
        """The offered load since the previous round (``OfferedLoad.take`` with the current snapshots)."""
        return self.offered.take(now, self.snapshots, first_window_s, stale_after_s)

    # -- inputs --------------------------------------------------------------------------------------
    def ingest(self, report: ZoneReport, now: float) -> None:
        """Take a zone's report received at ``now`` (see the module docstring)."""
        snapshots = self.snapshots
        for node_id in [n for n, s in snapshots.items() if s.zone == report.zone and n not in report.nodes]:
            del snapshots[node_id]
        for node_id, snap in report.nodes.items():
            if node_id in self.agents:
                snapshots[node_id] = snap
        for node_id, incarnations in report.registrations.items():
            self.registrations[node_id] = tuple(incarnations)
        self.offered.observe(report)
        policy = self.policy
        for s in report.summaries.values():
            budget = judged_budget_ms(policy, s.qos, s.workflow)
            if budget != float("inf"):
                self.drift.observe(s, budget, now)
        if report.replicas:
            self.serve.ingest_replicas(report.replicas.values(), now)

    def record_drift(self, report: DriftReport, now: float) -> None:
        """Keep an evaluation's active alerts and figures, and log its transitions."""
        self.alert_log.extend(AlertLogEntry("raised", a) for a in report.raised)
        self.alert_log.extend(AlertLogEntry("cleared", a, now) for a in report.cleared)
        del self.alert_log[:-ALERT_LOG_KEPT]
        self.alerts = tuple(report.active)
        self.figures = {k: dict(v) for k, v in report.figures.items()}

    def anchor_log_head(self, log_id: str, head: Mapping[str, Any], now: float) -> None:
        """Anchor a decision log's checkpoint head (``{count, hash}``); the oldest goes past ``LOG_HEADS_KEPT``."""
        self.log_heads[log_id] = LogHeadAnchor(int(head["count"]), str(head["hash"]), now)
        if len(self.log_heads) > LOG_HEADS_KEPT:
            oldest = min(self.log_heads, key=lambda k: self.log_heads[k].at)
            self.log_heads.pop(oldest)
