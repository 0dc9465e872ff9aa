"""Actions from alerts: the policy's ``actions`` rules turned into what to do now. Pure: ``now`` comes in.

``ActionPlanner.evaluate(alerts, evidence, now)`` takes the active drift alerts (``DriftDetector``) and
the evidence of where the trouble is (``Evidence``: each replica's recent latency, the
alive nodes, each deployment's replica count) and returns the transitions since the last evaluation as
``ActionRecord`` values; ``overlay()`` is what should be in force now (``ActionOverlay``), which the
GlobalCoordinator executes. One entry per (rule, target) carries the hysteresis:

1. **alert -> action.** An active alert that a rule matches (``ActionRule.matches``) starts the rule's
   action on its target: ``alert`` then ``action`` records. A rule keeps one target per deployment (or
   per cluster) while its entry lives, even when the evidence stops pointing at it (an avoided replica
   gets no traffic, so its own figures stop showing the drift).
2. **hold.** The action stays at full strength while any alert that triggered it is active, and at
   least ``hold_s`` after it started (the minimum hold: an alert that flaps does not make the action
   flap). An alert that returns during a restore puts it back at full strength (another ``action``).
3. **clear -> revert.** When the alerts clear (``clear`` record) and the hold has passed, the action is
   undone: ``tighten_admission`` step by step (each ``restore_every_s`` gives back ``restore_step`` of
   the cut, one ``restore`` record each, AIMD-like: cut at once, restore slowly), the others at once;
   the last step is the ``revert`` record.

Targets and their guards:

- ``tighten_admission``: the classes it names, else every class less urgent than the alert's that may
  be shed, have their caps scaled by ``factor`` (never-shed classes are never capped): on the alert's
  deployment's replicas (``zone``: only those in it), else on the task path's node leases (of ``zone``,
  or every node).
- ``avoid_replica``: the replica of the alert's deployment whose latency over the evidence window (the
  upper quartile of its completions over the last 2 s: recent enough that completions from before the
  drift do not hide it, and robust to one slow request) is at least ``drift_ratio`` times the median of
  the others' (a robust outlier test: one slow replica cannot drag the reference up). Never the last
  replica of a deployment that is not avoided; routers keep an avoided replica where a request has no
  other eligible one (residency), see ``scheduling.routing_state``.
- ``avoid_node``: the same test over nodes (a node's replicas merged); never the last node not avoided.
- ``scale_out``: the alert's deployment gets ``replicas`` more, never above ``max_replicas`` (given back
  to the count it had on revert); for an alert on the task path, ``resources`` bundles are asked of the
  autoscaler (and the request dropped on revert).
- ``notify``: nothing but the records.

A rule whose target cannot be found (no deployment on the alert, no replica drifted enough, at the
ceiling, the last replica) logs one ``skip`` record per alert with the reason. ``dry_run`` (the
policy's ``actions.dry_run``) keeps every record (marked ``dry_run``) and makes ``overlay()`` empty: the
log says what would be done, nothing is. ``reconfigure`` (a new policy) reverts the entries of rules
that changed or went away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any

from agentic_ray.control._drift import Alert
from agentic_ray.control._reports import NodeLease
from agentic_ray.policies.actions import ActionRule, ActionsConfig
from agentic_ray.policies.types import QosClass, Shedding

__all__ = [
    "ActionOverlay",
    "ActionPlanner",
    "ActionRecord",
    "Evidence",
    "ReplicaEvidence",
    "evidence_from",
    "tightened_caps",
    "tightened_leases",
]

_Target = tuple[str | None, dict[str, Any], str]  # (target, effect, why not)

LOG_KEPT = 200
MIN_SAMPLES = 3  # completions in the window before a replica's figure counts as evidence
EVIDENCE_QUANTILE = 0.75  # a replica's latency figure: the upper quartile of its recent completions


@dataclass(frozen=True, slots=True)
class ReplicaEvidence:
    """One replica as the evidence window saw it: its latency figure (ms, the upper quartile; see the module
    docstring) over ``samples`` completions."""

    replica_id: str
    deployment: str
    node_id: str = ""
    zone: str = ""
    latency_ms: float | None = None
    samples: int = 0


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where an alert's trouble may be: replicas with their window figures, the alive nodes (``{node id:
    zone}``) and each deployment's replica count now."""

    replicas: tuple[ReplicaEvidence, ...] = ()
    nodes: Mapping[str, str] = field(default_factory=dict)
    replica_counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One transition: ``event`` is ``alert`` (a rule matched a new alert), ``action`` (applied, or
    applied again), ``restore`` (a step back), ``clear`` (the alerts behind it cleared), ``revert``
    (undone) or ``skip`` (the rule matched and found nothing to act on; ``detail["reason"]``)."""

    at: float
    event: str
    rule: str
    action: str
    alert: str
    target: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "event": self.event,
            "rule": self.rule,
            "action": self.action,
            "alert": self.alert,
            "target": self.target,
            "detail": dict(self.detail),
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class ActionOverlay:
    """What the actions put in force now. ``serve_caps``: ``{deployment: {"classes": {class: factor},
    "zone": zone or None}}``; ``node_caps``: ``{node id: {class: factor}}`` (task leases);
    ``avoid_replicas`` / ``avoid_nodes``: ``{id: weight}``; ``scale``: ``{deployment: replicas}`` (the
    count wanted); ``resources``: bundles asked of the autoscaler."""

    serve_caps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    node_caps: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    avoid_replicas: Mapping[str, float] = field(default_factory=dict)
    avoid_nodes: Mapping[str, float] = field(default_factory=dict)
    scale: Mapping[str, int] = field(default_factory=dict)
    resources: tuple[Mapping[str, float], ...] = ()

    def serve_part(self) -> dict[str, Any]:
        """What Serve's routers and replicas need (published to them): caps, avoided replicas and nodes."""
        return {
            "serve_caps": {d: {"classes": dict(v["classes"]), "zone": v["zone"]} for d, v in self.serve_caps.items()},
            "avoid_replicas": dict(self.avoid_replicas),
            "avoid_nodes": dict(self.avoid_nodes),
        }

    def to_dict(self) -> dict[str, Any]:
        return self.serve_part() | {
            "node_caps": {n: dict(c) for n, c in self.node_caps.items()},
            "scale": dict(self.scale),
            "resources": [dict(b) for b in self.resources],
        }


