"""Policy as code: the YAML policy format, its loader and validator, and the compiled evaluator.

Typical use::

    from agentic_ray.policies import load_policy, RequestMeta, NodeAttrs

    policy = load_policy("examples/policies/platform.yaml")
    decision = policy.classify(RequestMeta(tenant="acme", model="llama-70b"), now=clock())
    eligible = [n for n in nodes if decision.allows(n)]

Nothing in this package imports Ray or asyncio or reads a clock.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from agentic_ray.policies.classification import Classification, CompiledRule, NodeSelector
from agentic_ray.policies.compiler import Policy, Tenant, Workflow
from agentic_ray.policies.diff import PolicyChange, diff_policies
from agentic_ray.policies.loader import load_policy, parse_policy
from agentic_ray.policies.schema import PolicySpec, policy_json_schema
from agentic_ray.policies.types import (
    BreakerSettings,
    NodeAttrs,
    QosClass,
    RequestMeta,
    RetrySettings,
    Shedding,
    StageBudget,
)

__all__ = [
    "BreakerSettings",
    "Classification",
    "CompiledRule",
    "NodeAttrs",
    "NodeSelector",
    "Policy",
    "PolicyChange",
    "PolicySpec",
    "QosClass",
    "RequestMeta",
    "RetrySettings",
    "Shedding",
    "StageBudget",
    "Tenant",
    "Workflow",
    "default_policy",
    "default_policy_text",
    "diff_policies",
    "load_policy",
    "parse_policy",
    "policy_json_schema",
]


def default_policy_text() -> str:
    """The YAML text of the built-in policy (``agentic_ray/policies/default.yaml``)."""
    return resources.files(__package__).joinpath("default.yaml").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The built-in policy: critical (prio 0, 100 ms, never shed), standard (prio 1, 500 ms,
    shed when overloaded, the default class), sheddable (prio 2, 2000 ms, shed first); no tenants/rules."""
    return parse_policy(default_policy_text(), source="<default policy>")
