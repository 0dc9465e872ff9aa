"""What changed in meaning between two policies (not a text diff).

Both policies are compared in canonical form (defaults filled, so writing a default explicitly is no
change). Keyed sections (classes, tenants, workflows, admission classes) and rules (keyed by ``id``, so
reordering is reported as ``reordered``, not as removed+added) are compared entry by entry; within an
entry every leaf field that differs is one ``changed`` item with its dotted path, old and new value.
Free-text fields (``description``) are ignored; ``metadata.name``/``version`` changes are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentic_ray.policies.compiler import Policy

__all__ = ["PolicyChange", "classify_risk", "diff_policies"]


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One change in meaning. ``kind`` is ``added``, ``removed``, ``changed`` or ``reordered``."""

    kind: str
    path: str
    old: Any
    new: Any
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "old": self.old, "new": self.new, "summary": self.summary}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "description"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _leaves(old: Any, new: Any, path: str, out: list[PolicyChange]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            if key not in old:
                if new[key] is not None:
                    out.append(PolicyChange("added", sub, None, new[key], f"{sub} set to {new[key]!r}"))
            elif key not in new:
                if old[key] is not None:
                    out.append(PolicyChange("removed", sub, old[key], None, f"{sub} removed (was {old[key]!r})"))
            else:
                _leaves(old[key], new[key], sub, out)
    elif old != new:
        out.append(PolicyChange("changed", path, old, new, f"{path}: {old!r} -> {new!r}"))


def _keyed(section: str, old: dict[str, Any], new: dict[str, Any], what: str, out: list[PolicyChange]) -> None:
    for key in sorted(set(old) | set(new)):
        path = f"{section}.{key}"
        if key not in old:
            out.append(PolicyChange("added", path, None, new[key], f"{what} {key!r} added"))
        elif key not in new:
            out.append(PolicyChange("removed", path, old[key], None, f"{what} {key!r} removed"))
        else:
            _leaves(old[key], new[key], path, out)


def diff_policies(old: Policy, new: Policy) -> list[PolicyChange]:
    """Every change in meaning from ``old`` to ``new``; empty when they mean the same."""
    a, b = _strip(old.canonical()), _strip(new.canonical())
    out: list[PolicyChange] = []
    for field in ("name", "version"):
        if a["metadata"].get(field) != b["metadata"].get(field):
            path = f"metadata.{field}"
            was, now = a["metadata"].get(field), b["metadata"].get(field)
            out.append(PolicyChange("changed", path, was, now, f"{path}: {was!r} -> {now!r}"))
    if a["default_class"] != b["default_class"]:
        out.append(PolicyChange("changed", "default_class", a["default_class"], b["default_class"],
                                f"default class {a['default_class']!r} -> {b['default_class']!r}"))  # fmt: skip
    _keyed("classes", a["classes"], b["classes"], "class", out)
    _keyed("tenants", a["tenants"], b["tenants"], "tenant", out)
    _keyed("workflows", a["workflows"], b["workflows"], "workflow", out)
    rules_a = {r["id"]: r for r in a["rules"]}
    rules_b = {r["id"]: r for r in b["rules"]}
    _keyed("rules", rules_a, rules_b, "rule", out)
    common_a = [r for r in rules_a if r in rules_b]
    common_b = [r for r in rules_b if r in rules_a]
    if common_a != common_b:
        out.append(PolicyChange("reordered", "rules", common_a, common_b, "rule order changed"))
    _keyed("admission.classes", a["admission"]["classes"], b["admission"]["classes"], "admission for class", out)
    _leaves(a["admission"]["breaker"], b["admission"]["breaker"], "admission.breaker", out)
    _leaves(a["admission"]["retry"], b["admission"]["retry"], "admission.retry", out)
    _leaves(a.get("entitlements", {}), b.get("entitlements", {}), "entitlements", out)
    _keyed("data_classes", a.get("data_classes", {}), b.get("data_classes", {}), "data class", out)
    return out


def _zone_requirement(rule: Any) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    return rule.require.zones, (frozenset(rule.require.zone_prefixes) if rule.require.zone_prefixes else None)


def _residency_risks(old: Policy, new: Policy) -> list[str]:
    out: list[str] = []
    new_rules = {r.id: r for r in new.rules}
    for rule in old.rules:
        zones, prefixes = _zone_requirement(rule)
        if zones is None and prefixes is None:
            continue
        after = new_rules.get(rule.id)
        if after is None:
            out.append(f"residency rule {rule.id!r} removed")
            continue
        new_zones, new_prefixes = _zone_requirement(after)
        same_match = (rule.tenants, rule.tenant_regions, rule.data_classes, rule.models, rule.workflows,
                      rule.classes) == (after.tenants, after.tenant_regions, after.data_classes, after.models,
                                        after.workflows, after.classes)  # fmt: skip
        tighter_zones = zones is None or (new_zones is not None and new_zones <= zones)
        tighter_prefixes = prefixes is None or (new_prefixes is not None and new_prefixes <= prefixes)
        if not (same_match and tighter_zones and tighter_prefixes):
            out.append(f"residency rule {rule.id!r} loosened (its match or its zones changed)")
    for name in sorted(old.residency_data_classes - new.residency_data_classes):
        out.append(f"data class {name!r} no longer requires residency")
    return out


def _entitlement_risks(old: Policy, new: Policy) -> list[str]:
    out: list[str] = []
    for tenant in [None, *sorted(new.tenants)]:
        before = old.entitlement_of(tenant if tenant in old.tenants else None)
        after = new.entitlement_of(tenant)
        who = f"tenant {tenant!r}" if tenant is not None else "anonymous callers"
        if tenant is not None and tenant not in old.tenants:
            who += " (new; compared with what anonymous callers had)"
        gained = sorted(after.classes - before.classes)
        if gained:
            out.append(f"{who} may now use class(es) {', '.join(gained)}")
        cap_before, cap_after = before.max_budget_ms, after.max_budget_ms
        if cap_after is None and cap_before is not None:
            out.append(f"{who}: budget cap {cap_before:g} ms removed")
        elif cap_after is not None and cap_before is not None and cap_after > cap_before:
            out.append(f"{who}: budget cap raised {cap_before:g} -> {cap_after:g} ms")
    for name, cls in new.classes.items():
        was = old.classes.get(name)
        if was is None:
            continue
        old_max = was.max_budget_ms if was.max_budget_ms is not None else was.budget_ms
        new_max = cls.max_budget_ms if cls.max_budget_ms is not None else cls.budget_ms
        if cls.max_budget_ms is not None and new_max > old_max:
            out.append(f"class {name!r}: requests may now ask for up to {new_max:g} ms (was {old_max:g})")
    return out


def _budget_risks(old: Policy, new: Policy, fraction: float) -> list[str]:
    out: list[str] = []
    for section, before, after in (("class", old.classes, new.classes), ("workflow", old.workflows, new.workflows)):
        for name, item in after.items():
            was = before.get(name)
            if was is not None and item.budget_ms > was.budget_ms * (1.0 + fraction):
                out.append(f"{section} {name!r} budget raised {was.budget_ms:g} -> {item.budget_ms:g} ms "
                           f"(over {fraction:.0%})")  # fmt: skip
    return out


def classify_risk(
    changes: list[PolicyChange], old: Policy, new: Policy, budget_raise_fraction: float = 0.5
) -> list[str]:
    """Why the change from ``old`` to ``new`` is risky (empty when it is not): a residency rule removed or
    loosened (its match or its zones changed other than by narrowing the zones), a data class that no
    longer requires residency, an entitlement widened (a caller may use more classes, a longer budget),
    or a class or workflow budget raised by more than ``budget_raise_fraction``. Risky changes need two
    signatures (``signing.verify_bundle``). ``changes`` (``diff_policies``) short-cut an identical policy."""
    if not changes:
        return []
    return [*_residency_risks(old, new), *_entitlement_risks(old, new), *_budget_risks(old, new, budget_raise_fraction)]
