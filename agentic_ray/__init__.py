"""agentic-ray: latency budgets, deadline-aware routing and tiered admission on Ray and Ray Serve.

The SDK names (``init``, ``shutdown``, ``task``, ``apply_policy``, ``rollback_policy``, ``status``,
``deployment``) and the policy names (``load_policy``, ``parse_policy``, ``default_policy``, ``Policy``,
``Classification``, ``RequestMeta``, ``NodeAttrs``) load their modules on first use (PEP 562), so
``import agentic_ray`` and ``import agentic_ray.policies`` never import Ray.
``agentic_ray.budget`` is the budget module *and* callable:
``with agentic_ray.budget(150):`` scopes a 150 ms budget for the tasks submitted in the block.
"""

import types as _types

from agentic_ray import budget as _budget_module
from agentic_ray._version import __version__
from agentic_ray.errors import (
    AdmissionError,
    AgenticRayError,
    BudgetExhausted,
    CircuitOpen,
    ConfigValidationError,
    NoEligibleNode,
    NoEligibleReplica,
    Overloaded,
    PolicyError,
    PolicyValidationError,
    ScenarioValidationError,
)

__all__ = [
    "AdmissionError",
    "AgenticRayError",
    "BudgetExhausted",
    "CircuitOpen",
    "ConfigValidationError",
    "NoEligibleNode",
    "NoEligibleReplica",
    "Overloaded",
    "PolicyError",
    "PolicyValidationError",
    "ScenarioValidationError",
    "__version__",
    "Classification",
    "NodeAttrs",
    "Policy",
    "RequestMeta",
    "apply_policy",
    "budget",
    "default_policy",
    "deployment",
    "init",
    "load_policy",
    "parse_policy",
    "rollback_policy",
    "shutdown",
    "status",
    "task",
]

_SDK_NAMES = frozenset({"apply_policy", "init", "rollback_policy", "shutdown", "status", "task", "cluster_view"})


_POLICY_NAMES = frozenset(
    {"Classification", "NodeAttrs", "Policy", "RequestMeta", "default_policy", "load_policy", "parse_policy"}
)


def __getattr__(name: str):
    if name in _SDK_NAMES:
        from agentic_ray import sdk

        return getattr(sdk, name)
    if name in _POLICY_NAMES:
        from agentic_ray import policies

        return getattr(policies, name)
    if name == "deployment":
        from agentic_ray.serve.deployment import deployment

        return deployment
    raise AttributeError(f"module 'agentic_ray' has no attribute {name!r}")


class _CallableBudgetModule(_types.ModuleType):
    """``agentic_ray.budget`` stays the module (``from agentic_ray.budget import Deadline``) and is also
    the driver-side scope ``agentic_ray.budget(ms)`` (``agentic_ray.sdk.budget``)."""

    def __call__(self, ms: float):
        from agentic_ray.sdk import budget as budget_block

        return budget_block(ms)


_budget_module.__class__ = _CallableBudgetModule
budget = _budget_module
