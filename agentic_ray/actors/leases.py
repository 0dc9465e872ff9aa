"""Per-node, per-class in-flight caps (the agents' budget leases). Pure: no Ray, no clock.

When the scheduling core's BudgetAllocator (``agentic_ray.scheduling.allocator.allocate``) is present it
is used; otherwise a static rule: a class with an admission ``queue_bound`` in the policy gets
``queue_bound * CPUs of the node`` in flight per node (the bound is per slot, a node has one slot per
CPU), and classes without a bound get no cap. Both return ``{node_id: {class: cap}}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["allocate_caps", "static_caps"]


def static_caps(policy: Any, nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """``queue_bound * CPUs`` per bounded class and node (at least 1)."""
    out: dict[str, dict[str, int]] = {}
    for node_id, info in nodes.items():
        cpus = max(1.0, float((info.get("resources") or {}).get("CPU", 1.0)))
        out[node_id] = {
            name: max(1, math.floor(q.queue_bound * cpus))
            for name, q in policy.classes.items()
            if q.queue_bound is not None
        }
    return out


def allocate_caps(
    policy: Any, nodes: Mapping[str, Mapping[str, Any]], snapshots: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, int]]:
    """Caps for every node in ``nodes`` (``{node_id: {"resources": ..., "zone": ...}}``)."""
    try:
        from agentic_ray.scheduling import allocator  # type: ignore[attr-defined]
    except ImportError:
        allocator = None
    if allocator is not None and hasattr(allocator, "allocate_for_policy"):
        return allocator.allocate_for_policy(policy, nodes, snapshots)  # pragma: no cover - adapter
    return static_caps(policy, nodes)
