"""HTTP status of an admission error (used by the ingress; pure, no Ray).

- ``BudgetExhausted`` whose deadline passed (``deadline_passed``, ``deadline_passed_in_queue``) -> 504;
- ``NoEligibleReplica`` -> 503 without ``Retry-After`` (no replica satisfies the placement rules);
- ``Overloaded`` -> 429 with ``Retry-After``;
- ``CircuitOpen`` -> 503 with ``Retry-After`` (every replica the request may use is ejected by its circuit
  breaker; the hint is when the first half-opens);
- any other ``AdmissionError`` (``BudgetExhausted`` that cannot meet its budget) -> 503 with ``Retry-After``.

``Retry-After`` is whole seconds, rounded up, at least 1 (RFC 9110 section 10.2.3); 1 when the error
carries no hint.
"""

from __future__ import annotations

import math
from typing import Any

from agentic_ray.errors import AdmissionError, BudgetExhausted, CircuitOpen, NoEligibleReplica, Overloaded

__all__ = ["http_error"]

_DEADLINE_REASONS = ("deadline_passed", "deadline_passed_in_queue")


def http_error(error: AdmissionError) -> tuple[int, dict[str, str], dict[str, Any]]:
    """``(status, headers, json body)`` for an admission error (see the module docstring)."""
    body = {"error": error.reason, "detail": str(error), "rule_ids": list(error.rule_ids)}
    headers: dict[str, str] = {}
    retry = error.retry_after_s
    if isinstance(error, BudgetExhausted) and error.reason in _DEADLINE_REASONS:
        return 504, headers, body
    if isinstance(error, NoEligibleReplica):
        return 503, headers, body
    headers["Retry-After"] = str(max(1, math.ceil(retry if retry is not None else 1.0)))
    if isinstance(error, CircuitOpen):
        return 503, headers, body
    if isinstance(error, Overloaded):
        return 429, headers, body
    return 503, headers, body
