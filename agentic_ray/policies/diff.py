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

__all__ = ["PolicyChange", "diff_policies"]


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


def _keyed(section: str, old: dict, new: dict, what: str, out: list[PolicyChange]) -> None:
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
    return out