@dataclass(slots=True)
class _Entry:
    rule: ActionRule
    target: str
    alerts: set[str]
    started_at: float
    effect: dict[str, Any]  # what is in force: factor/classes/zone, weight, replicas, bundles
    level: float = 1.0  # tighten: the factor in force now (restored towards 1)
    restoring: bool = False
    cleared_at: float | None = None
    next_step: float = 0.0

    @property
    def hold_until(self) -> float:
        return self.started_at + float(self.rule.param("hold_s") or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.id,
            "action": self.rule.action,
            "target": self.target,
            "alerts": sorted(self.alerts),
            "started_at": self.started_at,
            "restoring": self.restoring,
            "cleared_at": self.cleared_at,
            "level": self.level,
            "effect": _jsonable(self.effect),
        }


def _jsonable(effect: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in effect.items()}


class ActionPlanner:
    """The actions' decisions with their hysteresis state (see the module docstring)."""

    def __init__(self, config: ActionsConfig, classes: Mapping[str, QosClass]) -> None:
        self.config = config
        self.classes = dict(classes)
        self.entries: dict[tuple[str, str], _Entry] = {}
        self.log: list[ActionRecord] = []
        self._skipped: set[tuple[str, str]] = set()  # (rule, alert id) already logged as skipped

    # -- configuration -------------------------------------------------------------------------------
    def reconfigure(self, config: ActionsConfig, classes: Mapping[str, QosClass], now: float) -> list[ActionRecord]:
        """A new policy: entries of rules that changed or went away are reverted (returned records)."""
        keep = {r.id: r for r in config.rules}
        out: list[ActionRecord] = []
        for key, e in list(self.entries.items()):
            if keep.get(e.rule.id) != e.rule:
                out.append(self._record(now, "revert", e, "", {"reason": "rule changed or removed"}))
                del self.entries[key]
        self.config, self.classes = config, dict(classes)
        self._skipped.clear()
        return self._keep(out)

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, alerts: Sequence[Alert], evidence: Evidence, now: float) -> list[ActionRecord]:
        """The transitions at ``now`` given the active ``alerts`` (see the module docstring)."""
        out: list[ActionRecord] = []
        active = {a.id for a in alerts}
        for alert in alerts:
            for rule in self.config.matching(alert.kind, alert.qos, alert.workflow):
                self._on_alert(rule, alert, evidence, now, out)
        for key, e in list(self.entries.items()):
            if e.alerts & active:
                continue
            if e.cleared_at is None:
                e.cleared_at = now
                out.append(self._record(now, "clear", e, ",".join(sorted(e.alerts)), {}))
            if now >= e.hold_until:
                self._release(key, e, now, out)
        self._skipped = {s for s in self._skipped if s[1] in active}
        return self._keep(out)

    def _on_alert(
        self, rule: ActionRule, alert: Alert, evidence: Evidence, now: float, out: list[ActionRecord]
    ) -> None:
        scope = self._scope(rule, alert)
        held = [e for e in self.entries.values() if e.rule.id == rule.id and e.effect.get("scope") == scope]
        if held:  # the rule acts on this scope already: keep its target, whatever the evidence says now
            for e in held:
                e.alerts.add(alert.id)
                if e.restoring or e.cleared_at is not None:
                    e.restoring, e.cleared_at, e.level = False, None, float(e.effect.get("factor", 1.0))
                    out.append(self._record(now, "action", e, alert.id, {"reason": "alert active again"}))
            return
        target, effect, reason = self._target(rule, alert, evidence)
        if target is None:
            if (rule.id, alert.id) not in self._skipped:
                self._skipped.add((rule.id, alert.id))
                out.append(
                    ActionRecord(
                        now, "skip", rule.id, rule.action, alert.id, "", {"reason": reason}, self.config.dry_run
                    )
                )
            return
        effect["scope"] = scope
        e = _Entry(rule, target, {alert.id}, now, effect, level=float(effect.get("factor", 1.0)))
        self.entries[(rule.id, target)] = e
        figures = {"value": alert.value, "threshold": alert.threshold, "window": alert.window}
        out.append(self._record(now, "alert", e, alert.id, figures))
        out.append(self._record(now, "action", e, alert.id, {}))

    def _release(self, key: tuple[str, str], e: _Entry, now: float, out: list[ActionRecord]) -> None:
        if e.rule.action != "tighten_admission":
            out.append(self._record(now, "revert", e, "", {}))
            del self.entries[key]
            return
        if not e.restoring:
            e.restoring, e.next_step = True, now
        step = float(e.rule.param("restore_step"))
        every = float(e.rule.param("restore_every_s"))
        cut = 1.0 - float(e.effect["factor"])
        while now >= e.next_step:
            e.level = min(1.0, e.level + step * cut)
            e.next_step += every
            if e.level >= 1.0 - 1e-9:
                out.append(self._record(now, "revert", e, "", {}))
                del self.entries[key]
                return
            out.append(self._record(now, "restore", e, "", {"factor": round(e.level, 6)}))

    @staticmethod
    def _scope(rule: ActionRule, alert: Alert) -> str:
        """What one entry of ``rule`` covers: the alert's deployment, else the zone, else the cluster."""
        deployment = rule.deployment or alert.deployment
        if deployment is not None:
            return f"deployment:{deployment}"
        return f"zone:{rule.zone}" if rule.zone else "cluster"

    def _target(self, rule: ActionRule, alert: Alert, ev: Evidence) -> _Target:
        """``(target, effect, reason)``: what ``rule`` acts on for ``alert`` (None and why: a skip)."""
        deployment = rule.deployment or alert.deployment
        action = rule.action
        if action == "notify":
            return f"alert:{alert.id}", {}, ""
        if action == "tighten_admission":
            classes = rule.param("classes") or self._less_urgent(alert.qos)
            if not classes:
                return None, {}, f"no class less urgent than {alert.qos!r} may be shed"
            effect = {"factor": float(rule.param("factor")), "classes": tuple(classes), "zone": rule.zone}
            if deployment is not None:
                return f"deployment:{deployment}", effect | {"deployment": deployment}, ""
            nodes = tuple(sorted(n for n, z in ev.nodes.items() if rule.zone is None or z == rule.zone))
            if not nodes:
                return None, {}, "no node in scope"
            return (f"zone:{rule.zone}" if rule.zone else "cluster"), effect | {"nodes": nodes}, ""
        if action == "avoid_replica":
            return self._avoid_replica(rule, deployment, ev)
        if action == "avoid_node":
            return self._avoid_node(rule, ev)
        return self._scale_out(rule, deployment, ev)

    def _less_urgent(self, qos: str) -> tuple[str, ...]:
        cls = self.classes.get(qos)
        prio = cls.priority if cls is not None else -1
        return tuple(
            sorted(n for n, c in self.classes.items() if c.priority > prio and c.shedding is not Shedding.NEVER)
        )

    def _avoided(self, kind: str) -> set[str]:
        return {e.target.split(":", 1)[1] for e in self.entries.values() if e.rule.action == kind}

    def _avoid_replica(self, rule: ActionRule, deployment: str | None, ev: Evidence) -> _Target:
        if deployment is None:
            return None, {}, "the alert names no deployment"
        mine = [r for r in ev.replicas if r.deployment == deployment]
        avoided = self._avoided("avoid_replica")
        if len(mine) - len(avoided & {r.replica_id for r in mine}) <= 1:
            return None, {}, "it would leave no replica of the deployment un-avoided"
        figures = {r.replica_id: (r.latency_ms, r.samples, r.zone) for r in mine if r.replica_id not in avoided}
        worst = _drifted(figures, float(rule.param("drift_ratio")), rule.zone)
        if worst is None:
            return None, {}, f"no replica's recent latency is {rule.param('drift_ratio'):g}x the others'"
        return f"replica:{worst}", {"weight": float(rule.param("weight")), "deployment": deployment}, ""

    def _avoid_node(self, rule: ActionRule, ev: Evidence) -> _Target:
        avoided = self._avoided("avoid_node")
        if len(set(ev.nodes) - avoided) <= 1:
            return None, {}, "it would leave no node un-avoided"
        by_node: dict[str, list[ReplicaEvidence]] = {}
        for r in ev.replicas:
            if r.node_id and r.node_id not in avoided:
                by_node.setdefault(r.node_id, []).append(r)
        figures = {}
        for node, reps in by_node.items():
            medians = [r.latency_ms for r in reps if r.latency_ms is not None and r.samples >= MIN_SAMPLES]
            figures[node] = (median(medians) if medians else None, sum(r.samples for r in reps), ev.nodes.get(node, ""))
        worst = _drifted(figures, float(rule.param("drift_ratio")), rule.zone)
        if worst is None:
            return None, {}, f"no node's recent latency is {rule.param('drift_ratio'):g}x the others'"
        return f"node:{worst}", {"weight": float(rule.param("weight"))}, ""

    def _scale_out(self, rule: ActionRule, deployment: str | None, ev: Evidence) -> _Target:
        step = int(rule.param("replicas"))
        if deployment is None:
            bundle = rule.param("resources")
            if not bundle:
                return None, {}, "the alert is on the task path and the rule asks for no resources"
            return "cluster", {"bundles": tuple(dict(bundle) for _ in range(step))}, ""
        ceiling = rule.param("max_replicas")
        current = ev.replica_counts.get(deployment)
        if ceiling is None:
            return None, {}, "the rule has no max_replicas for a deployment"
        if current is None:
            return None, {}, f"the replica count of {deployment} is not known"
        wanted = min(int(ceiling), current + step)
        if wanted <= current:
            return None, {}, f"{deployment} is at max_replicas ({ceiling})"
        return f"deployment:{deployment}", {"deployment": deployment, "from": current, "replicas": wanted}, ""

    # -- outputs -------------------------------------------------------------------------------------
    def _record(self, now: float, event: str, e: _Entry, alert: str, detail: Mapping[str, Any]) -> ActionRecord:
        effect = {k: v for k, v in e.effect.items() if k != "scope"}
        if e.rule.action == "tighten_admission" and event in ("action", "restore", "revert"):
            effect["factor"] = 1.0 if event == "revert" else round(e.level, 6)
        if e.rule.action == "scale_out" and event == "revert" and "from" in effect:
            effect["replicas"] = effect["from"]
        return ActionRecord(
            now,
            event,
            e.rule.id,
            e.rule.action,
            alert or ",".join(sorted(e.alerts)),
            e.target,
            _jsonable(effect) | dict(detail),
            self.config.dry_run,
        )

    def _keep(self, records: list[ActionRecord]) -> list[ActionRecord]:
        self.log.extend(records)
        del self.log[:-LOG_KEPT]
        return records

    def overlay(self) -> ActionOverlay:
        """What is in force now (empty in a dry run); several entries on one target: the strongest."""
        if self.config.dry_run or not self.entries:
            return ActionOverlay()
        serve_caps: dict[str, dict[str, Any]] = {}
        node_caps: dict[str, dict[str, float]] = {}
        avoid_r: dict[str, float] = {}
        avoid_n: dict[str, float] = {}
        scale: dict[str, int] = {}
        bundles: list[Mapping[str, float]] = []
        for e in self.entries.values():
            eff, kind = e.effect, e.rule.action
            ident = e.target.split(":", 1)[1] if ":" in e.target else e.target
            if kind == "tighten_admission":
                caps = {q: e.level for q in eff["classes"]}
                if "deployment" in eff:
                    cur = serve_caps.setdefault(eff["deployment"], {"classes": {}, "zone": eff["zone"]})
                    _min_into(cur["classes"], caps)
                for node in eff.get("nodes", ()):
                    _min_into(node_caps.setdefault(node, {}), caps)
            elif kind == "avoid_replica":
                avoid_r[ident] = min(avoid_r.get(ident, 1.0), eff["weight"])
            elif kind == "avoid_node":
                avoid_n[ident] = min(avoid_n.get(ident, 1.0), eff["weight"])
            elif kind == "scale_out" and "deployment" in eff:
                scale[eff["deployment"]] = max(scale.get(eff["deployment"], 0), eff["replicas"])
            elif kind == "scale_out":
                bundles.extend(eff["bundles"])
        return ActionOverlay(serve_caps, node_caps, avoid_r, avoid_n, scale, tuple(bundles))

    def status(self) -> dict[str, Any]:
        """``{dry_run, rules, active: [...], log: [...]}`` (JSON-able) for ``status()["actions"]``."""
        return {
            "dry_run": self.config.dry_run,
            "rules": [r.id for r in self.config.rules],
            "active": [e.to_dict() for e in self.entries.values()],
            "overlay": self.overlay().to_dict(),
            "log": [r.to_dict() for r in self.log[-50:]],
        }


