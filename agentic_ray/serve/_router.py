"""``AgenticRequestRouter``: Ray Serve's ``RequestRouter`` driven by the pure ``agentic`` router.

One instance runs in every caller process (the driver of handle calls, each ingress replica, each
proxy). Per routing attempt (``choose_replicas``) it

1. reads the request's metadata from the call kwargs (``meta.pop_meta``: ``_agentic`` or the bare
   ``qos``/``budget_ms``/... keywords), classifies it with the compiled policy at ``now = time.time()``
   and fixes its absolute deadline in ``kwargs["_agentic"]`` so the replica's gate sees the same one.
   A direct HTTP request (this router running in Serve's proxy, ``http_direct``) carries its metadata
   in headers instead: the router reads them from the proxy's ASGI scope and writes its decision back
   into the scope when it routes; a bad header is routed with the error so the replica answers 400;
2. builds a ``ReplicaView`` per candidate: zone, accelerator, labels, slots and cost from
   ``record_replica_metadata`` (published once by each replica; slots lowered to the replica's published
   concurrency limit while its front is saturated), room left in each class queue (a replica whose queue
   for the request's class is full is no candidate: ``frontdoor.with_room``), queued work per class priority and
   EWMA service times per model from ``record_routing_stats`` (refreshed by the controller every
   ``request_routing_stats_period_s``), whose recent per-call service times also feed the pure router's
   own per-replica mean/deviation estimators, in-flight counts from Serve's router-local queue-length cache,
   queued work per priority taken as the larger of the replica's report and this router's own count of
   requests it sent there and that have not completed (trimmed so ``min(ongoing, slots)`` count as
   executing), ``healthy`` from a ``CircuitBreaker`` fed from the replicas' published totals of
   completed and failed calls (a failure is an error raised by the user's code; a dead or unavailable
   replica counts as a failure too);
3. asks the pure router (``registry.create_router("agentic", rng, classes=...)``, placement rules
   through ``Classification.allows``) and acts on its decision:

   - ``Route``  -> returns ``[[replica]]`` (a singleton rank: Serve sends there, or re-asks if full);
   - ``Wait``   -> sets ``routing_context.should_backoff`` and returns ``[]`` (Serve backs off, re-asks);
   - ``Shed``   -> fails ``pending_request.future`` with a typed ``AdmissionError`` (``BudgetExhausted``,
     ``Overloaded`` or ``NoEligibleReplica``, with ``retry_after_s`` and the rule ids; for a direct HTTP
     request ``http_direct.HttpShed``, which the proxy answers as 429/503 with a JSON body), removes the
     request from the router's indices, and returns one candidate so Serve's routing loop sees the
     finished future and stops (raising inside ``choose_replicas`` would be swallowed and hang the
     request; see notes/ray-2.60.md 2.5).

Hedges (``agentic_ray.serve.call``): a request whose metadata names ``hedge_of`` (the ``call_id`` of an
earlier copy) is never sent to the replica that copy went to, and is paid from the policy's
``RetryBudget``; it is shed with ``Overloaded`` (``hedge_budget_exhausted`` / ``no_hedge_replica``) when
the budget is spent or no other replica is a candidate.

A request that comes back after a replica rejected it (Serve's retry, recognisable by its reset
future) spends the policy's ``RetryBudget``; once that is exhausted it is shed with
``Overloaded(reason="retry_budget_exhausted")``. Every decision goes to the decision hook.

Telemetry (``telemetry=True``, the ``@agentic_ray.deployment`` default; see ``hooks``): per decision the
router pushes one plain tuple (``DecisionEvent`` field order) with the hook's ``push``, a C-level list
append, and builds a ``DecisionEvent`` only for hooks without ``push`` or for a request that carries a
sampled trace (``kwargs["_agentic_trace"]``, put there by ``tracing.with_trace`` in the caller or by the
HTTP ingress). For such a request a ``Route`` opens an ``agentic.route`` span under the caller's span and
replaces the carried context with its own, so the replica's ``agentic.queue`` / ``agentic.execute``
spans chain caller -> route -> queue/execute; wait and shed decisions become ``agentic.route`` spans
under the caller's span through the hook. The policy's full sha256 is registered with the hook
(``register_policy``) and its version set on ``agentic_policy_version_info``; breaker transitions go to
``agentic_breaker_state`` (checked whenever the breaker is fed and at every replica update, so an
``open -> half_open`` transition by time shows at the next stats period).

Configuration (``RequestRouterConfig.request_router_kwargs``, JSON): ``policy_yaml`` (text; default:
the built-in policy), ``seed``, ``router`` (keyword config of the pure router: ``safety_margin``,
``margin_ms``, ``default_service_ms``), ``decision_hook`` (import path, see ``hooks``),
``ungated_methods`` (method names routed without the policy: Serve's least-queue choice).
"""

