"""agentic-ray: latency budgets, deadline-aware routing and tiered admission on Ray and Ray Serve."""

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
]
