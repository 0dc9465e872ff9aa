"""agentic-ray: latency budgets, deadline-aware routing and tiered admission on Ray and Ray Serve.

The SDK names (``init``, ``shutdown``, ``task``, ``actor``, ``method``, ``apply_policy``,
``rollback_policy``, ``promote_policy``, ``policy_history``, ``status``, ``deployment``) and the policy
names (``load_policy``, ``parse_policy``, ``default_policy``, ``Policy``, ``Classification``,
``RequestMeta``, ``NodeAttrs``) load their modules
on first use (PEP 562), so ``import agentic_ray`` and ``import agentic_ray.policies`` never import Ray.
``with agentic_ray.budget(150):`` scopes a 150 ms budget for the tasks submitted in the block; the
deadline values behind it (``Deadline``, ``Budget``, ``StagePlan``, ``deadline_scope``,
``current_deadline``) are exported here too (module ``agentic_ray._budget``, pure).

Implementation modules are private (``_name``) where a package presents one API (``serve``, ``actors``,
``control``, ``demo`` and the top level); import names from the package, not from its modules.
"""

from agentic_ray._budget import Budget, Deadline, StagePlan, StageSpec, current_deadline, deadline_scope
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
    ReplicaFailed,
    ScenarioValidationError,
)

__all__ = [
    "Budget",
    "Deadline",
    "StagePlan",
    "StageSpec",
    "current_deadline",
    "deadline_scope",
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
    "ReplicaFailed",
    "ScenarioValidationError",
    "__version__",
    "Classification",
    "NodeAttrs",
    "Policy",
    "RequestMeta",
    "actor",
    "apply_policy",
    "budget",
    "cluster_view",
    "default_policy",
    "deployment",
    "freeze_gc",
    "get",
    "get_async",
    "init",
    "load_policy",
    "method",
    "parse_policy",
    "policy_history",
    "promote_policy",
    "rollback_policy",
    "shutdown",
    "status",
    "task",
    "workflow",
]

_SDK_NAMES = frozenset(
    {
        "actor",
        "apply_policy",
        "budget",
        "cluster_view",
        "freeze_gc",
        "get",
        "get_async",
        "init",
        "method",
        "policy_history",
        "promote_policy",
        "rollback_policy",
        "shutdown",
        "status",
        "task",
        "workflow",
    }
)


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
        from agentic_ray.serve._deployment import deployment

        return deployment
    raise AttributeError(f"module 'agentic_ray' has no attribute {name!r}")
