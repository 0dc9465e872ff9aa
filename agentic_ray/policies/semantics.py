"""Meaning checks on a schema-valid policy: references, budgets that must fit, contradictory rules.

``check_semantics(spec)`` returns every ``(field_path, reason)`` it finds (it never stops at the first):

- ``default_class``, a tenant's or workflow's ``class``, rule ``match`` names and ``admission.classes``
  keys must name defined classes, tenants and workflows;
- a stage has exactly one of ``share`` / ``budget_ms``; stage names are unique; the stages fit the
  workflow budget: ``sum(budget_ms) + sum(share) * B <= B`` (B: the workflow's, else its class's budget);
- a class's ``max_queue_wait_ms`` and ``hedge_after_ms`` are below its ``budget_ms``, its ``max_budget_ms``
  not below it, its ``ttft_ms`` (the first token of a stream) not above it; ``allowed_classes`` (of a
  tenant, of anonymous callers) name defined classes;
- rule ids are unique;
- the ``actions`` rules (``actions.check_actions``): unique ids, each action's own parameters only, defined
  classes, workflows and stages, each problem naming its rule;
- statically visible contradictions: a rule whose own requirements no node can meet, or two rules where
  one *covers* the other (it matches every request the other matches) and their requirements on zone,
  accelerator or a label are disjoint, so the covered rule can never be satisfied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from agentic_ray.policies.schema import MatchSpec, NodeSelectorSpec, PolicySpec, RuleSpec

__all__ = ["check_references_raw", "check_semantics", "selectors_compatible"]

PathKey = tuple[str | int, ...]
_EPS = 1e-9


def _zone_ok(zones: Iterable[str] | None, prefix_groups: list[tuple[str, ...]]) -> bool:
    """Is there a zone in ``zones`` (any string when None) starting with one prefix of every group?"""
    if zones is not None:
        return any(all(z.startswith(g) for g in prefix_groups) for z in zones)
    # Any string: the chosen prefixes must form a chain (each a prefix of the longest).
    groups = [tuple(g) for g in prefix_groups]
    if not groups:
        return True
    for candidate in {p for g in groups for p in g}:
        if all(any(candidate.startswith(p) for p in g) for g in groups):
            return True
    return False


def selectors_compatible(selectors: list[NodeSelectorSpec]) -> str | None:
    """``None`` when some node can satisfy every selector; else the attribute with no possible value."""
    zone_sets = [set(s.zones) for s in selectors if s.zones is not None]
    zones: set[str] | None = set.intersection(*zone_sets) if zone_sets else None
    if zones is not None and not zones:
        return "zones"
    prefixes = [tuple(s.zone_prefix) for s in selectors if s.zone_prefix is not None]
    if not _zone_ok(zones, prefixes):
        return "zone_prefix"
    acc_sets = [set(s.accelerators) for s in selectors if s.accelerators is not None]
    if acc_sets and not set.intersection(*acc_sets):
        return "accelerators"
    label_sets: dict[str, list[set[str]]] = {}
    for s in selectors:
        for key, values in (s.labels or {}).items():
            label_sets.setdefault(key, []).append(set(values))
    for key, sets in label_sets.items():
        if not set.intersection(*sets):
            return f"labels.{key}"
    return None


def _covers(general: MatchSpec, specific: MatchSpec, spec: PolicySpec) -> bool:
    """Does every request that ``specific`` matches also match ``general``? (conservative: may say no)."""
    for field in ("tenant", "data_class", "model", "workflow", "qos_class"):
        g, s = getattr(general, field), getattr(specific, field)
        if g is not None and (s is None or not set(s) <= set(g)):
            return False
    if general.tenant_region is not None:
        g = general.tenant_region
        if specific.tenant_region is not None and set(specific.tenant_region) <= set(g):
            return True
        if specific.tenant is None:
            return False
        for name in specific.tenant:
            tenant = spec.tenants.get(name)
            if tenant is None or not any(fnmatchcase(tenant.region, pat) for pat in g):
                return False
    return True


def _check_rules(spec: PolicySpec, out: list[tuple[PathKey, str]]) -> None:
    seen: dict[str, int] = {}
    for i, rule in enumerate(spec.rules):
        if rule.id in seen:
            out.append((("rules", i, "id"), f"duplicate rule id {rule.id!r} (first at rules[{seen[rule.id]}])"))
        else:
            seen[rule.id] = i
        m = rule.match
        for field, key, defined, what in (
            ("tenant", "tenant", spec.tenants, "tenant"),
            ("workflow", "workflow", spec.workflows, "workflow"),
            ("qos_class", "class", spec.classes, "class"),
        ):
            for j, name in enumerate(getattr(m, field) or ()):
                if name not in defined:
                    out.append((("rules", i, "match", key, j), f"undefined {what} {name!r}"))
        bad = selectors_compatible([rule.require])
        if bad is not None:
            out.append((("rules", i, "require", bad.split(".")[0]), f"no node can satisfy this rule's {bad}"))
    _check_contradictions(spec, out)


_PAIRWISE_LIMIT = 1000  # rules with requirements; above it only identical selectors are compared


def _check_contradictions(spec: PolicySpec, out: list[tuple[PathKey, str]]) -> None:
    # Only rules that require something can contradict; each is checked alone before pairing.
    indexed = [
        (i, r)
        for i, r in enumerate(spec.rules)
        if r.require != NodeSelectorSpec() and selectors_compatible([r.require]) is None
    ]
    if len(indexed) <= _PAIRWISE_LIMIT:
        groups = [indexed]
    else:  # O(n): compare only rules whose match blocks are identical
        by_match: dict[str, list[tuple[int, RuleSpec]]] = {}
        for i, r in indexed:
            by_match.setdefault(r.match.model_dump_json(), []).append((i, r))
        groups = list(by_match.values())
    for group in groups:
        _check_group(spec, group, out)


def _check_group(spec: PolicySpec, group: list[tuple[int, RuleSpec]], out: list[tuple[PathKey, str]]) -> None:
    for j, specific in group:
        for i, general in group:
            if i == j or not _covers(general.match, specific.match, spec):
                continue
            if i > j and _covers(specific.match, general.match, spec):
                continue  # identical selectors: report once, on the later rule
            bad = selectors_compatible([general.require, specific.require])
            if bad is not None:
                out.append(
                    (
                        ("rules", j, "require", bad.split(".")[0]),
                        f"contradicts rule {general.id!r} (rules[{i}]), which matches every request this "
                        f"rule matches: no node satisfies both on {bad}",
                    )
                )


def check_semantics(spec: PolicySpec) -> list[tuple[PathKey, str]]:
    """Every meaning problem in ``spec`` as ``(field_path, reason)``; empty when the policy is sound."""
    out: list[tuple[PathKey, str]] = []
    if spec.default_class not in spec.classes:
        out.append((("default_class",), f"undefined class {spec.default_class!r}"))
    _check_classes(spec, out)
    _check_class_refs(spec, out)
    for name in spec.workflows:
        _check_workflow(spec, name, out)
    breaker = spec.admission.breaker
    if breaker.max_ejection_s < breaker.ejection_s:
        out.append((("admission", "breaker", "max_ejection_s"), "must be >= ejection_s"))
    _check_rules(spec, out)
    from agentic_ray.policies.actions import check_actions

    out.extend(check_actions(spec))
    return out


def _check_classes(spec: PolicySpec, out: list[tuple[PathKey, str]]) -> None:
    """Each class's limits against its own budget."""
    for name, cls in spec.classes.items():
        for field in ("max_queue_wait_ms", "hedge_after_ms"):
            value = getattr(cls, field)
            if value is not None and value >= cls.budget_ms:
                out.append((("classes", name, field), f"{value:g} must be below the class budget {cls.budget_ms:g}"))
    for name, cls in spec.classes.items():
        if cls.ttft_ms is not None and cls.ttft_ms > cls.budget_ms:
            reason = f"{cls.ttft_ms:g} is above the class budget {cls.budget_ms:g} (the whole stream's)"
            out.append((("classes", name, "ttft_ms"), reason))
        if cls.max_budget_ms is not None and cls.max_budget_ms < cls.budget_ms:
            out.append((("classes", name, "max_budget_ms"),
                        f"{cls.max_budget_ms:g} is below the class budget {cls.budget_ms:g}"))  # fmt: skip


