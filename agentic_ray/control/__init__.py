"""The control plane's pure pieces: what node agents and coordinators decide, without Ray.

Nothing here imports Ray or asyncio or reads a clock (``now`` comes in); the Ray actors in
``agentic_ray.actors`` and the SDK run these pieces, and tests call them directly.

- placement: ``choose_node`` (a node for one task from the cached view), ``fallback_placement``
  (residency-safe plain Ray scheduling), ``NodeView``, ``Placement``;
- summaries: ``LatencyHistogram`` (mergeable log-bucketed histograms), ``ClassSummary``,
  ``merge_summaries``, ``stage_key`` / ``split_stage_key`` (``workflow/stage`` keys);
- drift: ``DriftDetector`` (p99 against budget, multiwindow burn-rate alerts), ``Alert``, ``DriftConfig``;
- leases: ``allocate_caps`` (per-node class caps from the BudgetAllocator), ``static_caps``;
- ``OutstandingEstimate`` (a caller's tasks probably still running per node), ``PlacedNotStarted``
  (tasks placed on a node and not started yet).
"""

from agentic_ray.control._drift import Alert, BurnWindow, DriftConfig, DriftDetector, DriftReport
from agentic_ray.control._leases import allocate_caps, service_by_class, static_caps
from agentic_ray.control._outstanding import OutstandingEstimate
from agentic_ray.control._placement import (
    NodeView,
    Placement,
    choose_node,
    fallback_placement,
    label_selector_for,
    node_attrs_from_ray,
)
from agentic_ray.control._queued import PlacedNotStarted
from agentic_ray.control._summary import (
    BASE_MS,
    GROWTH,
    ClassSummary,
    LatencyHistogram,
    merge_summaries,
    split_stage_key,
    stage_key,
    summary_key,
)

__all__ = [
    "BASE_MS",
    "GROWTH",
    "Alert",
    "BurnWindow",
    "ClassSummary",
    "DriftConfig",
    "DriftDetector",
    "DriftReport",
    "LatencyHistogram",
    "NodeView",
    "OutstandingEstimate",
    "Placement",
    "PlacedNotStarted",
    "allocate_caps",
    "choose_node",
    "fallback_placement",
    "label_selector_for",
    "merge_summaries",
    "node_attrs_from_ray",
    "service_by_class",
    "split_stage_key",
    "stage_key",
    "static_caps",
    "summary_key",
]
