"""The ``actions`` section of a policy, compiled: which alerts each rule answers and with what.

A rule maps an alert (``when``: its kind, ``burn_rate`` or ``p99_over_budget``, narrowed by class,
workflow and stage, or Serve deployment; ``zone`` narrows the nodes and replicas it touches) to one action
of a fixed vocabulary (``do``). Each action takes only its own parameters; a parameter of another action
is an error naming the rule, so a typo cannot silently fall back to a default:

==================== ============================================================================
``tighten_admission`` ``factor`` (0.5: caps of the tightened classes scaled by it), ``classes`` (default:
                      every class less urgent than the alert's that may be shed), ``hold_s`` (10: held at
                      least this long, and while the alert is active), ``restore_step`` (0.25 of the cut
                      given back per step once it clears), ``restore_every_s`` (2)
``avoid_replica``     ``weight`` (0.0: share of routing decisions the drifted replica stays a candidate),
``avoid_node``        ``drift_ratio`` (2.0: drifted when its recent latency is this many times the others'
                      median), ``hold_s`` (10)
``scale_out``         ``replicas`` (1 per step), ``max_replicas`` (ceiling of a Serve deployment's count;
                      needed for an alert on a deployment), ``resources`` (one bundle asked of the
                      autoscaler per step for task alerts: ``ray.autoscaler.sdk.request_resources``),
                      ``hold_s`` (30)
``notify``            none: the alert and its clearing are logged, nothing else happens
==================== ============================================================================

``dry_run: true`` makes the control plane log what it would do and do nothing. Pure: no Ray, no clock.
The decisions (when an action starts, steps back and is reverted) are ``agentic_ray.control._actions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.policies.schema import ActionRuleSpec, ActionsSpec, PolicySpec

__all__ = ["ACTION_PARAMS", "ActionRule", "ActionsConfig", "check_actions", "compile_actions"]

PathKey = tuple[str | int, ...]

ACTION_PARAMS: Mapping[str, Mapping[str, Any]] = {
    "tighten_admission": {"factor": 0.5, "classes": None, "hold_s": 10.0, "restore_step": 0.25, "restore_every_s": 2.0},
    "avoid_replica": {"weight": 0.0, "drift_ratio": 2.0, "hold_s": 10.0},
    "avoid_node": {"weight": 0.0, "drift_ratio": 2.0, "hold_s": 10.0},
    "scale_out": {"replicas": 1, "max_replicas": None, "resources": None, "hold_s": 30.0},
    "notify": {},
}
"""Each action's parameters and their defaults (``None``: unset unless the rule gives it)."""

_ALL_PARAMS = (
    "factor",
    "classes",
    "hold_s",
    "restore_step",
    "restore_every_s",
    "weight",
    "drift_ratio",
    "replicas",
    "max_replicas",
    "resources",
)


@dataclass(frozen=True, slots=True)
class ActionRule:
    """One compiled rule: the alert it answers and the action with its parameters (defaults filled)."""

    id: str
    alert: str
    action: str
    qos: str | None = None
    workflow: str | None = None
    stage: str | None = None
    deployment: str | None = None
    zone: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, kind: str, qos: str, workflow: str | None) -> bool:
        """Does an alert of ``kind`` on class ``qos`` and key workflow ``workflow`` (``"wf"``,
        ``"wf/stage"`` or ``"serve:APP/DEPLOYMENT"``) match this rule? ``zone`` never filters alerts
        (they are cluster-wide): it narrows what the action touches."""
        if kind != self.alert or (self.qos is not None and qos != self.qos):
            return False
        w = workflow or ""
        deployment = w[len("serve:") :] if w.startswith("serve:") else None
        if self.deployment is not None and deployment != self.deployment:
            return False
        if self.workflow is not None or self.stage is not None:
            if deployment is not None:
                return False
            name, _, stage = w.partition("/")
            if self.workflow is not None and name != self.workflow:
                return False
            if self.stage is not None and stage != self.stage:
                return False
        return True

    def param(self, name: str) -> Any:
        return self.params.get(name)

    def describe(self) -> str:
        """``burn_rate class=critical deployment=app/Model -> tighten_admission factor=0.5 ...``."""
        scope = " ".join(
            f"{k}={v}"
            for k, v in (
                ("class", self.qos),
                ("workflow", self.workflow),
                ("stage", self.stage),
                ("deployment", self.deployment),
                ("zone", self.zone),
            )
            if v
        )
        params = " ".join(f"{k}={_fmt(v)}" for k, v in self.params.items() if v is not None)
        return f"{self.alert}{' ' + scope if scope else ''} -> {self.action}{' ' + params if params else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alert": self.alert,
            "action": self.action,
            "class": self.qos,
            "workflow": self.workflow,
            "stage": self.stage,
            "deployment": self.deployment,
            "zone": self.zone,
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()},
        }


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    if isinstance(v, Mapping):
        return ",".join(f"{k}:{x:g}" for k, x in v.items())
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True, slots=True)
class ActionsConfig:
    """The compiled ``actions`` section (empty when the policy has none)."""

    rules: tuple[ActionRule, ...] = ()
    dry_run: bool = False

    def matching(self, kind: str, qos: str, workflow: str | None) -> tuple[ActionRule, ...]:
        """The rules an alert matches, in the policy's order."""
        return tuple(r for r in self.rules if r.matches(kind, qos, workflow))

    def deployments(self) -> dict[str, str]:
        """``{rule id: deployment}`` of every rule scoped to a deployment (checked at apply time)."""
        return {r.id: r.deployment for r in self.rules if r.deployment is not None}


