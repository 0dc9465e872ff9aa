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

Actions (``actions``, ``control._actions.ActionPlanner`` over the active policy's ``actions:`` rules):
``plan_actions(now)`` turns the active alerts and the evidence (``window``: each Serve replica's figures
over a sliding window, ``control._replica_window``) into action records; ``policy_changed`` reverts
the actions of rules a new policy changed. Actions are in force only while the coordinator runs them:
a restarted coordinator starts with none (the alerts that caused them come back within a window).

Trials (``trial``, ``control._trial``): a canary (``start_canary``: its nodes and replicas chosen
deterministically, per zone, never a zone's or deployment's last) or a shadow version (``start_shadow``)
beside the active policy; ``judge_canary`` compares the versions' windows; ``end_trial`` promotes or
drops it and keeps the record (``trial_log``, shown by ``history_rows``). Only one trial runs at a time;
it is not checkpointed (a restarted coordinator runs the active policy everywhere and forgets it).

What survives a restart is the checkpoint (``checkpoint`` / ``restore``): the policy history, the last
allocation and Serve's per-deployment policy targets, as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._actions import ActionPlanner, ActionRecord, evidence_from
from agentic_ray.control._allocation import Allocation
from agentic_ray.control._demand import OfferedDemand, OfferedLoad
from agentic_ray.control._drift import Alert, DriftConfig, DriftDetector, DriftReport
from agentic_ray.control._membership import AgentRecord, NodeInfo
from agentic_ray.control._replica_window import ReplicaWindow
from agentic_ray.control._reports import NodeSnapshot, ZoneReport
from agentic_ray.control._rollout import PolicyEntry, PolicyRollout
from agentic_ray.control._serve_state import ServeState
from agentic_ray.control._serve_tally import SERVE_DRIFT_PREFIX
from agentic_ray.control._summary import split_stage_key
from agentic_ray.control._trial import (
    CanarySettings,
    Trial,
    Verdict,
    canary_nodes,
    canary_replicas,
    check_fraction,
    judge,
    placement_changes,
)
from agentic_ray.policies import Policy

__all__ = ["AlertLogEntry", "ControlEvent", "GlobalState", "LogHeadAnchor", "judged_budget_ms"]

EVENTS_KEPT = 200
TRIALS_KEPT = 50
EVIDENCE_S = 2.0  # the actions' evidence: each replica's figures over the last 2 s (control._actions)
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
    window: ReplicaWindow = field(default_factory=ReplicaWindow)
    actions: ActionPlanner | None = None
    trial: Trial | None = None
    trial_log: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.actions is None:
            self.actions = ActionPlanner(self.rollout.policy.actions, self.rollout.policy.classes)

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
            self.window.observe(report.replicas.values(), now)

    def record_drift(self, report: DriftReport, now: float) -> None:
        """Keep an evaluation's active alerts and figures, and log its transitions."""
        self.alert_log.extend(AlertLogEntry("raised", a) for a in report.raised)
        self.alert_log.extend(AlertLogEntry("cleared", a, now) for a in report.cleared)
        del self.alert_log[:-ALERT_LOG_KEPT]
        self.alerts = tuple(report.active)
        self.figures = {k: dict(v) for k, v in report.figures.items()}

    # -- actions -----------------------------------------------------------------------------------------
    @property
    def planner(self) -> ActionPlanner:
        assert self.actions is not None  # set in __post_init__
        return self.actions

    def plan_actions(self, now: float) -> list[ActionRecord]:
        """The actions' transitions at ``now`` from the active alerts (``control._actions``)."""
        counts: dict[str, int] = {}
        for m in self.serve.replica_members.values():
            counts[m.deployment] = counts.get(m.deployment, 0) + 1
        nodes = {n: info.zone for n, info in self.nodes.items()}
        stats = self.window.replicas(now, span_s=EVIDENCE_S)
        return self.planner.evaluate(self.alerts, evidence_from(stats, nodes, counts), now)

    def policy_changed(self, now: float) -> list[ActionRecord]:
        """The active policy changed: actions of rules it changed or dropped are reverted (returned)."""
        return self.planner.reconfigure(self.policy.actions, self.policy.classes, now)

    # -- trials ------------------------------------------------------------------------------------------
    def check_trial_free(self) -> None:
        if self.trial is not None:
            raise ValueError(
                f"a {self.trial.kind} of {self.trial.policy.version} runs: promote it or roll it back first"
            )

    def start_canary(self, policy: Policy, source: str, now: float, fraction: float | None = None,
                     nodes: list[str] | None = None, settings: CanarySettings | None = None,
                     by: str | None = None) -> Trial:  # fmt: skip
        """Start ``policy`` as a canary on ``fraction`` of the nodes and replicas, or on ``nodes`` (see
        ``control._trial``). ``ValueError``: a fraction outside (0, 1), unknown nodes, no node that can be
        a canary, a change of placement or residency, the active policy itself, a trial running."""
        self.check_trial_free()
        if (fraction is None) == (not nodes):
            raise ValueError("canary: give a fraction (canary=0.2) or canary_nodes, not both")
        if fraction is not None:
            fraction = check_fraction(fraction)
        if policy.sha256 == self.policy.sha256:
            raise ValueError("canary: this policy is the active one already")
        changed = placement_changes(self.policy, policy)
        if changed:
            raise ValueError(f"canary: the new version changes where data may go ({', '.join(changed)}): roll it "
                             "out whole (after 'agentic-ray policy diff') or run it in shadow first")  # fmt: skip
        zones = {n: info.zone for n, info in self.nodes.items()}
        if nodes:
            unknown = sorted(set(nodes) - set(zones))
            if unknown:
                raise ValueError(f"canary_nodes: unknown node(s) {', '.join(unknown)}")
            picked = tuple(sorted(set(nodes)))
            for zone in sorted({zones[n] for n in picked}):
                if {n for n, z in zones.items() if z == zone} <= set(picked):
                    raise ValueError(f"canary_nodes: zone {zone} would keep no baseline node")
        else:
            assert fraction is not None
            picked = canary_nodes(zones, fraction, policy.sha256)
        trial = Trial("canary", policy, source, now, self.policy.sha256, fraction, picked,
                      settings or CanarySettings(), by)  # fmt: skip
        trial.replicas = self._canary_replicas(trial)
        if not picked and not trial.replicas:
            raise ValueError("canary: no node or replica can run it and leave a baseline in every zone")
        self.trial = trial
        self.window.window_s = max(self.window.window_s, trial.settings.window_s)
        return trial

    def start_shadow(self, policy: Policy, source: str, now: float, by: str | None = None) -> Trial:
        """Start ``policy`` in shadow: evaluated beside the active one by every router, acting on nothing."""
        self.check_trial_free()
        if policy.sha256 == self.policy.sha256:
            raise ValueError("shadow: this policy is the active one already")
        self.trial = Trial("shadow", policy, source, now, self.policy.sha256, by=by)
        return self.trial

    def _canary_replicas(self, trial: Trial) -> tuple[str, ...]:
        replicas = {}
        for rid, m in self.serve.replica_members.items():
            report = self.serve.replicas.get(rid)
            zone = (
                report.zone if report is not None else (self.nodes[m.node_id].zone if m.node_id in self.nodes else "")
            )
            replicas[rid] = (m.deployment, zone, m.node_id)
        return canary_replicas(replicas, trial.policy.sha256, trial.fraction, trial.nodes)

    def refresh_trial(self) -> None:
        """Recompute a canary's replicas (replicas come and go; the choice is deterministic)."""
        if self.trial is not None and self.trial.kind == "canary":
            self.trial.replicas = self._canary_replicas(self.trial)

    def policy_for(self, node_id: str) -> Policy:
        """The policy a node's agent should run: the canary's on a canary node, else the active one."""
        trial = self.trial
        if trial is not None and trial.kind == "canary" and node_id in trial.nodes:
            return trial.policy
        return self.policy

    def judge_canary(self, now: float) -> Verdict | None:
        """The running canary's verdict at ``now`` (None: none runs, or wait)."""
        trial = self.trial
        if trial is None or trial.kind != "canary":
            return None
        span = trial.settings.window_s
        versions = self.window.by_version(now, span_s=min(span, max(1e-9, now - trial.started_at)))
        return judge(trial.settings, versions.get(trial.policy.sha256), versions.get(trial.baseline_sha),
                     trial.started_at, now)  # fmt: skip

    def end_trial(self, outcome: str, reason: str, now: float) -> Trial:
        """End the running trial (``promoted`` or ``rolled_back``) and log it; ``ValueError`` when none runs."""
        trial = self.trial
        if trial is None:
            raise ValueError("no canary or shadow policy runs")
        self.trial = None
        row = trial.to_dict(now) | {"state": outcome, "reason": reason, "ended_at": now}
        self.trial_log.append(row)
        del self.trial_log[:-TRIALS_KEPT]
        self.record_event(now, f"{trial.kind}_{outcome}", version=trial.policy.version, sha256=trial.policy.sha256,
                          reason=reason)  # fmt: skip
        return trial

    def serve_overlay(self) -> dict[str, Any]:
        """What Serve's routers and replicas apply on top of their policy: the actions in force, a
        canary's replicas and policy, a shadow policy."""
        out: dict[str, Any] = self.planner.overlay().serve_part()
        trial = self.trial
        if trial is not None and trial.kind == "canary":
            out["canary"] = {"sha": trial.policy.sha256, "replicas": list(trial.replicas)}
        elif trial is not None:
            out["shadow"] = {"sha": trial.policy.sha256}
        return out

    def history_rows(self, now: float) -> list[dict[str, Any]]:
        """``policy history``: every kept version (state ``active`` or ``superseded``), ended trials
        (``promoted`` / ``rolled_back``) and the running one, oldest first, each with when and by whom."""
        rows: list[dict[str, Any]] = []
        top = self.rollout.active.revision
        for e in self.rollout.history:
            rows.append({"version": e.version, "sha256": e.sha256, "revision": e.revision, "source": e.source,
                         "state": "active" if e.revision == top else "superseded", "at": e.applied_at,
                         "by": None})  # fmt: skip
        for t in self.trial_log:
            rows.append({"version": t["version"], "sha256": t["sha256"], "revision": None, "source": t["source"],
                         "state": f"{t['kind']} {t['state']}", "at": t["started_at"], "by": t.get("by"),
                         "reason": t["reason"]})  # fmt: skip
        running = self.trial
        if running is not None:
            rows.append({"version": running.policy.version, "sha256": running.policy.sha256, "revision": None,
                         "source": running.source, "state": f"{running.kind} running", "at": running.started_at,
                         "by": running.by})  # fmt: skip
        rows.sort(key=lambda r: r["at"])
        return rows

    def anchor_log_head(self, log_id: str, head: Mapping[str, Any], now: float) -> None:
        """Anchor a decision log's checkpoint head (``{count, hash}``); the oldest goes past ``LOG_HEADS_KEPT``."""
        self.log_heads[log_id] = LogHeadAnchor(int(head["count"]), str(head["hash"]), now)
        if len(self.log_heads) > LOG_HEADS_KEPT:
            oldest = min(self.log_heads, key=lambda k: self.log_heads[k].at)
            self.log_heads.pop(oldest)
