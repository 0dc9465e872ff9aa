"""Policies for tests and benchmarks: an existing policy with test-only grants.

Entitlements make a policy refuse what its callers are not entitled to; tests and benchmarks often want
to submit without a tenant, in every class, with long budgets (so a slow machine cannot fail them on
deadlines). ``with_test_grants`` returns the policy's YAML with exactly those grants added, and nothing
else changed::

    path.write_text(with_test_grants(Path("examples/policies/fraud.yaml").read_text()))
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["with_test_grants"]


def with_test_grants(policy_yaml: str, max_budget_ms: float = 600_000.0) -> str:
    """``policy_yaml`` plus: every class's ``max_budget_ms`` raised to ``max_budget_ms`` and anonymous
    callers entitled to every class. ``ValueError`` when the text is not a YAML mapping."""
    doc: Any = yaml.safe_load(policy_yaml)
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), dict):
        raise ValueError("policy_yaml: expected a policy document with a classes mapping")
    for spec in doc["classes"].values():
        spec["max_budget_ms"] = max(float(max_budget_ms), float(spec.get("budget_ms", 0)))
    entitlements = doc.setdefault("entitlements", {})
    entitlements.setdefault("anonymous", {})["allowed_classes"] = list(doc["classes"])
    return yaml.safe_dump(doc, sort_keys=False)