def _min_into(into: dict[str, float], caps: Mapping[str, float]) -> None:
    for q, f in caps.items():
        into[q] = min(into.get(q, 1.0), f)


def _drifted(figures: Mapping[str, tuple[float | None, int, str]], ratio: float, zone: str | None) -> str | None:
    """The id whose figure is at least ``ratio`` times the median of the others' (None: none is). Only
    ids with ``MIN_SAMPLES`` samples count; ``zone`` limits the candidates, not the reference."""
    known = {k: m for k, (m, n, _) in figures.items() if m is not None and n >= MIN_SAMPLES}
    if len(known) < 2:
        return None
    candidates = [k for k in known if zone is None or figures[k][2] == zone]
    if not candidates:
        return None
    worst = max(candidates, key=lambda k: (known[k], k))
    reference = median([m for k, m in known.items() if k != worst])
    return worst if known[worst] >= ratio * reference else None


def evidence_from(stats: Mapping[str, Any], nodes: Mapping[str, str], counts: Mapping[str, int]) -> Evidence:
    """``Evidence`` from ``ReplicaWindow.replicas`` (``{replica id: WindowStats}``), the alive nodes and
    the replica counts."""
    reps = tuple(
        ReplicaEvidence(rid, s.deployment, s.node_id, s.zone, s.quantile_ms(EVIDENCE_QUANTILE), s.latency.count)
        for rid, s in sorted(stats.items())
    )
    return Evidence(reps, dict(nodes), dict(counts))


def tightened_caps(caps: Mapping[str, int], factors: Mapping[str, float], base: Mapping[str, int]) -> dict[str, int]:
    """``caps`` with each class of ``factors`` capped at ``floor(factor * cap)``, the cap being the one in
    ``caps`` or, for a class without one, its ``base`` (a replica: slots plus the class's queue bound)."""
    out = dict(caps)
    for qos, factor in factors.items():
        cap = caps.get(qos, base.get(qos))
        if cap is not None:
            out[qos] = int(factor * cap)
    return out


def tightened_leases(
    leases: Mapping[str, Mapping[str, NodeLease]], node_caps: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, NodeLease]]:
    """Zones' node leases with ``tighten_admission`` factors applied to the caps of the nodes they name."""
    out: dict[str, dict[str, NodeLease]] = {}
    for zone, nodes in leases.items():
        out[zone] = {}
        for node_id, lease in nodes.items():
            factors = node_caps.get(node_id)
            if factors:
                lease = replace(lease, caps=tightened_caps(lease.caps, factors, {}))
            out[zone][node_id] = lease
    return out
