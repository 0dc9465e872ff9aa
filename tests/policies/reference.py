"""A slow, obviously-correct interpreter of the policy semantics, for the differential test.

It reads the pydantic ``PolicySpec`` directly (not the compiled tables) and evaluates every rule with a
plain loop, exactly as the documentation states the semantics:

- a rule matches when every ``match`` field it gives holds; a field whose request attribute is absent
  does not hold; ``model`` and ``tenant_region`` are ``fnmatchcase`` globs; ``class`` is the resolved class;
- ``allows(node)``: every ``require`` part of every matched rule holds; ``prefers``: count of ``prefer``
  parts that hold, summed over the matched rules;
- a stage outside a workflow run gets ``remaining * nominal_i / sum(nominal_j, j >= i)`` of the workflow
  budget, ``remaining`` being the budget less the earlier stages' nominal budgets (the last stage: all of
  ``remaining``);
- entitlements as ``agentic_ray/policies/entitlements.py`` states them: the class must be one the caller
  may use (refused, or clamped to the most important allowed class no more important than the one
  asked for); a requested budget may not exceed the class's (or workflow's) budget unless the class
  sets ``max_budget_ms``, nor the caller's ``max_budget_ms``, which also caps every budget; a clamp adds
  the rule id ``entitlement:<holder>``; a data class requiring residency that no matched rule keeps in
  zones is refused;
- a class's token budgets (``ttft_ms``, ``tpot_ms``) are the granted class's, as written (None when unset).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from agentic_ray.errors import EntitlementError, PolicyError
from agentic_ray.policies.schema import NodeSelectorSpec, PolicySpec
from agentic_ray.policies.types import NodeAttrs, RequestMeta


def reference_classify(spec: PolicySpec, request: RequestMeta, now: float) -> dict[str, Any]:
    tenant = None
    if request.tenant is not None:
        if request.tenant in spec.tenants:
            tenant = spec.tenants[request.tenant]
        elif spec.tenants:
            raise PolicyError(f"unknown tenant {request.tenant}")
    workflow = None
    if request.workflow is not None:
        if request.workflow not in spec.workflows:
            raise PolicyError(f"unknown workflow {request.workflow}")
        workflow = spec.workflows[request.workflow]

    if request.qos is not None:
        class_name = request.qos
    elif workflow is not None and workflow.qos_class is not None:
        class_name = workflow.qos_class
    elif tenant is not None and tenant.qos_class is not None:
        class_name = tenant.qos_class
    else:
        class_name = spec.default_class
    if class_name not in spec.classes:
        raise PolicyError(f"unknown class {class_name}")

    # Entitlement: a known tenant's, else anonymous.
    prio = {n: c.priority for n, c in spec.classes.items()}
    if tenant is not None:
        holder = f"tenant:{request.tenant}"
        allowed = tenant.allowed_classes
        base = tenant.qos_class or spec.default_class
        holder_max = tenant.max_budget_ms
        mode = tenant.on_excess or spec.entitlements.on_excess
    else:
        holder = "anonymous"
        allowed = spec.entitlements.anonymous.allowed_classes
        base = spec.default_class
        holder_max = spec.entitlements.anonymous.max_budget_ms
        mode = spec.entitlements.on_excess
    if allowed is None:
        allowed = [n for n in spec.classes if prio[n] >= prio[base]]
    clamped = False
    if class_name not in allowed:
        if mode != "clamp":
            raise EntitlementError("class", holder, class_name, sorted(allowed), "-")
        ordered = sorted(allowed, key=lambda n: (prio[n], n))
        below = [n for n in ordered if prio[n] >= prio[class_name]]
        class_name = below[0] if below else ordered[-1]
        clamped = True

    workflow_budget = None
    if workflow is not None:
        workflow_budget = workflow.budget_ms
        if workflow_budget is None:
            workflow_budget = spec.classes[workflow.qos_class or spec.default_class].budget_ms

    granted = spec.classes[class_name]
    base_ms = workflow_budget if workflow is not None else granted.budget_ms
    limit = max(granted.max_budget_ms, base_ms) if granted.max_budget_ms is not None else base_ms
    if holder_max is not None:
        limit = min(limit, holder_max)
    if request.budget_ms is not None:
        budget = request.budget_ms
        if budget > limit:
            if mode != "clamp":
                raise EntitlementError("budget", holder, budget, limit, "-")
            budget = limit
            clamped = True
    elif workflow is not None:
        budget = workflow_budget
    else:
        budget = granted.budget_ms
    if holder_max is not None and budget > holder_max:
        budget = holder_max

    stages = []
    if workflow is not None:
        for stage in workflow.stages:
            base = stage.budget_ms if stage.budget_ms is not None else stage.share * workflow_budget
            stages.append((stage.name, base * budget / workflow_budget))
    if request.stage is not None:
        if workflow is None:
            raise PolicyError("stage without workflow")
        names = [name for name, _ in stages]
        if request.stage not in names:
            raise PolicyError(f"unknown stage {request.stage}")
        i = names.index(request.stage)
        nominal = [b for _, b in stages]
        remaining = budget - sum(nominal[:i])  # earlier stages took exactly their nominal budgets
        later = sum(nominal[i:])
        budget = remaining if i == len(nominal) - 1 or later <= 0 else remaining * nominal[i] / later

    region = tenant.region if tenant is not None else None
    rule_ids = []
    for rule in spec.rules:
        m = rule.match
        ok = True
        if m.tenant is not None and request.tenant not in m.tenant:
            ok = False
        if m.tenant_region is not None and (region is None or not any(fnmatchcase(region, p) for p in m.tenant_region)):
            ok = False
        if m.data_class is not None and request.data_class not in m.data_class:
            ok = False
        if m.model is not None and (request.model is None or not any(fnmatchcase(request.model, p) for p in m.model)):
            ok = False
        if m.workflow is not None and request.workflow not in m.workflow:
            ok = False
        if m.qos_class is not None and class_name not in m.qos_class:
            ok = False
        if ok:
            rule_ids.append(rule.id)
    residency = {n for n, d in spec.data_classes.items() if d.requires_residency}
    if request.data_class in residency:
        by_id = {r.id: r for r in spec.rules}
        if not any(by_id[i].require.zones is not None or by_id[i].require.zone_prefix is not None for i in rule_ids):
            raise EntitlementError("residency", holder, request.data_class, "-", "-")
    if clamped:
        rule_ids.append(f"entitlement:{holder}")
    return {
        "class": class_name,
        "budget_ms": float(budget),
        "deadline": now + budget / 1000.0,
        "stages": stages,
        "rule_ids": rule_ids,
        "ttft_ms": spec.classes[class_name].ttft_ms,
        "tpot_ms": spec.classes[class_name].tpot_ms,
    }


def _parts(sel: NodeSelectorSpec, node: NodeAttrs) -> list[bool]:
    out = []
    if sel.zones is not None:
        out.append(node.zone in sel.zones)
    if sel.zone_prefix is not None:
        out.append(any(node.zone.startswith(p) for p in sel.zone_prefix))
    if sel.accelerators is not None:
        out.append(node.accelerator in sel.accelerators)
    for key, values in (sel.labels or {}).items():
        out.append(key in node.labels and node.labels[key] in values)
    return out


def reference_allows(spec: PolicySpec, rule_ids: list[str], node: NodeAttrs) -> bool:
    rules = {r.id: r for r in spec.rules}
    return all(all(_parts(rules[i].require, node)) for i in rule_ids if i in rules)  # not entitlement ids


def reference_prefers(spec: PolicySpec, rule_ids: list[str], node: NodeAttrs) -> int:
    rules = {r.id: r for r in spec.rules}
    return sum(sum(_parts(rules[i].prefer, node)) for i in rule_ids if i in rules)