def _check_class_refs(spec: PolicySpec, out: list[tuple[PathKey, str]]) -> None:
    """Class names used by tenants, entitlements and admission settings are defined."""
    classes = spec.classes
    for name, tenant in spec.tenants.items():
        if tenant.qos_class is not None and tenant.qos_class not in classes:
            out.append((("tenants", name, "class"), f"undefined class {tenant.qos_class!r}"))
        for j, allowed in enumerate(tenant.allowed_classes or ()):
            if allowed not in classes:
                out.append((("tenants", name, "allowed_classes", j), f"undefined class {allowed!r}"))
        for j, other in enumerate(tenant.act_for or ()):
            if other not in spec.tenants:
                out.append((("tenants", name, "act_for", j), f"undefined tenant {other!r}"))
    for j, allowed in enumerate(spec.entitlements.anonymous.allowed_classes or ()):
        if allowed not in classes:
            out.append((("entitlements", "anonymous", "allowed_classes", j), f"undefined class {allowed!r}"))
    for name in spec.admission.classes:
        if name not in classes:
            out.append((("admission", "classes", name), f"undefined class {name!r}"))


def _check_workflow(spec: PolicySpec, name: str, out: list[tuple[PathKey, str]]) -> None:
    wf = spec.workflows[name]
    cls_name = wf.qos_class or spec.default_class
    if wf.qos_class is not None and wf.qos_class not in spec.classes:
        out.append((("workflows", name, "class"), f"undefined class {wf.qos_class!r}"))
    budget = wf.budget_ms
    if budget is None and cls_name in spec.classes:
        budget = spec.classes[cls_name].budget_ms
    names: set[str] = set()
    fixed = 0.0
    shares = 0.0
    for k, stage in enumerate(wf.stages):
        path = ("workflows", name, "stages", k)
        if stage.name in names:
            out.append(((*path, "name"), f"duplicate stage name {stage.name!r}"))
        names.add(stage.name)
        if (stage.share is None) == (stage.budget_ms is None):
            out.append((path, "give exactly one of share or budget_ms"))
            continue
        fixed += stage.budget_ms or 0.0
        shares += stage.share or 0.0
    if shares > 1 + _EPS:
        out.append((("workflows", name, "stages"), f"stage shares add up to {shares:g}, over 1"))
    elif budget is not None and fixed + shares * budget > budget * (1 + _EPS):
        out.append(
            (
                ("workflows", name, "stages"),
                f"stages need {fixed + shares * budget:g} ms, over the workflow budget {budget:g} ms",
            )
        )


