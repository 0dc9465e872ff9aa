"""The values that flow through the scheduling core: requests, replica views and decisions.

This is the contract between the pure core (routers, admission gate) and the three places that run it
(the simulator, the Ray node agents, the Serve router and replicas). A router never acts: it returns a
``Route``, ``Shed`` or ``Wait``; the admission gate returns ``Start``, ``Enqueued``, ``Reject`` or
``Dropped``. Time is seconds on the caller's clock, passed in as ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentic_ray.policies.types import NodeAttrs, Shedding

__all__ = [
    "Decision",
    "ReplicaView",
    "Request",
    "Route",
    "Router",
    "Shed",
    "Wait",
]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the scheduling core sees it.

    ``deadline`` is absolute (seconds, same clock as ``now``); ``priority`` is the class priority (lower
    runs first); ``allows`` is the placement predicate from the policy's classification (``None``: any
    replica). ``rule_ids`` are carried into decisions so they stay explainable. ``prompt_tokens`` /
    ``max_tokens`` (None: not said) mark an LLM stream request: the prompt's length and the most tokens
    it may produce (``streams``: the predicted time to first token and end).
    """

    id: Any
    qos: str
    priority: int
    arrival: float
    deadline: float
    model: str = "default"
    shedding: Shedding = Shedding.WHEN_OVERLOADED
    hedge_after_ms: float | None = None
    allows: Callable[[NodeAttrs], bool] | None = field(default=None, compare=False, repr=False)
    rule_ids: tuple[str, ...] = ()
    tenant: str | None = None
    prompt_tokens: int | None = None
    max_tokens: int | None = None

    def remaining_ms(self, now: float) -> float:
        """Milliseconds left before the deadline (negative once it has passed)."""
        return (self.deadline - now) * 1000.0

    @classmethod
    def from_classification(cls, classification: Any, id: Any, arrival: float, model: str | None = None) -> Request:
        """Build from a policy ``Classification`` (its class, deadline, placement and rule ids)."""
        q = classification.qos
        return cls(
            id=id,
            qos=q.name,
            priority=q.priority,
            arrival=arrival,
            deadline=classification.deadline,
            model=model or getattr(classification, "model", None) or "default",
            shedding=q.shedding,
            hedge_after_ms=q.hedge_after_ms,
            allows=classification.allows,
            rule_ids=tuple(classification.rule_ids),
            tenant=getattr(classification, "tenant", None),
        )


@dataclass(slots=True)
class ReplicaView:
    """What a router knows of one replica at decision time (refreshed by its caller).

    ``ongoing`` counts requests executing plus queued at the replica as this router knows them (Serve's
    queue-length cache); ``queued_by_priority`` counts queued (not executing) requests per class
    priority when the replica reports them; ``service_ms`` is the replica's EWMA service time per model
    as last reported (routers keep their own estimators too). ``cost`` ranks cheaper replicas first
    (CPU before GPU) when several meet the budget. ``class_room`` is, per class, how many more requests
    the replica's gate queues (its bound minus what it last reported queued, no more than its class cap
    leaves; a class missing: unknown); ``class_capped`` the classes whose cap there leaves no room.
    ``delay_ms`` is the delay the replica last reported on the path to it (``RoutingStats.delay_ms``;
    0 when it reports none): what ``pressure.under_pressure`` sheds less urgent work on.
    """

    replica_id: str
    attrs: NodeAttrs = field(default_factory=NodeAttrs)
    slots: int = 1
    max_ongoing: float = math.inf
    ongoing: int = 0
    queued_by_priority: Mapping[int, int] = field(default_factory=dict)
    service_ms: Mapping[str, float] = field(default_factory=dict)
    healthy: bool = True
    cost: float = 1.0
    class_room: Mapping[str, int] = field(default_factory=dict)
    delay_ms: float = 0.0
    class_capped: frozenset[str] = frozenset()

    @property
    def has_capacity(self) -> bool:
        """True when one more request stays within ``max_ongoing``."""
        return self.ongoing < self.max_ongoing


@dataclass(frozen=True, slots=True)
class Route:
    """Send the request to ``replica_id``. ``predicted_ms`` is the predicted completion (from now)."""

    replica_id: str
    predicted_ms: float = math.nan
    reason: str = ""
    rule_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Shed:
    """Refuse the request now. ``reason`` is machine-readable; ``retry_after_s`` a hint (None: do not)."""

    reason: str
    retry_after_s: float | None = None
    rule_ids: tuple[str, ...] = ()
    predicted_ms: float = math.nan


@dataclass(frozen=True, slots=True)
class Wait:
    """Hold the request at the router and ask again when replica state changes (Serve's FIFO wait)."""

    reason: str = "all_replicas_full"


Decision = Route | Shed | Wait


@runtime_checkable
class Router(Protocol):
    """A routing policy. Built from the registry with a seeded ``random.Random``; never reads a clock.

    ``choose`` is the hot path. ``observe`` feeds completions back (service time measured at the
    replica, latency seen by the caller, success). ``on_dispatch`` tells the router that a request was
    sent, so it can count pending work locally between replica reports.
    """

    name: str

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision: ...

    def on_dispatch(self, request: Request, replica_id: str, now: float) -> None: ...

    def observe(
        self, request: Request, replica_id: str, service_ms: float, latency_ms: float, ok: bool, now: float
    ) -> None: ...
