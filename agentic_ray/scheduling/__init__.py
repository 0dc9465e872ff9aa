"""The pure scheduling core: load estimators, the admission gate, routers, breakers, retry budgets, the
routing state Serve's router and the simulator share (``RoutingState``, fed with the replicas' typed
``ReplicaMetadata`` / ``RoutingStats``) and the budget allocator. Nothing here imports ``ray`` or
``asyncio`` or reads a clock: ``now`` (seconds) and a seeded ``random.Random`` come in as arguments,
decisions come back as values.

Routers are built by name: ``create_router(name, rng, **config)``; ``router_names()`` lists them.
"""

from agentic_ray.scheduling.admission import (
    AdmissionGate,
    Admitted,
    Dropped,
    Enqueued,
    GateSnapshot,
    Reject,
    Start,
)
from agentic_ray.scheduling.allocator import (
    Allocation,
    Capacities,
    ClassAllocation,
    ClassDemand,
    NodeAllocation,
    NodeCapacity,
    allocate,
)
from agentic_ray.scheduling.breaker import BreakerState, CircuitBreaker, ReplicaHealth
from agentic_ray.scheduling.estimators import Ewma, EwmaServiceTime, PeakEwma, PendingRequests
from agentic_ray.scheduling.events import DecisionEvent
from agentic_ray.scheduling.registry import create_router, register_router, router_names
from agentic_ray.scheduling.reports import ReplicaMetadata, RoutingStats, ServiceSample
from agentic_ray.scheduling.retry import RetryBudget
from agentic_ray.scheduling.routing_state import Flight, ReplicaReport, RoutingState
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Router, Shed, Wait

__all__ = [
    "AdmissionGate",
    "Admitted",
    "Allocation",
    "BreakerState",
    "Capacities",
    "CircuitBreaker",
    "ClassAllocation",
    "ClassDemand",
    "Decision",
    "DecisionEvent",
    "Dropped",
    "Enqueued",
    "Ewma",
    "EwmaServiceTime",
    "Flight",
    "GateSnapshot",
    "NodeAllocation",
    "NodeCapacity",
    "PeakEwma",
    "PendingRequests",
    "Reject",
    "ReplicaHealth",
    "ReplicaMetadata",
    "ReplicaReport",
    "ReplicaView",
    "Request",
    "RetryBudget",
    "Route",
    "Router",
    "RoutingState",
    "RoutingStats",
    "ServiceSample",
    "Shed",
    "Start",
    "Wait",
    "allocate",
    "create_router",
    "register_router",
    "router_names",
]
