"""Compiling a validated ``PolicySpec`` into lookup tables for the hot path, and ``Policy.classify``.

Rule matching is a bitset intersection (the idea of packet classifiers such as Lakshman & Stiliadis,
"High-speed policy-based packet forwarding using efficient multi-dimensional range matching", 1998):
for each exact-match field (tenant, class, workflow, data class) a table maps a value to the bitmask of
rules that accept it (rules that do not match on the field accept every value, including "absent");
tenant regions are resolved per tenant at compile time and model globs are evaluated once per distinct
model name (bounded memo). The matching rules are ``table_tenant[t] & table_class[c] & ... & model[m]``.
Whole classifications (everything but the deadline) are cached per distinct request tuple in a bounded
LRU, so a repeated request costs one dict look-up plus building the result.

Resolution order: class = request ``qos`` > workflow's class > tenant's class > ``default_class``;
budget = request ``budget_ms`` > workflow ``budget_ms`` > class ``budget_ms``. Nominal stage budgets are
``_budget.StagePlan.split`` of the workflow budget (``share * B`` or fixed ms), scaled by ``budget / B``
when the request brings its own budget, so they always fit. With ``stage`` given, the budget is the
stage's share of what a run of the workflow has left when the earlier stages used exactly their nominal
budgets (``StagePlan.remaining_at * StagePlan.share``); ``Classification.stage_share`` carries the share so
a caller inside a workflow run recomputes the deadline from the run's own (``_budget.stage_deadline``).
A policy that lists no tenants accepts any tenant name (with no region); one that does rejects others.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any

from agentic_ray._budget import StagePlan, StageSpec, deadline_after
from agentic_ray.errors import EntitlementError, PolicyError
from agentic_ray.policies.actions import ActionsConfig, compile_actions
from agentic_ray.policies.classification import Classification, CompiledRule, NodeSelector, _Requirement
from agentic_ray.policies.entitlements import (
    EntitlementDecision,
    EntitlementSet,
    clamp_class,
    default_classes,
    request_budget_limit,
)
from agentic_ray.policies.schema import NodeSelectorSpec, PolicySpec
from agentic_ray.policies.types import (
    BreakerSettings,
    NodeAttrs,
    QosClass,
    RequestMeta,
    RetrySettings,
    Shedding,
    StageBudget,
)

__all__ = ["Policy", "Tenant", "Workflow"]

CACHE_SIZE = 4096
_MODEL_MEMO_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    region: str
    share: float | None = None
    qos_class: str | None = None


@dataclass(frozen=True, slots=True)
class Workflow:
    """A workflow; ``budget_ms`` is its end-to-end budget (its class's budget when the YAML gives none)."""

    name: str
    qos_class: str
    budget_ms: float
    stages: tuple[StageBudget, ...]


def _selector(spec: NodeSelectorSpec) -> NodeSelector:
    return NodeSelector(
        zones=frozenset(spec.zones) if spec.zones is not None else None,
        zone_prefixes=tuple(spec.zone_prefix) if spec.zone_prefix is not None else None,
        accelerators=frozenset(spec.accelerators) if spec.accelerators is not None else None,
        labels=tuple(sorted((k, frozenset(v)) for k, v in (spec.labels or {}).items())),
    )


def _fs(values: Any) -> frozenset[str] | None:
    return frozenset(values) if values is not None else None


def _exact_table(rules: tuple[CompiledRule, ...], field: str) -> tuple[dict[str | None, int], int]:
    """value -> bitmask of rules accepting it; plus the mask for values no rule names (wildcards only)."""
    wildcard = 0
    values: set[str] = set()
    for i, rule in enumerate(rules):
        accepted = getattr(rule, field)
        if accepted is None:
            wildcard |= 1 << i
        else:
            values |= accepted
    table: dict[str | None, int] = {}
    for value in values:
        mask = wildcard
        for i, rule in enumerate(rules):
            accepted = getattr(rule, field)
            if accepted is not None and value in accepted:
                mask |= 1 << i
        table[value] = mask
    return table, wildcard


class Policy:
    """A compiled, immutable policy. Build with ``load_policy`` / ``parse_policy`` / ``default_policy``."""

    def __init__(self, spec: PolicySpec, source: str | None = None) -> None:
        self.spec = spec
        self.source = source
        self.name: str = spec.metadata.name
        canonical = spec.model_dump(mode="json", by_alias=True)
        _drop_unset_stream_budgets(canonical)
        if not canonical.get("costs"):
            canonical.pop("costs", None)  # absent and empty hash alike (and as before the field existed)
        if canonical.get("actions") is None:
            canonical.pop("actions", None)  # a policy without actions hashes as before the section existed
        self._canonical_json = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self.sha256: str = hashlib.sha256(self._canonical_json.encode("utf-8")).hexdigest()
        self.version: str = spec.metadata.version or f"sha256:{self.sha256[:12]}"
        admission = spec.admission
        self.classes: Mapping[str, QosClass] = MappingProxyType(
            {
                name: QosClass(
                    name=name,
                    priority=c.priority,
                    budget_ms=float(c.budget_ms),
                    shedding=Shedding(c.shedding),
                    max_queue_wait_ms=c.max_queue_wait_ms,
                    hedge_after_ms=c.hedge_after_ms,
                    queue_bound=admission.classes[name].queue_bound if name in admission.classes else None,
                    shed_threshold=admission.classes[name].shed_threshold if name in admission.classes else None,
                    max_budget_ms=c.max_budget_ms,
                    ttft_ms=c.ttft_ms,
                    tpot_ms=c.tpot_ms,
                )
                for name, c in spec.classes.items()
            }
        )
        self.default_class: str = spec.default_class
        self.tenants: Mapping[str, Tenant] = MappingProxyType(
            {n: Tenant(n, t.region, t.share, t.qos_class) for n, t in spec.tenants.items()}
        )
        workflows: dict[str, Workflow] = {}
        for n, w in spec.workflows.items():
            cls = w.qos_class or spec.default_class
            budget = float(w.budget_ms) if w.budget_ms is not None else self.classes[cls].budget_ms
            stages: tuple[StageBudget, ...] = ()
            if w.stages:
                plan = StagePlan.split(budget, [StageSpec(s.name, s.share, s.budget_ms) for s in w.stages])
                stages = tuple(StageBudget(name, ms) for name, ms in zip(plan.names, plan.nominal_ms, strict=True))
            workflows[n] = Workflow(n, cls, budget, stages)
        self.workflows: Mapping[str, Workflow] = MappingProxyType(workflows)
        b, r = admission.breaker, admission.retry
        self.breaker = BreakerSettings(
            b.consecutive_failures, b.ejection_s, b.max_ejection_s, b.max_ejected_fraction, b.latency_outlier_factor
        )
        self.retry = RetrySettings(r.ratio, r.min_per_s, r.max_attempts)
        # accelerator kind -> cost per replica-second (empty: CPU 1, anything else 2; see replica_cost)
        self.costs: Mapping[str, float] = MappingProxyType({k: float(v) for k, v in spec.costs.items()})
        self._entitlements, self._anonymous = self._compile_entitlements(spec)
        self.residency_data_classes = frozenset(n for n, d in spec.data_classes.items() if d.requires_residency)
        self.rules: tuple[CompiledRule, ...] = tuple(
            CompiledRule(
                id=rule.id,
                description=rule.description,
                tenants=_fs(rule.match.tenant),
                tenant_regions=tuple(rule.match.tenant_region) if rule.match.tenant_region is not None else None,
                data_classes=_fs(rule.match.data_class),
                models=tuple(rule.match.model) if rule.match.model is not None else None,
                workflows=_fs(rule.match.workflow),
                classes=_fs(rule.match.qos_class),
                require=_selector(rule.require),
                prefer=_selector(rule.prefer),
            )
            for rule in spec.rules
        )
        self.actions: ActionsConfig = compile_actions(spec.actions)
        self._compile_tables()
        self._cache: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()

    # -- compilation ---------------------------------------------------------------------------------
    def _compile_entitlements(self, spec: PolicySpec) -> tuple[dict[str, EntitlementSet], EntitlementSet]:
        mode = spec.entitlements.on_excess
        out: dict[str, EntitlementSet] = {}
        for name, t in spec.tenants.items():
            if t.allowed_classes is not None:
                classes, rule = frozenset(t.allowed_classes), f"tenants.{name}.allowed_classes"
            else:
                base = t.qos_class or spec.default_class
                where = f"tenants.{name}.class" if t.qos_class else "default_class"
                classes, rule = default_classes(base, self.classes), f"{where} ({base} and lower)"
            out[name] = EntitlementSet(
                f"tenant:{name}", classes, rule, t.max_budget_ms,
                f"tenants.{name}.max_budget_ms" if t.max_budget_ms is not None else None, t.on_excess or mode,
            )  # fmt: skip
        anon = spec.entitlements.anonymous
        if anon.allowed_classes is not None:
            classes, rule = frozenset(anon.allowed_classes), "entitlements.anonymous.allowed_classes"
        else:
            classes = default_classes(spec.default_class, self.classes)
            rule = f"default_class ({spec.default_class} and lower, for requests without a tenant)"
        anonymous = EntitlementSet(
            "anonymous", classes, rule, anon.max_budget_ms,
            "entitlements.anonymous.max_budget_ms" if anon.max_budget_ms is not None else None, mode,
        )  # fmt: skip
        return out, anonymous

    def _granted_as_asked(self, request: RequestMeta) -> EntitlementSet:
        holder = f"tenant:{request.tenant}" if request.tenant is not None else "anonymous"
        return EntitlementSet(holder, frozenset(self.classes), "granted as asked (not checked)", None, None,
                              "clamp")  # fmt: skip

    def may_act_for(self, actor: str, tenant: str) -> bool:
        """Whether a process bound to tenant ``actor`` may submit work as ``tenant`` (itself, or one its
        ``act_for`` lists; rule ``tenants.<actor>.act_for``)."""
        if actor == tenant:
            return True
        spec = self.spec.tenants.get(actor)
        return spec is not None and tenant in (spec.act_for or ())

    def entitlement_of(self, tenant: str | None) -> EntitlementSet:
        """What a caller may ask for (``tenant`` ``None`` or unknown to the policy: anonymous)."""
        return self._entitlements.get(tenant, self._anonymous) if tenant is not None else self._anonymous

    def _compile_tables(self) -> None:
        rules = self.rules
        self._tenant_table, tenant_wild = _exact_table(rules, "tenants")
        # Fold tenant_region into the tenant table: the region is a function of the tenant.
        region_wild = sum(1 << i for i, r in enumerate(rules) if r.tenant_regions is None)
        tenant_masks: dict[str | None, int] = {}
        for name, tenant in self.tenants.items():
            region_mask = region_wild
            for i, r in enumerate(rules):
                if r.tenant_regions is not None and any(fnmatchcase(tenant.region, p) for p in r.tenant_regions):
                    region_mask |= 1 << i
            tenant_masks[name] = self._tenant_table.get(name, tenant_wild) & region_mask
        self._tenant_masks = tenant_masks
        self._tenant_unknown_mask = tenant_wild & region_wild  # absent tenant, or any tenant when none listed
        self._class_table, self._class_wild = _exact_table(rules, "classes")
        self._workflow_table, self._workflow_wild = _exact_table(rules, "workflows")
        self._data_table, self._data_wild = _exact_table(rules, "data_classes")
        self._model_wild = sum(1 << i for i, r in enumerate(rules) if r.models is None)
        self._model_memo: dict[str | None, int] = {None: self._model_wild}
        self._selectors_by_mask: dict[int, tuple[tuple[CompiledRule, ...], _Requirement | None]] = {}

    def _model_mask(self, model: str) -> int:
        mask = self._model_memo.get(model)
        if mask is None:
            mask = self._model_wild
            for i, r in enumerate(self.rules):
                if r.models is not None and any(fnmatchcase(model, p) for p in r.models):
                    mask |= 1 << i
            if len(self._model_memo) >= _MODEL_MEMO_SIZE:
                self._model_memo.clear()
                self._model_memo[None] = self._model_wild
            self._model_memo[model] = mask
        return mask

    def _rules_for_mask(self, mask: int) -> tuple[tuple[CompiledRule, ...], _Requirement | None]:
        hit = self._selectors_by_mask.get(mask)
        if hit is None:
            matched = tuple(r for i, r in enumerate(self.rules) if mask >> i & 1)
            hit = (matched, _Requirement.combine([r.require for r in matched]))
            if len(self._selectors_by_mask) < CACHE_SIZE:
                self._selectors_by_mask[mask] = hit
        return hit

    # -- evaluation ----------------------------------------------------------------------------------
    def classify(self, request: RequestMeta, now: float, *, check_entitlement: bool = True) -> Classification:
        """Class, budget, deadline (``now + budget_ms/1000``), stage budgets and matched rules of ``request``.

        Raises ``PolicyError`` naming an unknown class, tenant, workflow or stage, and ``EntitlementError``
        for a request beyond its caller's entitlement (module ``entitlements``).
        ``check_entitlement=False`` takes the class and budget asked for as already granted (the
        simulator's synthetic and replayed workloads, whose classes are what callers were given); a
        regulated data class without residency is refused either way.
        """
        key = (request.qos, request.budget_ms, request.tenant, request.data_class, request.model,
               request.workflow, request.stage, check_entitlement)  # fmt: skip
        cache = self._cache
        hit = cache.get(key)
        if hit is None:
            hit = self._classify_uncached(request, check_entitlement)
            cache[key] = hit
            if len(cache) > CACHE_SIZE:
                try:  # noqa: SIM105 (suppress() costs more on this hot path)
                    cache.popitem(last=False)
                except KeyError:  # another thread evicted first; each OrderedDict op is atomic
                    pass
        else:
            try:  # noqa: SIM105
                cache.move_to_end(key)
            except KeyError:  # evicted by another thread between get() and here
                pass
        qos, budget, stages, rule_ids, matched, requirement, class_source, budget_source, decision, share, total = hit
        return Classification(
            self.name, self.version, self.sha256, qos, budget, deadline_after(now, budget), stages,
            request.tenant, request.workflow, request.stage, request.model, request.data_class,
            rule_ids, matched, requirement, class_source, budget_source, decision, share, total,
        )  # fmt: skip

    def _classify_uncached(self, request: RequestMeta, check_entitlement: bool = True) -> tuple[Any, ...]:
        tenant, workflow = self._tenant_and_workflow(request)
        asked, class_source = self._asked_class(request, tenant, workflow)
        ent = self.entitlement_of(request.tenant) if check_entitlement else self._granted_as_asked(request)
        clamped: list[str] = []
        qos = clamp_class(ent, asked, self.classes)
        if qos is not asked:
            clamped.append("class")
            class_source = f"{class_source}, clamped by {ent.classes_rule}"
        base_ms = workflow.budget_ms if workflow is not None else qos.budget_ms
        if check_entitlement:
            limit, limit_rule = request_budget_limit(ent, qos, base_ms)
        else:
            limit, limit_rule = math.inf, ent.classes_rule
        if request.budget_ms is not None:
            budget, budget_source = float(request.budget_ms), "request"
            if budget > limit:
                if ent.on_excess != "clamp":
                    raise EntitlementError("budget", ent.holder, budget, limit, limit_rule)
                budget, budget_source = limit, f"request, clamped by {limit_rule}"
                clamped.append("budget")
        elif workflow is not None:
            budget, budget_source = workflow.budget_ms, f"workflow:{workflow.name}"
        else:
            budget, budget_source = qos.budget_ms, f"class:{qos.name}"
        if ent.max_budget_ms is not None and budget > ent.max_budget_ms:
            budget, budget_source = ent.max_budget_ms, f"{budget_source}, capped by {ent.budget_rule}"
        stages, stage_share, workflow_total, budget, budget_source = self._stage_budget(
            request, workflow, budget, budget_source
        )
        matched, requirement = self._rules_for_mask(self._request_mask(request, qos.name))
        rule_ids = tuple(r.id for r in matched)
        if request.data_class in self.residency_data_classes and not _constrains_zones(requirement):
            raise EntitlementError(
                "residency", ent.holder, request.data_class, "a rule that keeps it in a zone",
                f"data_classes.{request.data_class}.requires_residency",
            )  # fmt: skip
        decision = EntitlementDecision(
            ent.holder, "clamped" if clamped else "granted", tuple(clamped), asked.name, qos.name,
            float(request.budget_ms) if request.budget_ms is not None else None, limit if limit < math.inf else None,
            tuple(sorted(ent.classes)), tuple(dict.fromkeys((ent.classes_rule, limit_rule))),
        )  # fmt: skip
        if clamped:
            rule_ids = (*rule_ids, decision.rule_id)
        return (qos, budget, stages, rule_ids, matched, requirement, class_source, budget_source, decision,
                stage_share, workflow_total)  # fmt: skip

    def _tenant_and_workflow(self, request: RequestMeta) -> tuple[Any, Any]:
        """The request's tenant and workflow entries (``None`` when it names none); ``PolicyError`` for an
        unknown one (an unknown tenant is anonymous when the policy defines no tenants)."""
        tenant = workflow = None
        if request.tenant is not None:
            tenant = self.tenants.get(request.tenant)
            if tenant is None and self.tenants:
                raise PolicyError(f"unknown tenant {request.tenant!r} (policy {self.name} {self.version})")
        if request.workflow is not None:
            workflow = self.workflows.get(request.workflow)
            if workflow is None:
                raise PolicyError(f"unknown workflow {request.workflow!r} (policy {self.name} {self.version})")
        return tenant, workflow

    def _asked_class(self, request: RequestMeta, tenant: Any, workflow: Any) -> tuple[QosClass, str]:
        """The class asked for and where it came from: the request, its workflow, its tenant, the default."""
        if request.qos is not None:
            cls_name, class_source = request.qos, "request"
        elif workflow is not None and self.spec.workflows[workflow.name].qos_class is not None:
            cls_name, class_source = workflow.qos_class, f"workflow:{workflow.name}"
        elif tenant is not None and tenant.qos_class is not None:
            cls_name, class_source = tenant.qos_class, f"tenant:{tenant.name}"
        else:
            cls_name, class_source = self.default_class, "default"
        qos = self.classes.get(cls_name)
        if qos is None:
            raise PolicyError(f"unknown QoS class {cls_name!r}; defined: {', '.join(self.classes)}")
        return qos, class_source

    def _stage_budget(
        self, request: RequestMeta, workflow: Any, budget: float, budget_source: str
    ) -> tuple[tuple[StageBudget, ...], float | None, float | None, float, str]:
        """``(stages, stage_share, workflow_total, budget, budget_source)``: the workflow's stage budgets
        scaled to ``budget`` and, for a request naming a stage, that stage's budget out of it."""
        stages: tuple[StageBudget, ...] = ()
        if workflow is not None:
            stages = workflow.stages
            if budget != workflow.budget_ms:
                scale = budget / workflow.budget_ms
                stages = tuple(StageBudget(s.name, s.budget_ms * scale) for s in stages)
        if request.stage is None:
            return stages, None, None, budget, budget_source
        if workflow is None:
            raise PolicyError(f"stage {request.stage!r} given without a workflow")
        names = tuple(s.name for s in stages)
        if request.stage not in names:
            raise PolicyError(f"unknown stage {request.stage!r} of workflow {workflow.name!r}")
        # One stage-budget rule (_budget.StagePlan): out of a workflow run, the stage gets its share
        # of what the run has left when the earlier stages used exactly their nominal budgets.
        plan = StagePlan(budget, names, tuple(s.budget_ms for s in stages))
        stage_share = plan.share(request.stage)
        return (stages, stage_share, budget, plan.remaining_at(request.stage) * stage_share,
                f"{budget_source}/stage:{request.stage}")  # fmt: skip

    def _request_mask(self, request: RequestMeta, qos_name: str) -> int:
        """The bit mask of the rules whose match covers ``request`` in class ``qos_name``."""
        if request.tenant is None:
            mask = self._tenant_unknown_mask
        else:
            mask = self._tenant_masks.get(request.tenant, self._tenant_unknown_mask)
        mask &= self._class_table.get(qos_name, self._class_wild)
        mask &= self._workflow_table.get(request.workflow, self._workflow_wild)
        mask &= self._data_table.get(request.data_class, self._data_wild)
        if mask:
            mask &= self._model_mask(request.model) if request.model is not None else self._model_wild
        return mask

    def unsatisfiable_rules(self, nodes: Iterable[NodeAttrs]) -> list[dict[str, Any]]:
        """The placement rules no node of ``nodes`` satisfies: every request they match is refused with
        ``NoEligibleNode`` on this cluster. Each: ``{"rule_id", "require", "hint"}``, the hint saying what
        label a node would need (``ray start --labels zone=eu-west``; KubeRay ``rayStartParams``)."""
        nodes = list(nodes)
        out = []
        for rule in self.rules:
            if rule.require.empty or any(rule.require.holds(n) for n in nodes):
                continue
            out.append({"rule_id": rule.id, "require": rule.require.describe(), "hint": _label_hint(rule.require)})
        return out

    def uncovered_shapes(self) -> list[dict[str, Any]]:
        """Request shapes a regulated data class (``requires_residency``) leaves uncovered, so refused at
        run time: ``{"data_class", "tenant", "workflow", "class"}`` (``None``: a request naming none, which
        for ``tenant`` means anonymous), over every tenant (and none), workflow (and none) and class, for
        requests that name no model (a rule matching on ``model`` covers only requests naming one)."""
        out: list[dict[str, Any]] = []
        tenants: list[str | None] = [None, *self.tenants]
        workflows: list[str | None] = [None, *self.workflows]
        for data_class in sorted(self.residency_data_classes):
            for tenant in tenants:
                for workflow in workflows:
                    for qos in self.classes:
                        meta = RequestMeta(qos=qos, tenant=tenant, workflow=workflow, data_class=data_class)
                        try:
                            self.classify(meta, 0.0, check_entitlement=False)
                        except EntitlementError:
                            out.append({"data_class": data_class, "tenant": tenant, "workflow": workflow,
                                        "class": qos})  # fmt: skip
        return out

    def unplaceable_shapes(self) -> list[dict[str, Any]]:
        """Request shapes (tenant or none, class, workflow or none, data class the policy names or none)
        whose matched rules no node can satisfy together (``semantics.selectors_compatible``): such
        requests are refused with ``NoEligibleNode`` / ``NoEligibleReplica`` on every cluster. Each:
        ``{"tenant", "class", "workflow", "data_class", "rule_ids", "conflict"}`` (the attribute with no
        possible value) and ``rule_ids`` (the matched rules that constrain it). Requests naming a model can
        add rules; those are not enumerated."""
        from agentic_ray.policies.semantics import selectors_compatible

        data_classes = {None, *self.spec.data_classes}
        for rule in self.spec.rules:
            data_classes.update(rule.match.data_class or ())
        specs = {r.id: r.require for r in self.spec.rules}
        out: list[dict[str, Any]] = []
        for tenant in [None, *self.tenants]:
            for workflow in [None, *self.workflows]:
                for qos in self.classes:
                    for data_class in sorted(data_classes, key=lambda d: d or ""):
                        meta = RequestMeta(qos=qos, tenant=tenant, workflow=workflow, data_class=data_class)
                        try:
                            c = self.classify(meta, 0.0, check_entitlement=False)
                        except PolicyError:
                            continue
                        rule_ids = tuple(i for i in c.rule_ids if i in specs)
                        conflict = selectors_compatible([specs[i] for i in rule_ids])
                        if conflict is None:
                            continue
                        involved = [i for i in rule_ids if _constrains(specs[i], conflict)]
                        out.append({"tenant": tenant, "class": qos, "workflow": workflow, "data_class": data_class,
                                    "rule_ids": involved, "conflict": conflict})  # fmt: skip
        return out

    # -- forms ---------------------------------------------------------------------------------------
    def replica_cost(self, accelerator: str) -> float:
        """Cost per replica-second of a replica on ``accelerator`` (the policy's ``costs``; without an
        entry: 1 for ``cpu``, 2 for anything else, the tie-break used before costs were declared)."""
        cost = self.costs.get(accelerator)
        if cost is not None:
            return cost
        return 1.0 if accelerator == "cpu" else 2.0

    def canonical(self) -> dict[str, Any]:
        """The canonical form: every field with defaults filled, YAML key names (hashed with sorted keys)."""
        doc: dict[str, Any] = json.loads(self._canonical_json)
        return doc

    def to_yaml(self) -> str:
        """The canonical form as YAML (sorted keys)."""
        import yaml

        return yaml.safe_dump(self.canonical(), sort_keys=True)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_policy, (self._canonical_json, self.source))

    def __repr__(self) -> str:
        return f"Policy(name={self.name!r}, version={self.version!r}, rules={len(self.rules)})"