def check_references_raw(data: Mapping[str, Any]) -> list[tuple[PathKey, str]]:
    """Name checks that need no valid schema: run on the raw YAML data when the schema check failed, so
    that ``policy check`` still lists undefined classes/tenants/workflows and duplicate rule ids then.
    Anything of the wrong shape is skipped here (the schema check already reported it)."""
    out: list[tuple[PathKey, str]] = []

    def names(section: str) -> set[str] | None:
        value = data.get(section)
        return {str(k) for k in value} if isinstance(value, Mapping) else None

    classes, tenants, workflows = names("classes"), names("tenants"), names("workflows")

    def ref(path: PathKey, value: Any, defined: set[str] | None, what: str) -> None:
        if defined is not None and isinstance(value, str) and value not in defined:
            out.append((path, f"undefined {what} {value!r}"))

    ref(("default_class",), data.get("default_class"), classes, "class")
    for section in ("tenants", "workflows"):
        entries = data.get(section)
        if isinstance(entries, Mapping):
            for name, entry in entries.items():
                if isinstance(entry, Mapping):
                    ref((section, str(name), "class"), entry.get("class"), classes, "class")
    admission = data.get("admission")
    if isinstance(admission, Mapping) and isinstance(admission.get("classes"), Mapping):
        for name in admission["classes"]:
            ref(("admission", "classes", str(name)), str(name), classes, "class")
    defined = {"tenant": tenants or set(), "workflow": workflows or set(), "class": classes}
    for path, item, key in _raw_rule_refs(data.get("rules"), out):
        ref(path, item, defined[key], key)
    return out


def _raw_rule_refs(rules: Any, out: list[tuple[PathKey, str]]) -> list[tuple[PathKey, Any, str]]:
    """Duplicate rule ids of raw ``rules`` into ``out``; returns the names their matches use."""
    seen: dict[str, int] = {}
    found: list[tuple[PathKey, Any, str]] = []
    for i, rule in enumerate(rules if isinstance(rules, list) else ()):
        if not isinstance(rule, Mapping):
            continue
        rule_id = rule.get("id")
        if isinstance(rule_id, str) and rule_id in seen:
            out.append((("rules", i, "id"), f"duplicate rule id {rule_id!r} (first at rules[{seen[rule_id]}])"))
        elif isinstance(rule_id, str):
            seen[rule_id] = i
        match = rule.get("match")
        if isinstance(match, Mapping):
            found += _match_refs(i, match)
    return found


def _match_refs(i: int, match: Mapping[str, Any]) -> list[tuple[PathKey, Any, str]]:
    """``(path, name, kind)`` of each tenant, workflow or class name a raw rule's ``match`` uses."""
    found: list[tuple[PathKey, Any, str]] = []
    for key in ("tenant", "workflow", "class"):
        value = match.get(key)
        if isinstance(value, str):
            found.append((("rules", i, "match", key), value, key))
        elif isinstance(value, list):
            found.extend((("rules", i, "match", key, j), item, key) for j, item in enumerate(value))
    return found
