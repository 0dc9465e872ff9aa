"""JSON projections of the GlobalCoordinator's state: ``status()`` (``agentic-ray status``), ``agents_info()``
and the policy answers of ``apply_policy`` / ``rollback_policy``. Pure: no Ray, no clock.

The shapes are pinned by the CLI and its tests (``agentic-ray status --json`` prints ``status_json``):

- ``policy``: name, version, sha256, revision, source, ``acked`` / ``missing`` agents (node ids);
- ``history``: sha256, version, revision, source of each kept version, oldest first;
- ``zones``: ``{zone: [agent]}``, an agent being node_id, agent (actor name), accelerator,
  accelerator_state, inflight_by_class, closed_classes, caps, policy_sha, incarnation, report_age_s,
  process (the agent's own: ``niceness``; empty until it reported, or from an agent of wire version 3);
- ``classes``: per summary key the drift figures (budget_ms, p99_ms, samples, attainment, burn_*);
- ``alerts`` (active), ``alert_log`` (last 50), ``allocation``, ``events`` (last 50), ``restored``,
  ``decision_logs`` (``{log id: {count, hash, at}}``), ``config``, ``at``, ``started_at``;
- ``serve``: ``{"control_plane": true, "deployments": {"APP/DEPLOYMENT": {policy_version, policy_sha,
  policy_revision, policy_source, acked, missing, classes_seen, routers: [{router_id, node_id,
  policy_version, process, ...}], replicas: [{replica_id, node_id, zone, accelerator, policy_version, process,
  classes: {CLASS: {offered_rps, admitted, shed, p99_ms, budget_ms, ...}}}], refusal?}}, "environment":
  [line]}`` (``ServeState.status``; ``process``: niceness, proxy, door; ``environment``: what was started
  without agentic-ray's environment, ``_serve_state.environment_findings``);
- ``actions``: ``{dry_run, rules, active: [{rule, action, target, alerts, started_at, restoring, level,
  effect}], overlay, log: [{at, event, rule, action, alert, target, detail, dry_run}]}`` (the last 50
  records; ``ActionPlanner.status``);
- ``process``: the GlobalCoordinator's own process (``niceness``): a control plane started without
  ``RAY_worker_niceness=0`` runs at Ray's 15, and its zones and agents, which inherit its environment
  (or have their nodes' own), most likely too;
- ``trial``: the running canary (fraction, nodes, replicas, settings) or shadow policy (counts: evaluated,
  would_refuse, would_place_elsewhere, would_shed), or ``None`` (``control._trial.Trial.to_dict``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agentic_ray.control._global_state import GlobalState
from agentic_ray.policies.types import NodeAttrs

__all__ = ["agents_info", "policy_answer", "status_json"]

SHOWN = 50  # alert log entries and events in status()


def policy_answer(state: GlobalState, acked: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The active policy's ids with ``acked`` (default: the agents that acknowledged it) and ``missing``
    (the other agents), plus ``extra`` keys."""
    rollout = state.rollout
    if acked is None:
        acked, missing = rollout.acks(state.agents)
    else:
        acked = sorted(acked)
        missing = sorted(set(state.agents) - set(acked))
    return rollout.info() | {"acked": acked, "missing": missing} | extra


def agents_info(state: GlobalState) -> dict[str, dict[str, Any]]:
    """``{node_id: {name, zone, incarnation, registrations, acked_policy, reported}}`` per known agent."""
    out = {}
    for node_id, record in state.agents.items():
        snap = state.snapshots.get(node_id)
        out[node_id] = {
            "name": record.name,
            "zone": record.zone,
            "incarnation": snap.incarnation if snap is not None else None,
            "registrations": list(state.registrations.get(node_id, ())),
            "acked_policy": state.rollout.acked.get(node_id),
            "reported": snap is not None,
        }
    return out


def _zones(state: GlobalState, now: float, agent_name: Callable[[str], str]) -> dict[str, list[dict[str, Any]]]:
    zones: dict[str, list[dict[str, Any]]] = {}
    for node_id, info in state.nodes.items():
        snap = state.snapshots.get(node_id)
        zones.setdefault(info.zone, []).append(
            {
                "node_id": node_id,
                "agent": agent_name(node_id),
                "accelerator": info.accelerator,
                "accelerator_state": snap.accelerator if snap is not None else None,
                "inflight_by_class": dict(snap.inflight_by_class) if snap is not None else {},
                "closed_classes": list(snap.closed_classes) if snap is not None else [],
                "caps": dict(snap.caps) if snap is not None else {},
                "policy_sha": snap.policy_sha if snap is not None else None,
                "incarnation": snap.incarnation if snap is not None else None,
                "report_age_s": (now - snap.at) if snap is not None else None,
                "process": dict(snap.process) if snap is not None else {},
            }
        )
    return zones


def status_json(
    state: GlobalState,
    now: float,
    config: Mapping[str, Any],
    agent_name: Callable[[str], str],
    process: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``status()`` at ``now`` (see the module docstring); ``agent_name(node_id)`` names each agent actor,
    ``config`` is the control plane's settings as JSON and ``process`` what the coordinator's own process
    runs with (``_ray_env.process_env``)."""
    return {
        "at": now,
        "started_at": state.started_at,
        "restored": state.restored,
        "policy": policy_answer(state),
        "history": [
            {
                "sha256": e.sha256,
                "version": e.version,
                "revision": e.revision,
                "source": e.source,
                "applied_at": e.applied_at,
                "signed_by": list(e.signed_by),
                "sequence": e.sequence,
            }
            for e in state.rollout.history
        ],
        "zones": _zones(state, now, agent_name),
        "classes": {k: dict(v) for k, v in state.figures.items()},
        "alerts": [a.to_dict() for a in state.alerts],
        "alert_log": [e.to_dict() for e in state.alert_log[-SHOWN:]],
        "allocation": state.allocation.to_dict() if state.allocation is not None else {},
        "events": [e.to_dict() for e in state.events[-SHOWN:]],
        "decision_logs": {k: h.to_dict() for k, h in state.log_heads.items()},
        "unsatisfiable_rules": state.policy.unsatisfiable_rules(
            NodeAttrs(n.node_id, n.zone, n.accelerator, n.labels) for n in state.nodes.values()
        ),
        "serve": state.serve.status(now),
        "actions": state.planner.status(),
        "trial": state.trial.to_dict(now) if state.trial is not None else None,
        "config": dict(config),
        "process": dict(process or {}),
    }
