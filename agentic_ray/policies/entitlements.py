"""Entitlements: what each caller may ask for. A policy that says nothing grants nothing extra.

A caller is a tenant the policy names, or ``anonymous`` (a request that names no tenant, or names one a
policy without a tenant list does not know). Each holds an ``EntitlementSet``:

- **classes**: the tenant's ``allowed_classes``; by default its ``class`` (without one, the policy's
  ``default_class``) and every class of lower priority (a larger priority number). Anonymous callers get
  ``entitlements.anonymous.allowed_classes``, by default the default class and lower.
- **budget**: a request may shorten its class's budget, never lengthen it, unless the class sets
  ``max_budget_ms`` (the most a request of the class may ask for); a workflow's budget plays the class
  budget's part for its requests. A tenant's (or anonymous) ``max_budget_ms`` caps every budget it gets.

A request beyond its entitlement is refused with ``EntitlementError`` (HTTP 403), or, where the policy
says ``on_excess: clamp`` (per tenant, else ``entitlements.on_excess``), given what it is entitled to:
the most important allowed class no more important than the one it asked for, the longest allowed
budget. Either way the classification records it (``EntitlementDecision``; a clamp adds the rule id
``entitlement:<holder>``, so every decision record names it).

Regulated data fails closed: a data class with ``requires_residency`` that no matched rule constrains to
zones (``zones`` or ``zone_prefix``) is refused (``EntitlementError``, entitlement ``residency``) whatever
the mode. ``uncovered_shapes`` lists the request shapes (tenant, class, workflow) a policy leaves so,
for ``policy check``. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agentic_ray.errors import EntitlementError
from agentic_ray.policies.types import QosClass

__all__ = ["EntitlementDecision", "EntitlementSet", "clamp_class", "default_classes", "request_budget_limit"]


@dataclass(frozen=True, slots=True)
class EntitlementSet:
    """One caller's entitlement. ``classes_rule`` / ``budget_rule`` are the policy paths that set it."""

    holder: str
    classes: frozenset[str]
    classes_rule: str
    max_budget_ms: float | None
    budget_rule: str | None
    on_excess: str  # "refuse" | "clamp"


@dataclass(frozen=True, slots=True)
class EntitlementDecision:
    """How a request's entitlement was applied: ``verdict`` ``granted`` (as asked) or ``clamped``
    (``clamped`` names the fields: ``class``, ``budget``); the figures asked for and allowed, and the
    policy paths that decided (``rules``)."""

    holder: str
    verdict: str
    clamped: tuple[str, ...]
    requested_class: str | None
    granted_class: str
    requested_budget_ms: float | None
    budget_limit_ms: float | None
    allowed_classes: tuple[str, ...]
    rules: tuple[str, ...]

    @property
    def rule_id(self) -> str:
        """The id a clamp adds to the classification's rule ids."""
        return f"entitlement:{self.holder}"

    def to_dict(self) -> dict[str, object]:
        return {
            "holder": self.holder,
            "verdict": self.verdict,
            "clamped": list(self.clamped),
            "requested_class": self.requested_class,
            "granted_class": self.granted_class,
            "requested_budget_ms": self.requested_budget_ms,
            "budget_limit_ms": self.budget_limit_ms,
            "allowed_classes": list(self.allowed_classes),
            "rules": list(self.rules),
        }


def default_classes(base: str, classes: Mapping[str, QosClass]) -> frozenset[str]:
    """``base`` and every class of lower priority (a priority number at least ``base``'s)."""
    floor = classes[base].priority
    return frozenset(name for name, c in classes.items() if c.priority >= floor)


def clamp_class(ent: EntitlementSet, cls: QosClass, classes: Mapping[str, QosClass]) -> QosClass:
    """The class a request of ``cls`` gets under ``ent`` (``cls`` itself when allowed). Over the
    entitlement: ``EntitlementError`` (refuse), or the most important allowed class no more important
    than ``cls`` (clamp; failing that, the least important allowed class)."""
    if cls.name in ent.classes:
        return cls
    if ent.on_excess != "clamp" or not ent.classes:
        raise EntitlementError("class", ent.holder, cls.name, sorted(ent.classes), ent.classes_rule)
    allowed = sorted((classes[n] for n in ent.classes), key=lambda c: (c.priority, c.name))
    below = [c for c in allowed if c.priority >= cls.priority]
    return below[0] if below else allowed[-1]


def request_budget_limit(ent: EntitlementSet, cls: QosClass, base_ms: float) -> tuple[float, str]:
    """The longest budget a request of ``cls`` may ask for (``base_ms``: the class's or its workflow's
    budget) and the policy path that sets it."""
    if cls.max_budget_ms is not None:
        limit, rule = max(cls.max_budget_ms, base_ms), f"classes.{cls.name}.max_budget_ms"
    else:
        limit, rule = base_ms, f"classes.{cls.name}.budget_ms (a request may shorten it, not lengthen it)"
    if ent.max_budget_ms is not None and ent.max_budget_ms < limit:
        limit, rule = ent.max_budget_ms, ent.budget_rule or rule
    return limit, rule