from __future__ import annotations

import math
import random
import time
from collections import OrderedDict
from typing import Any

from opentelemetry import trace as otel_trace
from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from agentic_ray.errors import AdmissionError, BudgetExhausted, NoEligibleReplica, Overloaded, PolicyError
from agentic_ray.policies import Policy, default_policy, parse_policy
from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling.breaker import CircuitBreaker
from agentic_ray.scheduling.frontdoor import with_room
from agentic_ray.scheduling.registry import create_router
from agentic_ray.scheduling.retry import RetryBudget
from agentic_ray.scheduling.types import ReplicaView, Request, Route, Shed, Wait
from agentic_ray.serve._hooks import DecisionEvent, NoopHook, hook_push, load_hook, register_policy, safe_record
from agentic_ray.serve._http_direct import (
    HttpShed,
    bad_request_body,
    http_request_of,
    scope_headers,
    stamp,
    trace_carrier,
)
from agentic_ray.serve._meta import (
    CALL_ID,
    HEDGE_OF,
    META_KWARG,
    meta_from_headers,
    pop_meta,
    request_meta,
    to_request,
)
from agentic_ray.telemetry import tracing
from agentic_ray.telemetry.tracing import TRACE_KWARG

__all__ = ["AgenticRequestRouter", "shed_error"]

_MAX_TRACKED = 100_000


def shed_error(shed: Shed) -> AdmissionError:
    """The typed error a caller gets for a router ``Shed`` decision."""
    reason = shed.reason
    detail = f"shed by the agentic router: {reason}"
    if not math.isnan(shed.predicted_ms):
        detail += f" (predicted {shed.predicted_ms:.1f} ms)"
    if reason == "no_eligible_replica":
        return NoEligibleReplica(detail, reason=reason, rule_ids=shed.rule_ids)
    if reason in ("deadline_passed", "cannot_meet_deadline"):
        return BudgetExhausted(detail, reason=reason, rule_ids=shed.rule_ids, retry_after_s=shed.retry_after_s)
    return Overloaded(detail, reason=reason, rule_ids=shed.rule_ids, retry_after_s=shed.retry_after_s)


class _Tracked:
    __slots__ = ("call_id", "future_id", "hedge_of", "http", "meta", "replica_id", "request", "routed_at")

    def __init__(self, request: Request, future_id: int, call_id: Any = None, hedge_of: Any = None) -> None:
        self.request = request
        self.http: Any = None  # the proxy's StreamingHTTPRequest of a direct HTTP request
        self.meta: dict[str, Any] = {}
        self.future_id = future_id
        self.replica_id: str | None = None
        self.routed_at = 0.0
        self.call_id = call_id  # set by agentic_ray.serve.call: lets a later hedge avoid this replica
        self.hedge_of = hedge_of  # the call id this request hedges


def _service_ms(stats: dict, metadata: dict) -> dict[str, float]:
    """Measured EWMA service times per model, else the replica's declared ``service_ms`` (a prior)."""
    values = stats.get("service_ms") or metadata.get("service_ms") or {}
    return {str(m): float(v) for m, v in values.items()}


def _class_room(stats: dict) -> dict[str, int]:
    """Per class, how many more requests the replica's gate would queue as it last reported."""
    bounds = stats.get("queue_bounds") or {}
    queued = stats.get("queued_by_class") or {}
    return {str(q): int(b) - int(queued.get(q, 0)) for q, b in bounds.items()}


def _effective_slots(metadata: dict, stats: dict) -> int:
    """The replica's slots, or fewer while its published limit holds it below them (host saturated)."""
    slots = int(metadata.get("slots") or 1)
    limit = stats.get("limit")
    return max(1, min(slots, int(limit))) if isinstance(limit, int) else slots


def _replica_key(replica_id: ReplicaID) -> str:
    return replica_id.unique_id