def _drop_unset_stream_budgets(canonical: dict[str, Any]) -> None:
    """Leave unset ``ttft_ms`` / ``tpot_ms`` out of the canonical form, so a policy that sets no token
    budget keeps the content hash (and so the version) it had before classes could set them."""
    for cls in canonical.get("classes", {}).values():
        for key in ("ttft_ms", "tpot_ms"):
            if cls.get(key, 0) is None:
                del cls[key]


def _constrains(selector: NodeSelectorSpec, attribute: str) -> bool:
    """Does a rule's ``require`` constrain ``attribute`` (``zones``/``zone_prefix`` both constrain the zone)?"""
    if attribute in ("zones", "zone_prefix"):
        return selector.zones is not None or selector.zone_prefix is not None
    if attribute == "accelerators":
        return selector.accelerators is not None
    return attribute.startswith("labels.") and attribute[7:] in (selector.labels or {})


def _constrains_zones(requirement: _Requirement | None) -> bool:
    """True when the matched rules keep a request inside named zones (``zones`` or ``zone_prefix``)."""
    return requirement is not None and (requirement.zones is not None or bool(requirement.prefix_groups))


def _rebuild_policy(canonical_json: str, source: str | None) -> Policy:
    return Policy(PolicySpec.model_validate(json.loads(canonical_json)), source)


def _label_hint(require: NodeSelector) -> str:
    """What one node would need to satisfy ``require`` (a ``NodeSelector``), as ``ray start`` labels."""
    labels = []
    if require.zones is not None:
        labels.append(f"zone={sorted(require.zones)[0]}" if require.zones else "zone=<none possible>")
    elif require.zone_prefixes is not None:
        labels.append(f"zone={require.zone_prefixes[0]}<name>")
    if require.accelerators is not None:
        labels.append(
            f"accelerator={sorted(require.accelerators)[0]}" if require.accelerators else "accelerator=<none>"
        )
    labels += [f"{key}={sorted(values)[0]}" for key, values in require.labels if values]
    return "label a node " + ",".join(labels) + f" (ray start --labels {','.join(labels)})"
