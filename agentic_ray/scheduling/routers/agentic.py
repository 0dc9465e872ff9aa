"""``agentic``: the deadline-aware router (cheapest replica that meets the remaining budget).

For each eligible replica r (placement ``request.allows(r.attrs)``, healthy, ``ongoing < max_ongoing``)
it predicts this request's completion time from now::

    s     = EWMA service ms of (r, model): own estimate fed by ``observe``, else r.service_ms[model],
            else r.service_ms["default"], else ``default_service_ms``
    n     = executing on r + queued on r with priority <= this request's (work ahead of its class);
            executing = max(ongoing, local pending) - queued; unreported local pending counts as ahead
    wait  = 0 if n < slots else (n - slots + 1) / slots * s      (the n-th request ahead frees a slot)
    pred  = wait + s

A replica *meets* the budget when ``pred * (1 + safety_margin) + margin_ms <= remaining_ms``. Among
those it routes to the cheapest (``ReplicaView.cost``: CPU before GPU), then the fastest; when none
meets it, the class's shedding mode decides: ``never`` routes to the fastest anyway, ``when_overloaded``
and ``first`` return ``Shed("cannot_meet_deadline", retry_after_s)``.

Headroom: a class with ``shed_threshold`` (and shedding other than ``never``) is shed with reason
``"over_shed_threshold"`` when the least-utilised eligible replica, counting this request, is above the
threshold (utilisation = ongoing / max_ongoing, or ongoing / slots when unbounded, capped at 1), even if
it could meet its own budget, so that less critical work goes first and critical work keeps headroom.

Circuit breakers: the caller folds a ``CircuitBreaker`` into ``ReplicaView.healthy``
(``breaker.available(replica_id, now)``); an unhealthy replica is never chosen.

Other outcomes: no replica passes placement -> ``Shed("no_eligible_replica", rule_ids)``; all of them
unhealthy -> ``Shed("no_healthy_replica", retry_after_s=1)``; all at ``max_ongoing`` -> ``Wait``;
deadline already passed -> ``Shed("deadline_passed")``.

Hedging: for a request with ``hedge_after_ms`` and a ``hedge_budget`` (``RetrySettings``) configured,
the route names a second replica (the best other one that could still finish in time when started after
``hedge_after_ms``) when the ``RetryBudget`` allows one more; the hedge is charged at decision time.

Ideas from: Linkerd/Finagle latency-aware balancing, "The Tail at Scale" (Dean & Barroso, 2013) for
hedging, and deadline-aware admission in Google's SRE book ch. 21-22.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from agentic_ray.policies.types import QosClass, RetrySettings, Shedding
from agentic_ray.scheduling.retry import RetryBudget
from agentic_ray.scheduling.routers.base import GATE, PendingRouter
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Shed, Wait

__all__ = ["AgenticRouter"]


class AgenticRouter(PendingRouter):
    """Deadline-aware, cost-aware router (see the module docstring). Replicas run an AdmissionGate."""

    name = "agentic"
    replica_discipline = GATE

    def __init__(
        self,
        rng: random.Random,
        *,
        classes: Mapping[str, QosClass] | None = None,
        safety_margin: float = 0.1,
        margin_ms: float = 0.0,
        default_service_ms: float = 50.0,
        alpha: float = 0.2,
        hedge_budget: RetrySettings | None = None,
    ) -> None:
        super().__init__(rng)
        if not safety_margin >= 0:
            raise ValueError(f"safety_margin: must be >= 0, got {safety_margin!r}")
        if not default_service_ms > 0:
            raise ValueError(f"default_service_ms: must be > 0, got {default_service_ms!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha: must be in (0, 1], got {alpha!r}")
        self.classes = dict(classes or {})
        self.safety_factor = 1.0 + safety_margin
        self.margin_ms = margin_ms
        self.default_service_ms = default_service_ms
        self.alpha = alpha
        self._ewma_by_model: dict[str, dict[str, float]] = {}
        self.hedge_budget = RetryBudget(hedge_budget) if hedge_budget is not None else None

    def wait_order(self, request: Request) -> tuple[float, ...]:
        """Earliest deadline first among requests held after ``Wait``."""
        return (request.deadline, request.arrival)

    def observe(
        self, request: Request, replica_id: str, service_ms: float, latency_ms: float, ok: bool, now: float
    ) -> None:
        """Feed the (replica, model) EWMA with a successful request's service time; clear its pending."""
        super().observe(request, replica_id, service_ms, latency_ms, ok, now)
        if ok and service_ms is not None and math.isfinite(service_ms) and service_ms >= 0:
            per_replica = self._ewma_by_model.setdefault(request.model, {})
            old = per_replica.get(replica_id)
            per_replica[replica_id] = service_ms if old is None else old + self.alpha * (service_ms - old)

    def service_ms(self, replica: ReplicaView, model: str) -> float:
        """The service-time estimate this router uses for ``model`` on ``replica``."""
        s = self._ewma_by_model.get(model, {}).get(replica.replica_id)
        if s is None:
            sm = replica.service_ms
            s = sm.get(model) or sm.get("default") or self.default_service_ms
        return s

    def _shedding(self, request: Request) -> tuple[Shedding, float | None]:
        cls = self.classes.get(request.qos)
        if cls is None:
            return request.shedding, None
        return cls.shedding, cls.shed_threshold

    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Route, shed or wait (see the module docstring)."""
        remaining = (request.deadline - now) * 1000.0
        if remaining <= 0:
            return Shed("deadline_passed", None, request.rule_ids, math.nan)
        allows = request.allows
        model = request.model
        prio = request.priority
        pending = self.pending
        ewma = self._ewma_by_model.get(model) or {}
        default_s = self.default_service_ms
        inf = math.inf
        placed = 0
        healthy = 0
        min_util = inf
        meet: ReplicaView | None = None
        meet_cost = meet_pred = inf
        fastest: ReplicaView | None = None
        fastest_pred = inf
        second: ReplicaView | None = None
        second_pred = inf
        need = (remaining - self.margin_ms) / self.safety_factor
        shedding, threshold = self._shedding(request)
        use_util = threshold is not None and shedding is not Shedding.NEVER
        for r in replicas:
            if allows is not None and not allows(r.attrs):
                continue
            placed += 1
            if not r.healthy:
                continue
            healthy += 1
            rid = r.replica_id
            ongoing = r.ongoing
            if pending:
                p = pending.get(rid, 0)
                if p > ongoing:
                    ongoing = p
            max_ongoing = r.max_ongoing
            if ongoing >= max_ongoing:
                continue
            qbp = r.queued_by_priority
            ahead = ongoing
            if qbp:
                for q, k in qbp.items():
                    if q > prio:
                        ahead -= k
                if ahead < 0:
                    ahead = 0
            s = ewma.get(rid)
            if s is None:
                sm = r.service_ms
                s = sm.get(model) or sm.get("default") or default_s
            slots = r.slots
            pred = s if ahead < slots else (ahead - slots + 1) / slots * s + s
            if use_util:
                util = (ongoing + 1) / (slots if max_ongoing == inf else max_ongoing)
                if util < min_util:
                    min_util = util
            if pred <= need:
                cost = r.cost
                if cost < meet_cost or (cost == meet_cost and pred < meet_pred):
                    meet, meet_cost, meet_pred = r, cost, pred
            if pred < fastest_pred:
                second, second_pred = fastest, fastest_pred
                fastest, fastest_pred = r, pred
            elif pred < second_pred:
                second, second_pred = r, pred
        if placed == 0:
            return Shed("no_eligible_replica", None, request.rule_ids, math.nan)
        if healthy == 0:
            return Shed("no_healthy_replica", 1.0, request.rule_ids, math.nan)
        if fastest is None:
            return Wait("all_replicas_full")
        if use_util and min(min_util, 1.0) > threshold:
            return Shed("over_shed_threshold", fastest_pred / 1000.0, request.rule_ids, fastest_pred)
        if meet is not None:
            pred, chosen, reason = meet_pred, meet, "meets_budget"
        elif shedding is Shedding.NEVER:
            pred, chosen, reason = fastest_pred, fastest, "fastest_never_shed"
        else:
            return Shed("cannot_meet_deadline", fastest_pred / 1000.0, request.rule_ids, fastest_pred)
        hedge_id = None
        hedge_after = request.hedge_after_ms
        if hedge_after is not None and self.hedge_budget is not None:
            self.hedge_budget.record_request(now)
            other, other_pred = (second, second_pred) if fastest is chosen else (fastest, fastest_pred)
            if (
                other is not None
                and hedge_after + other_pred <= remaining
                and self.hedge_budget.try_acquire(1, remaining, other_pred, now)
            ):
                hedge_id = other.replica_id
        return Route(
            chosen.replica_id,
            pred,
            reason,
            request.rule_ids,
            hedge_id,
            hedge_after if hedge_id is not None else None,
        )