class AgenticRequestRouter(RequestRouter):
    """Deadline- and placement-aware Serve request router (see the module docstring)."""

    def initialize_state(self, **kwargs: Any) -> None:
        """Build the policy, the pure router, breaker, retry budget and hook from ``request_router_kwargs``."""
        text = kwargs.get("policy_yaml")
        self.policy: Policy = parse_policy(text, source="<deployment policy>") if text else default_policy()
        self.core = create_router(
            "agentic", random.Random(int(kwargs.get("seed", 0))), classes=self.policy.classes,
            **dict(kwargs.get("router") or {}),
        )  # fmt: skip
        self.breaker = CircuitBreaker(self.policy.breaker)
        self.retry_budget = RetryBudget(self.policy.retry)
        self.hook = load_hook(kwargs.get("decision_hook"))
        self._push = hook_push(self.hook)
        self._hook_off = isinstance(self.hook, NoopHook)
        register_policy(self.hook, self.policy.version, self.policy.sha256)
        self.metrics = None
        self._breaker_states: dict[str, str] = {}
        if kwargs.get("telemetry"):
            from agentic_ray.telemetry.metrics import AgenticMetrics
            from agentic_ray.telemetry.ray_metrics import RayMetrics

            self.metrics = AgenticMetrics(RayMetrics(), "router")
            try:
                self.metrics.policy_version(self.policy.version)
            except Exception:  # telemetry must not break serving
                self.metrics = None
        self.ungated_methods = frozenset(kwargs.get("ungated_methods") or ())
        self._views: dict[str, ReplicaView] = {}
        self._reported_queued: dict[str, dict[int, int]] = {}
        self._totals: dict[str, tuple[int, int]] = {}
        self._sample_seq: dict[str, int] = {}
        self._by_key: dict[str, RunningReplica] = {}
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()
        self._call_replica: OrderedDict[Any, str] = OrderedDict()  # call id -> replica it was routed to
        # Requests this router sent and that have not completed, per replica and class priority.
        self._inflight: dict[str, dict[int, int]] = {}

    # -- replica facts --------------------------------------------------------------------------------
    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        """Refresh the static facts and published stats of every replica (then Serve's own update)."""
        super().update_replicas(replicas)
        if hasattr(self, "_views"):
            self._rebuild_views(replicas)

    def _rebuild_views(self, replicas: list[RunningReplica]) -> None:
        reported: dict[str, dict[int, int]] = {}
        views: dict[str, ReplicaView] = {}
        by_key: dict[str, RunningReplica] = {}
        for r in replicas:
            key = _replica_key(r.replica_id)
            md = r.replica_metadata or {}
            stats = r.routing_stats or {}
            labels = {str(k): str(v) for k, v in (md.get("labels") or {}).items()}
            view = ReplicaView(
                replica_id=key,
                attrs=NodeAttrs(
                    node_id=r.node_id or "",
                    zone=str(md.get("zone") or "default"),
                    accelerator=str(md.get("accelerator") or "cpu"),
                    labels=labels,
                ),
                slots=_effective_slots(md, stats),
                max_ongoing=float(r.max_ongoing_requests),
                queued_by_priority={int(p): int(n) for p, n in (stats.get("queued_by_priority") or {}).items()},
                service_ms=_service_ms(stats, md),
                cost=float(md.get("cost") or 1.0),
                class_room=_class_room(stats),
            )
            view.ongoing = int(stats.get("executing", 0)) + int(stats.get("queued", 0))
            views[key] = view
            reported[key] = dict(view.queued_by_priority)
            self._feed_breaker(key, stats)
            self._feed_service_samples(key, stats)
            by_key[key] = r
            self.breaker.add(key)
        for gone in set(self._views) - set(views):
            self.breaker.remove(gone)
            self._inflight.pop(gone, None)
            self._breaker_states.pop(gone, None)
        self._views, self._by_key, self._reported_queued = views, by_key, reported
        if self.metrics is not None:
            now = time.time()
            for key in views:
                self._publish_breaker(key, now)

    def _publish_breaker(self, key: str, now: float) -> None:
        """Set ``agentic_breaker_state`` for ``key`` when its breaker state changed since last published."""
        metrics = self.metrics
        if metrics is None:
            return
        try:
            state = self.breaker.state(key, now).value
            if self._breaker_states.get(key) != state:
                self._breaker_states[key] = state
                metrics.breaker_state(key, state)
        except Exception:  # telemetry must not break serving
            pass

    def _feed_breaker(self, key: str, stats: dict) -> None:
        """Replicas publish running totals of completed and failed calls (failed: the user's code raised;
        admission refusals are not failures). The breaker gets the new successes, then the new failures,
        of each report, so failures at the end of a report period count as consecutive."""
        done, failed = int(stats.get("completed_total", 0)), int(stats.get("failed_total", 0))
        last = self._totals.get(key)
        self._totals[key] = (done, failed)
        if last is None:  # first report seen by this router: a baseline, not news
            return
        last_done, last_failed = last
        now = time.time()
        for _ in range(min(max(0, done - last_done), self.policy.breaker.consecutive_failures)):
            self.breaker.record(key, True, None, now)
        for _ in range(min(max(0, failed - last_failed), self.policy.breaker.consecutive_failures)):
            self.breaker.record(key, False, None, now)
        self._publish_breaker(key, now)

    def _feed_service_samples(self, key: str, stats: dict) -> None:
        """Give the pure router the replica's newly measured service times, as the simulator gives it every
        completion, so it learns each replica's mean and deviation. ``observe`` also releases one pending
        request, so one is added first: pending counts stay those of ``on_request_routed/_completed``."""
        samples = stats.get("service_samples") or ()
        last = self._sample_seq.get(key, -1)
        pending = getattr(self.core, "pending", None)
        now = time.time()
        for seq, model, service_ms in samples:
            if seq <= last:
                continue
            last = seq
            if pending is None:
                continue
            sample = Request(id=("service-sample", key, seq), qos="", priority=0, arrival=now, deadline=math.inf,
                             model=str(model))  # fmt: skip
            pending[key] = pending.get(key, 0) + 1
            self.core.observe(sample, key, float(service_ms), math.nan, True, now)
        self._sample_seq[key] = last

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        key, now = _replica_key(replica_id), time.time()
        self.breaker.record(key, False, None, now)
        self._publish_breaker(key, now)

    def on_replica_actor_unavailable(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_unavailable(replica_id)
        key, now = _replica_key(replica_id), time.time()
        self.breaker.record(key, False, None, now)
        self._publish_breaker(key, now)

    # -- routing --------------------------------------------------------------------------------------
    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        """One routing attempt: route, wait or shed ``pending_request`` (see the module docstring)."""
        if pending_request is None or pending_request.future.done():
            return [candidate_replicas[:1]] if candidate_replicas else []
        if pending_request.metadata.call_method in self.ungated_methods:
            return [candidate_replicas]  # control calls: Serve's least-queue choice, no policy
        now = time.time()
        internal_id = pending_request.metadata.internal_request_id
        tracked = self._tracked.get(internal_id)
        if tracked is None:
            http = http_request_of(pending_request.args) if pending_request.metadata.is_http_request else None
            try:
                tracked = self._track(pending_request, internal_id, now, http)
            except (PolicyError, ValueError) as exc:
                if http is not None and candidate_replicas:
                    # The replica answers 400 at once, without a slot; the proxy cannot send a 400 itself.
                    stamp(pending_request.args, http, {"error": bad_request_body(exc)})
                    return [candidate_replicas]
                return self._fail(pending_request, candidate_replicas, exc)
            if tracked.hedge_of is None:
                self.retry_budget.record_request(now)
            elif not self.retry_budget.try_acquire(1, tracked.request.remaining_ms(now), 0.0, now):
                shed = Shed("hedge_budget_exhausted", 1.0, tracked.request.rule_ids)
                return self._shed(pending_request, candidate_replicas, tracked.request, shed, now, None)
        elif tracked.future_id != id(pending_request.future):
            # Serve re-routes a request a replica rejected: a retry, paid from the retry budget.
            tracked.future_id = id(pending_request.future)
            request = tracked.request
            if not self.retry_budget.try_acquire(1, request.remaining_ms(now), 0.0, now):
                shed = Shed("retry_budget_exhausted", 1.0, request.rule_ids)
                return self._shed(pending_request, candidate_replicas, request, shed, now, None)
        request = tracked.request
        views = self._candidate_views(candidate_replicas, now)
        if tracked.hedge_of is not None:
            avoid = self._call_replica.get(tracked.hedge_of)
            views = [v for v in views if v.replica_id != avoid]
            if not views:
                shed = Shed("no_hedge_replica", 1.0, request.rule_ids)
                return self._shed(pending_request, candidate_replicas, request, shed, now, None)
        started = time.perf_counter()
        views, decision = with_room(request, views)
        if decision is None:
            decision = self.core.choose(request, views, now)
        decision_us = (time.perf_counter() - started) * 1e6
        carrier = pending_request.kwargs.get(TRACE_KWARG)  # only sampled contexts travel (with_trace)
        if isinstance(decision, Route):
            replica = self._by_key.get(decision.replica_id)
            if carrier:
                self._route_span(pending_request.kwargs, carrier, request, decision, now, decision_us)
            if tracked.http is not None:
                decided = dict(tracked.meta)
                if pending_request.kwargs.get(TRACE_KWARG):
                    decided["trace"] = pending_request.kwargs[TRACE_KWARG]
                stamp(pending_request.args, tracked.http, decided)
            self._event("route", request, decision.reason, now, decision.replica_id, decision.predicted_ms,
                        decision_us)  # fmt: skip
            return [[replica]] if replica is not None else []
        if isinstance(decision, Wait):
            pending_request.routing_context.should_backoff = True
            self._event("wait", request, decision.reason, now, None, None, decision_us, carrier)
            return []
        return self._shed(pending_request, candidate_replicas, request, decision, now, decision_us, carrier)

    def _route_span(self, kwargs: dict, carrier: Any, request: Request, decision: Route, now: float,
                    decision_us: float) -> None:  # fmt: skip
        """A sampled request was routed: an ``agentic.route`` span under the caller's span, back-dated to
        the decision, whose context replaces the carried one (the replica's spans become its children)."""
        try:
            attrs = {
                "agentic.outcome": "route",
                "agentic.request_id": str(request.id),
                "agentic.qos": request.qos,
                "agentic.reason": str(decision.reason or ""),
                "agentic.replica_id": str(decision.replica_id),
                "agentic.policy_version": self.policy.version,
                "agentic.rule_ids": list(request.rule_ids),
            }
            if not math.isnan(decision.predicted_ms):
                attrs["agentic.predicted_ms"] = float(decision.predicted_ms)
            start_ns = int(now * 1e9)
            s = tracing.tracer().start_span(
                "agentic.route", context=tracing.extract(carrier), attributes=attrs, start_time=start_ns
            )
            if s.get_span_context().trace_flags.sampled:
                kwargs[TRACE_KWARG] = tracing.inject(otel_trace.set_span_in_context(s))
            s.end(end_time=start_ns + int(decision_us * 1000.0))
        except Exception:  # telemetry must not break serving
            pass

    def _track(self, pending_request: PendingRequest, internal_id: str, now: float, http: Any = None) -> _Tracked:
        kwargs = pending_request.kwargs
        if http is not None:
            headers = scope_headers(http.asgi_scope)
            meta = meta_from_headers(headers)
            carrier = trace_carrier(headers)
            if tracing.is_sampled(carrier):
                kwargs[TRACE_KWARG] = carrier
        else:
            meta = pop_meta(kwargs)
        classification = self.policy.classify(request_meta(meta), now)
        deadline = meta.get("deadline")
        request = to_request(classification, internal_id, now, deadline, meta.get("model"))
        meta["deadline"] = request.deadline
        meta["qos"] = request.qos
        if http is None:
            kwargs[META_KWARG] = meta
        tracked = _Tracked(request, id(pending_request.future), meta.get(CALL_ID), meta.get(HEDGE_OF))
        if http is not None:
            tracked.http, tracked.meta = http, meta
        self._tracked[internal_id] = tracked
        if len(self._tracked) > _MAX_TRACKED:
            self._tracked.popitem(last=False)
        return tracked

    def _candidate_views(self, candidates: list[RunningReplica], now: float) -> list[ReplicaView]:
        cache = self.replica_queue_len_cache
        views: list[ReplicaView] = []
        if any(_replica_key(r.replica_id) not in self._views for r in candidates):
            self._rebuild_views(candidates)  # replicas seen before this router's first update
        for r in candidates:
            key = _replica_key(r.replica_id)
            view = self._views.get(key)
            if view is None:
                continue
            cached = cache.get(r.replica_id)
            ongoing = cached if cached is not None else view.ongoing
            view.ongoing = ongoing
            view.queued_by_priority = self._queued_estimate(key, ongoing, view.slots)
            view.healthy = self.breaker.available(key, now)
            views.append(view)
        return views

    def _queued_estimate(self, key: str, ongoing: int, slots: int) -> dict[int, int]:
        """Queued work per priority: the replica's report or this router's own in-flight count, whichever
        is larger (reports lag by a stats period; this router knows what it sent), then trimmed so that at
        least ``min(ongoing, slots)`` requests count as executing (work ahead of any arrival)."""
        reported = self._reported_queued.get(key, {})
        own = self._inflight.get(key, {})
        merged = {p: max(reported.get(p, 0), own.get(p, 0)) for p in set(reported) | set(own)}
        excess = sum(merged.values()) - max(0, ongoing - min(ongoing, slots))
        for p in sorted(merged, reverse=True):  # executing work is taken from the least urgent first
            if excess <= 0:
                break
            take = min(excess, merged[p])
            merged[p] -= take
            excess -= take
        return {p: n for p, n in merged.items() if n > 0}

    def _shed(self, pending_request, candidates, request: Request, shed: Shed, now: float, decision_us,
              carrier: Any = None) -> list:  # fmt: skip
        self._event("shed", request, shed.reason, now, None, shed.predicted_ms, decision_us, carrier)
        tracked = self._tracked.pop(pending_request.metadata.internal_request_id, None)
        error: Exception = shed_error(shed)
        if tracked is not None and tracked.http is not None:
            error = HttpShed.of(error)  # Serve's proxy answers it with its status, JSON body, Retry-After
        return self._fail(pending_request, candidates, error)

    def _fail(self, pending_request: PendingRequest, candidates: list[RunningReplica], error: Exception) -> list:
        if not pending_request.future.done():
            pending_request.future.set_exception(error)
        self._remove_pending_request_from_indices(pending_request)
        # One candidate, so Serve's loop yields, sees the finished future and stops routing it.
        return [candidates[:1]] if candidates else []

    def _event(self, outcome, request: Request, reason, now, replica_id, predicted_ms, decision_us,
               carrier: Any = None) -> None:  # fmt: skip
        """Report a decision: a pushed tuple, or a ``DecisionEvent`` for hooks without ``push`` and for
        requests carrying a sampled trace (the hook then traces it under the caller's span). A routed
        sampled request passes no ``carrier`` here: ``_route_span`` traced it already.
        (``benchmarks/telemetry_overhead.py`` times this method.)"""
        push = self._push
        if push is not None and not carrier:
            push(("router", outcome, request.id, request.qos, reason, replica_id, predicted_ms,
                  (request.deadline - now) * 1000.0, request.rule_ids, self.policy.version, decision_us,
                  now))  # fmt: skip
            return
        if self._hook_off:
            return
        pm = None if predicted_ms is None or math.isnan(predicted_ms) else predicted_ms
        safe_record(
            self.hook,
            DecisionEvent("router", outcome, str(request.id), request.qos, reason, replica_id, pm,
                          request.remaining_ms(now), request.rule_ids, self.policy.version, decision_us, now,
                          extra={"trace": carrier} if carrier else {}),
        )  # fmt: skip

    # -- feedback -------------------------------------------------------------------------------------
    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        """The replica accepted the request: count it pending there."""
        internal_id = pending_request.metadata.internal_request_id
        tracked = self._tracked.get(internal_id)
        if tracked is None:
            return
        now = time.time()
        key = _replica_key(replica_id)
        tracked.replica_id = key
        tracked.routed_at = now
        if tracked.call_id is not None:
            self._call_replica[tracked.call_id] = key
            if len(self._call_replica) > _MAX_TRACKED:
                self._call_replica.popitem(last=False)
        self.core.on_dispatch(tracked.request, key, now)
        counts = self._inflight.setdefault(key, {})
        prio = tracked.request.priority
        counts[prio] = counts.get(prio, 0) + 1
        self.breaker.on_dispatch(key, now)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        """The request finished (any outcome): it is no longer pending at its replica."""
        tracked = self._tracked.pop(internal_request_id, None)
        if tracked is None or tracked.replica_id is None:
            return
        counts = self._inflight.get(tracked.replica_id)
        prio = tracked.request.priority
        if counts and counts.get(prio, 0) > 0:
            counts[prio] -= 1
        now = time.time()
        latency_ms = (now - tracked.routed_at) * 1000.0
        self.core.observe(tracked.request, tracked.replica_id, math.nan, latency_ms, True, now)
