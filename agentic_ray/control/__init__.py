"""The control plane's pure pieces: what node agents and coordinators decide, without Ray.

Nothing here imports Ray or asyncio or reads a clock (``now`` comes in); the Ray actors in
``agentic_ray.actors`` and the SDK run these pieces, and tests call them directly.

- placement: ``choose_node`` (a node for one task from the cached view), ``fallback_placement``
  (residency-safe plain Ray scheduling), ``NodeView``, ``Placement``;
- summaries: ``LatencyHistogram`` (mergeable log-bucketed histograms), ``ClassSummary``,
  ``merge_summaries``, ``stage_key`` / ``split_stage_key`` (``workflow/stage`` keys);
- drift: ``DriftDetector`` (p99 against budget, multiwindow burn-rate alerts), ``Alert``, ``DriftConfig``;
- demand and leases: ``OfferedLoad`` (offered load per round, by zone: tasks from summaries and node
  backlogs, Serve from replica reports) and the ``OfferedDemand`` it yields (``DemandStream``s,
  ``ReplicaCapacity``); ``Eligibility`` (the nodes or replicas a stream may use: its zone, the policy's
  class and workflow rules); ``allocate_caps`` / ``allocate_replica_caps`` (per-node and per-replica class
  caps from the BudgetAllocator), ``static_caps``;
- ``OutstandingEstimate`` (a caller's tasks probably still running per node), ``PlacedNotStarted``
  (tasks placed on a node and not started yet);
- reports, the typed values that cross processes: ``NodeSnapshot``, ``PlacementFacts``, ``AgentReport``
  (agent -> zone), ``ZoneReport`` (zone -> GlobalCoordinator), ``NodeLease`` (down), ``WIRE_VERSION``;
- the zone: ``ZoneState`` (snapshots, registrations, merged delta, Serve replicas' latest reports);
- Serve: ``ServeTally`` (a replica's or router's per-class counts, as report deltas and drift summaries
  under ``serve_drift_key``), ``ServeState`` (registered deployments, their routers and replicas, policy
  targets per deployment with ``refusal_reason``, ``ServeMember``, ``DeploymentTarget``, ``Refusal``);
- the GlobalCoordinator, over one ``GlobalState``: policy rollout (``PolicyRollout``, ``PolicyEntry``),
  membership (``alive_nodes``, ``plan_membership``, ``NodeInfo``, ``AgentRecord``), allocation
  (``plan_allocation``, ``Allocation``, ``leases_by_zone``; ``ArrivalCounter``, the old cluster-wide
  count), and its projections:
  the cluster view (``cluster_view``, ``ClusterView``, ``ViewNode``) and ``status_json`` / ``agents_info``.
"""

from agentic_ray.control._allocation import Allocation, ArrivalCounter, leases_by_zone, plan_allocation
from agentic_ray.control._demand import DemandStream, OfferedDemand, OfferedLoad, ReplicaCapacity
from agentic_ray.control._drift import Alert, BurnWindow, DriftConfig, DriftDetector, DriftReport
from agentic_ray.control._eligibility import Eligibility
from agentic_ray.control._global_state import GlobalState, judged_budget_ms
from agentic_ray.control._leases import allocate_caps, allocate_replica_caps, service_by_class, static_caps
from agentic_ray.control._membership import AgentRecord, MembershipChange, NodeInfo, alive_nodes, plan_membership
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
from agentic_ray.control._reports import (
    WIRE_VERSION,
    AgentReport,
    NodeLease,
    NodeSnapshot,
    PlacementFacts,
    ReplicaClassStats,
    ReplicaReport,
    ZoneReport,
)
from agentic_ray.control._rollout import PolicyEntry, PolicyRollout
from agentic_ray.control._serve_state import DeploymentTarget, Refusal, ServeMember, ServeState, refusal_reason
from agentic_ray.control._serve_tally import ServeTally, drift_workflow, serve_drift_key
from agentic_ray.control._status import agents_info, policy_answer, status_json
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
from agentic_ray.control._view import ClusterView, ViewNode, cluster_view
from agentic_ray.control._zone_state import ZoneState

__all__ = [
    "BASE_MS",
    "GROWTH",
    "WIRE_VERSION",
    "AgentRecord",
    "AgentReport",
    "Alert",
    "Allocation",
    "ArrivalCounter",
    "BurnWindow",
    "ClassSummary",
    "ClusterView",
    "DeploymentTarget",
    "DemandStream",
    "DriftConfig",
    "DriftDetector",
    "DriftReport",
    "Eligibility",
    "GlobalState",
    "LatencyHistogram",
    "MembershipChange",
    "NodeInfo",
    "NodeLease",
    "NodeSnapshot",
    "NodeView",
    "OfferedDemand",
    "OfferedLoad",
    "OutstandingEstimate",
    "Placement",
    "PlacedNotStarted",
    "PlacementFacts",
    "ReplicaCapacity",
    "ReplicaClassStats",
    "ReplicaReport",
    "PolicyEntry",
    "PolicyRollout",
    "Refusal",
    "ServeMember",
    "ServeState",
    "ServeTally",
    "ViewNode",
    "ZoneReport",
    "ZoneState",
    "agents_info",
    "alive_nodes",
    "allocate_caps",
    "allocate_replica_caps",
    "choose_node",
    "cluster_view",
    "drift_workflow",
    "fallback_placement",
    "judged_budget_ms",
    "label_selector_for",
    "leases_by_zone",
    "merge_summaries",
    "node_attrs_from_ray",
    "plan_allocation",
    "plan_membership",
    "policy_answer",
    "refusal_reason",
    "serve_drift_key",
    "service_by_class",
    "split_stage_key",
    "stage_key",
    "static_caps",
    "status_json",
    "summary_key",
]