def compile_actions(spec: ActionsSpec | None) -> ActionsConfig:
    """The ``ActionsConfig`` of a validated ``actions`` section (``None``: no rules)."""
    if spec is None:
        return ActionsConfig()
    rules = []
    for r in spec.rules:
        params: dict[str, Any] = {}
        for name, default in ACTION_PARAMS[r.do].items():
            value = getattr(r, name)
            if value is None:
                params[name] = default
            elif name == "classes":
                params[name] = tuple(value)
            elif name == "resources":
                params[name] = {k: float(v) for k, v in value.items()}
            else:
                params[name] = value
        w = r.when
        rules.append(ActionRule(r.id, w.alert, r.do, w.qos_class, w.workflow, w.stage, w.deployment, w.zone, params))
    return ActionsConfig(tuple(rules), spec.dry_run)


def check_actions(spec: PolicySpec) -> list[tuple[PathKey, str]]:
    """Meaning problems of the ``actions`` section, each naming its rule: duplicate ids, parameters of
    another action, undefined classes and workflows, a stage its workflow lacks, a ``scale_out`` with
    nothing to scale."""
    out: list[tuple[PathKey, str]] = []
    if spec.actions is None:
        return out
    seen: dict[str, int] = {}
    for i, rule in enumerate(spec.actions.rules):
        path: PathKey = ("actions", "rules", i)
        name = f"rule {rule.id!r}"
        if rule.id in seen:
            out.append(
                ((*path, "id"), f"duplicate actions rule id {rule.id!r} (first at actions.rules[{seen[rule.id]}])")
            )
        seen.setdefault(rule.id, i)
        allowed = ACTION_PARAMS[rule.do]
        for param in _ALL_PARAMS:
            if getattr(rule, param) is not None and param not in allowed:
                takes = ", ".join(allowed) or "no parameters"
                out.append(((*path, param), f"{name}: {param} is not a parameter of {rule.do} (it takes {takes})"))
        _check_scope(spec, rule, path, name, out)
        if rule.do == "scale_out" and rule.max_replicas is None and rule.resources is None:
            out.append(
                (
                    (*path, "do"),
                    f"{name}: scale_out needs max_replicas (a Serve deployment) or resources "
                    "(tasks: a bundle to ask the autoscaler for)",
                )
            )
    return out


def _check_scope(
    spec: PolicySpec, rule: ActionRuleSpec, path: PathKey, name: str, out: list[tuple[PathKey, str]]
) -> None:
    w = rule.when
    if w.qos_class is not None and w.qos_class not in spec.classes:
        out.append(((*path, "when", "class"), f"{name}: undefined class {w.qos_class!r}"))
    for j, q in enumerate(rule.classes or ()):
        if q not in spec.classes:
            out.append(((*path, "classes", j), f"{name}: undefined class {q!r}"))
    if w.workflow is not None and w.workflow not in spec.workflows:
        out.append(((*path, "when", "workflow"), f"{name}: undefined workflow {w.workflow!r}"))
    if w.stage is not None:
        wf = spec.workflows.get(w.workflow or "")
        if w.workflow is None:
            out.append(((*path, "when", "stage"), f"{name}: a stage needs its workflow (when.workflow)"))
        elif wf is not None and w.stage not in {s.name for s in wf.stages}:
            out.append(((*path, "when", "stage"), f"{name}: workflow {w.workflow!r} has no stage {w.stage!r}"))
    if w.deployment is not None and (w.workflow is not None or w.stage is not None):
        out.append(((*path, "when", "deployment"), f"{name}: an alert is on a deployment or on a workflow, not both"))
