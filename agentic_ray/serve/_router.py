"""``AgenticRequestRouter``: Ray Serve's ``RequestRouter`` driven by the pure routing state.

One instance runs in every caller process (the driver of handle calls, each ingress replica, each
proxy). The decisions are made by ``scheduling.routing_state.RoutingState`` (the circuit breaker fed from
the replicas' published totals, the retry budget, hedges, the queued-work estimates, the front door's
per-class queue room) around the pure ``agentic`` router, the same object the simulator drives; this
adapter only does Serve's I/O. Per routing attempt (``choose_replicas``) it

1. reads the request's metadata from the call kwargs (``meta.pop_meta``: ``_agentic`` or the bare
   ``qos``/``budget_ms``/... keywords), classifies it with the compiled policy at ``now = time.time()``
   and fixes its absolute deadline in ``kwargs["_agentic"]`` so the replica's gate sees the same one.
   A direct HTTP request (this router running in Serve's proxy, ``http_direct``) carries its metadata
   in headers instead: the router reads them from the proxy's ASGI scope and writes its decision back
   into the scope when it routes; a bad header is routed with the error so the replica answers 400.
   A stream request (``prompt_tokens`` / ``max_tokens`` in the metadata, or ``x-prompt-tokens`` /
   ``x-max-tokens``) of a class with ``ttft_ms`` is ranked by predicted time to first token
   (``scheduling.streams``; the routing state learns each replica's rates from its published streams).
   A new request is admitted to the routing state (``admit``: a hedge, one whose metadata names
   ``hedge_of``, pays from the retry budget); a request that comes back after a replica rejected it
   (Serve's retry, recognisable by its reset future) is a ``retry`` there;
2. hands the state the candidates with their ongoing counts from Serve's router-local queue-length
   cache; the replicas' published ``record_replica_metadata`` / ``record_routing_stats`` (typed as
   ``scheduling.reports.ReplicaMetadata`` / ``RoutingStats``) reach the state at every replica update;
3. acts on the decision:

   - ``Route``  -> returns ``[[replica]]`` (a singleton rank: Serve sends there, or re-asks if full);
   - ``Wait``   -> sets ``routing_context.should_backoff`` and returns ``[]`` (Serve backs off, re-asks),
     except for a request that may be shed and is not of the most urgent class while other requests
     queue for one of Serve's routing tasks (at most twice the replicas; the rest wait first come, first
     served, where priority cannot act): holding it would make critical work wait behind it, so it is
     shed (``Overloaded(reason="router_backlog")``);
   - ``Shed``   -> fails ``pending_request.future`` with a typed ``AdmissionError`` (``BudgetExhausted``,
     ``Overloaded``, ``NoEligibleReplica``, or ``CircuitOpen`` when every replica the request may use is
     ejected by its breaker, with ``retry_after_s`` and the rule ids; for a direct HTTP request
     ``http_direct.HttpShed``, which the proxy answers as 429/503 with a JSON body), removes the request
     from the router's indices, and returns one candidate so Serve's routing loop sees the finished
     future and stops (raising inside ``choose_replicas`` would be swallowed and hang the request: Ray
     2.60's ``RequestRouter._fulfill_pending_requests`` logs any exception and leaves the future pending).

Early refusal (``refuse_early``): ``serve.call`` asks the router of its process, in the caller's thread,
whether it would refuse a handle call before choosing a replica (``RoutingState.refuse_early``: no room
for the class anywhere, and optionally the pressure rule); if so the caller raises the same typed error
at once, and the refusal is recorded on this router's loop as its own (``serve._handle_throttle``).

``on_request_routed`` / ``on_request_completed`` tell the state where the request went and that it ended;
a replica whose actor died or became unavailable is a failure for its breaker. Every decision goes to the
decision hook.

Telemetry (``telemetry=True``, the ``@agentic_ray.deployment`` default; see ``hooks``): per decision the
router pushes one plain tuple in ``DecisionEvent`` field order with the hook's ``push``, a C-level list
append, and goes through ``record`` only for hooks without ``push``
or for a request that carries a sampled trace (``kwargs["_agentic_trace"]``, put there by
``tracing.with_trace`` in the caller or by the HTTP ingress). For such a request a ``Route`` opens an
``agentic.route`` span under the caller's span and replaces the carried context with its own, so the
replica's ``agentic.queue`` / ``agentic.execute`` spans chain caller -> route -> queue/execute; wait and
shed decisions become ``agentic.route`` spans under the caller's span through the hook. ``decision_us``
is the time the state's ``with_room`` and the pure router's ``choose`` took. The policy's full sha256 is
registered with the hook (``register_policy``) and its version set on ``agentic_policy_version_info``;
breaker transitions go to ``agentic_breaker_state`` (checked at every replica update and after a replica
failed, so an ``open -> half_open`` transition by time shows at the next stats period).

Control plane (``serve/_plane.py``): the router joins its process's ``ServePlane`` as a member with an id
of its own (``<driver|proxy|replica>:<node>:<pid>:<n>``); with a control plane it registers, follows its
deployment's published policy (``_switch_policy``, run on the router's loop between decisions: a request
keeps the policy version that classified it, and its decision records carry that version) and
acknowledges the version it runs; the requests it sheds itself are counted per class (``ServeTally``) and
reported to its node's agent. Decision records name a request by Serve's request id
(``RequestMetadata.request_id``: the HTTP request's id, the same at an ingress and at the replica's gate),
so one request's records join in the decision log.

Configuration (``RequestRouterConfig.request_router_kwargs``, JSON): ``policy_yaml`` (text; default:
the built-in policy), ``seed``, ``router`` (keyword config of the pure router: ``safety_margin``,
``margin_ms``, ``default_service_ms``), ``pressure_ms`` (the replicas' delay target: less urgent work
is refused here while the delay a replica reports on the path to it is over that, doubled per level
of urgency; ``scheduling.pressure``; None: never), ``decision_hook`` (import path, see ``hooks``),
``ungated_methods`` (method names routed without the policy: Serve's least-queue choice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from typing import Any

from opentelemetry import trace as otel_trace
from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from agentic_ray import _identity
from agentic_ray.control._serve_tally import drift_workflow
from agentic_ray.errors import (
    AdmissionError,
    BudgetExhausted,
    CircuitOpen,
    EntitlementError,
    NoEligibleReplica,
    Overloaded,
    PolicyError,
)
from agentic_ray.policies import Policy, default_policy, parse_policy
from agentic_ray.policies.types import Shedding
from agentic_ray.scheduling.registry import create_router
from agentic_ray.scheduling.reports import ReplicaMetadata, RoutingStats
from agentic_ray.scheduling.routing_state import ReplicaReport, RoutingState
from agentic_ray.scheduling.streams import stream_router_for
from agentic_ray.scheduling.types import Request, Route, Shed, Wait
from agentic_ray.serve import _door as door
from agentic_ray.serve import _handle_throttle
from agentic_ray.serve._door_call import DOOR_CALL, JSON_CALL_KEY
from agentic_ray.serve._hooks import DecisionEvent, NoopHook, hook_push, load_hook, register_policy, safe_record
from agentic_ray.serve._http_auth import AuthError, HttpAuth
from agentic_ray.serve._http_direct import (
    HttpShed,
    caller_meta,
    http_request_of,
    refusal,
    scope_headers,
    stamp,
    trace_carrier,
)
from agentic_ray.serve._meta import (
    CALL_ID,
    HEDGE_OF,
    META_KWARG,
    ROUTED_AT,
    WORKFLOW_DEADLINE,
    pop_meta,
    request_meta,
    to_request,
    with_tokens,
)
from agentic_ray.telemetry import tracing
from agentic_ray.telemetry.tracing import TRACE_KWARG

__all__ = ["AgenticRequestRouter", "shed_error"]

log = logging.getLogger(__name__)

_MAX_TRACKED = 100_000


def shed_error(shed: Shed, target: str = "") -> AdmissionError:
    """The typed error a caller gets for a router ``Shed`` decision (``target``: what was refused, for
    ``CircuitOpen``)."""
    reason = shed.reason
    detail = f"shed by the agentic router: {reason}"
    if not math.isnan(shed.predicted_ms):
        detail += f" (predicted {shed.predicted_ms:.1f} ms)"
    if reason == "no_eligible_replica":
        return NoEligibleReplica(detail, reason=reason, rule_ids=shed.rule_ids)
    if reason == "no_healthy_replica":
        return CircuitOpen(target, shed.retry_after_s, detail=detail, reason=reason, rule_ids=shed.rule_ids)
    if reason in ("deadline_passed", "cannot_meet_deadline", "cannot_meet_ttft"):
        return BudgetExhausted(detail, reason=reason, rule_ids=shed.rule_ids, retry_after_s=shed.retry_after_s)
    return Overloaded(detail, reason=reason, rule_ids=shed.rule_ids, retry_after_s=shed.retry_after_s)


def _early_request(classification: Any, meta: dict[str, Any], now: float) -> Request:
    """The ``Request`` a call classified as ``classification`` with wire dict ``meta`` would be, for the
    checks made before it reaches this router's thread (``refuse_early``, ``has_room``)."""
    return to_request(classification, meta.get(CALL_ID), now, meta.get("deadline"), meta.get("model"),
                      meta.get(WORKFLOW_DEADLINE))  # fmt: skip


class _Call:
    """The Serve side of a tracked request (``Flight.context``): its future, for a direct HTTP request
    the proxy's ``StreamingHTTPRequest`` and the metadata to stamp into it, the id its decision records
    carry (``rid``: Serve's request id), the policy version that classified it and its drift workflow."""

    __slots__ = ("drift", "future_id", "held", "http", "meta", "rid", "shadow", "version")

    def __init__(self, future_id: int, http: Any = None, meta: dict[str, Any] | None = None, rid: Any = None,
                 version: str | None = None, drift: str | None = None, held: bool = False) -> None:  # fmt: skip
        self.future_id = future_id
        self.http = http
        self.meta = meta or {}
        self.rid = rid
        self.version = version
        self.drift = drift
        self.shadow: Any = None  # the shadow policy's classification, until the request is routed
        # an HTTP request, on Serve's path or sent by the proxy's door (which holds and paces its clients):
        # no pressure rule, no router_backlog refusal (see ``_decide``)
        self.held = held or http is not None


def _node_id() -> str | None:
    """This process's Ray node id (None outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        return None


def _replica_key(replica_id: ReplicaID) -> str:
    return replica_id.unique_id


def _report(replica: RunningReplica) -> ReplicaReport:
    """What ``replica`` published, typed; a report that does not parse counts as none (logged)."""
    key = _replica_key(replica.replica_id)
    try:
        metadata = ReplicaMetadata.from_dict(replica.replica_metadata)
    except ValueError as exc:
        log.warning("replica %s published bad metadata (%s); using defaults", key, exc)
        metadata = ReplicaMetadata()
    try:
        stats = RoutingStats.from_dict(replica.routing_stats)
    except ValueError as exc:
        log.warning("replica %s published bad routing stats (%s); ignoring them", key, exc)
        stats = None
    return ReplicaReport(key, metadata, stats, float(replica.max_ongoing_requests), replica.node_id or "")


class AgenticRequestRouter(RequestRouter):
    """Deadline- and placement-aware Serve request router (see the module docstring)."""

    state: RoutingState | None = None  # built by initialize_state
    door_slots: int = 0  # the slots its replicas publish, summed (``_rebuild``): the proxy's door sizes by it
    door_direct: bool = False  # every replica answers the door's direct call (``_door_call.JSON_CALL_KEY``)

    def initialize_state(self, **kwargs: Any) -> None:
        """Build the policy, the routing state (pure router, breaker, retry budget) and the hook from
        ``request_router_kwargs``."""
        text = kwargs.get("policy_yaml")
        self.policy: Policy = parse_policy(text, source="<deployment policy>") if text else default_policy()
        self.http_auth = HttpAuth.from_config(kwargs.get("http_auth"))
        core = create_router(
            "agentic", random.Random(int(kwargs.get("seed", 0))), classes=self.policy.classes,
            **dict(kwargs.get("router") or {}),
        )  # fmt: skip
        self.state = RoutingState(
            core, breaker=self.policy.breaker, retry=self.policy.retry, max_tracked=_MAX_TRACKED,
            timer=time.perf_counter_ns, streams=stream_router_for(self.policy.classes),
            pressure_ms=kwargs.get("pressure_ms"),
        )  # fmt: skip
        self.hook = load_hook(kwargs.get("decision_hook"))
        self._push = hook_push(self.hook)
        self._hook_off = isinstance(self.hook, NoopHook)
        # With a decision log, each admitted request also gets an ``arrive`` record with what a replay needs
        # (tenant, workflow, stage, model, data class: ``agentic-ray trace export``).
        self._log_arrivals = getattr(self.hook, "decision_log", None) is not None
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
        self._top_priority = min((c.priority for c in self.policy.classes.values()), default=0)
        self._backoff_cap_s = float(getattr(self, "max_backoff_s", 0.5) or 0.5)
        self._by_key: dict[str, RunningReplica] = {}
        deployment_id = self._deployment_id  # set by RequestRouter.__init__
        self._target = f"deployment {deployment_id.app_name}/{deployment_id.name}" if deployment_id is not None else ""
        self._agentic_loop: Any = None  # this router's event loop, once it routed (policy switches run there)
        self._shadow: Policy | None = None  # a shadow policy evaluated beside ``policy`` (``_set_shadow``)
        self._asked: Any = None  # the last request's metadata as asked (for the shadow)
        self.shadow_counts: dict[str, Any] | None = None
        self._tally: Any = None
        if deployment_id is not None:
            _handle_throttle.register(deployment_id, self)  # ``serve.call`` throttles with this router's policy
            self._join_control_plane(f"{deployment_id.app_name}/{deployment_id.name}")

    def _join_control_plane(self, deployment: str) -> None:
        """Become a member of this process's ``ServePlane`` (registration, live policy, shed reports)."""
        try:
            from agentic_ray.serve._plane import RouterMember, member_id, plane

            kind = {"PROXY": "proxy", "REPLICA": "replica"}.get(self._handle_source.name, "driver")
            node_id = _node_id()
            member = RouterMember(self, member_id(kind, node_id), deployment, node_id or "", self.policy.to_yaml())
            self._tally = member.tally
            plane().add(member)
        except Exception as exc:  # the control plane is optional: serving goes on without it
            log.debug("agentic router: not joining the control plane: %r", exc)

    def _switch_policy(self, policy: Policy) -> None:
        """Route with ``policy`` from the next decision on (called on this router's loop)."""
        self.policy = policy
        self._top_priority = min((c.priority for c in policy.classes.values()), default=0)
        self.state.reconfigure(policy.classes, policy.breaker, policy.retry)
        register_policy(self.hook, policy.version, policy.sha256)
        if self.metrics is not None:
            with contextlib.suppress(Exception):  # telemetry must not break serving
                self.metrics.policy_version(policy.version)

    # -- shadow policy --------------------------------------------------------------------------------
    def _set_shadow(self, policy: Policy | None) -> None:
        """Evaluate ``policy`` beside the live one on every request from now on (None: stop); it acts on
        nothing. Counts restart with a new shadow policy."""
        if policy is None:
            self._shadow, self.shadow_counts = None, None
        elif self._shadow is None or self._shadow.sha256 != policy.sha256:
            self._shadow = policy
            self.shadow_counts = {"sha": policy.sha256, "evaluated": 0, "would_refuse": 0,
                                  "would_place_elsewhere": 0, "would_shed": 0}  # fmt: skip

    def _shadow_admit(self, request: Request, call: _Call, now: float) -> None:
        """Classify the request as asked under the shadow policy: a refusal is counted, a classification
        kept for the routing decision (``_shadow_route``)."""
        counts, shadow = self.shadow_counts, self._shadow
        if counts is None or shadow is None or self._asked is None:
            return
        counts["evaluated"] += 1
        try:
            call.shadow = shadow.classify(self._asked, now)
        except (PolicyError, ValueError):
            self._shadow_differs("would_refuse", request, now, call, None, None)

    def _shadow_route(self, request: Request, call: _Call, decision: Route, now: float) -> None:
        """The live decision routed to ``decision.replica_id``: would the shadow place it there, and would
        its budget be met there?"""
        c, call.shadow = call.shadow, None
        view = self.state.view(decision.replica_id)
        if c.allows is not None and view is not None and not c.allows(view.attrs):
            self._shadow_differs("would_place_elsewhere", request, now, call, decision.replica_id, None)
            return
        predicted = decision.predicted_ms
        may_shed = c.qos.shedding.value != "never"
        if may_shed and not math.isnan(predicted) and predicted > (c.deadline - now) * 1000.0:
            self._shadow_differs("would_shed", request, now, call, decision.replica_id, predicted)

    def _shadow_differs(self, what: str, request: Request, now: float, call: _Call, replica_id: Any,
                        predicted: float | None) -> None:  # fmt: skip
        """Count a difference; the first 10 of each kind and every 20th after go to the decision log
        (outcome ``shadow``, reason the difference, the shadow's version)."""
        counts, shadow = self.shadow_counts, self._shadow
        if counts is None or shadow is None:
            return
        counts[what] += 1
        n = counts[what]
        if (n <= 10 or n % 20 == 0) and not self._hook_off:
            safe_record(self.hook, DecisionEvent("router", "shadow", str(call.rid or request.id), request.qos, what,
                                                 replica_id, predicted, request.remaining_ms(now), request.rule_ids,
                                                 shadow.version, None, now))  # fmt: skip

    # -- replica facts --------------------------------------------------------------------------------
    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        """Hand every replica's published facts and stats to the routing state (then Serve's own update)."""
        super().update_replicas(replicas)
        if self.state is not None:  # Serve may publish replicas before initialize_state
            self._rebuild(replicas)

    def _rebuild(self, replicas: list[RunningReplica]) -> None:
        now = time.time()
        reports = [_report(r) for r in replicas]
        self.state.update_replicas(reports, now)
        self.door_slots = sum(r.metadata.slots for r in reports)
        self.door_direct = bool(replicas) and all((r.replica_metadata or {}).get(JSON_CALL_KEY) for r in replicas)
        self._by_key = {_replica_key(r.replica_id): r for r in replicas}
        for gone in set(self._breaker_states) - set(self._by_key):
            self._breaker_states.pop(gone, None)
        if self.metrics is not None:
            for key in self._by_key:
                self._publish_breaker(key, now)

    def _publish_breaker(self, key: str, now: float) -> None:
        """Set ``agentic_breaker_state`` for ``key`` when its breaker state changed since last published."""
        metrics = self.metrics
        if metrics is None:
            return
        try:
            state = self.state.breaker_state(key, now).value
            if self._breaker_states.get(key) != state:
                self._breaker_states[key] = state
                metrics.breaker_state(key, state)
        except Exception:  # telemetry must not break serving
            pass

    def _replica_failed(self, replica_id: ReplicaID) -> None:
        key, now = _replica_key(replica_id), time.time()
        self.state.replica_failed(key, now)
        self._publish_breaker(key, now)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._replica_failed(replica_id)

    def on_replica_actor_unavailable(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_unavailable(replica_id)
        self._replica_failed(replica_id)

    # -- routing --------------------------------------------------------------------------------------
    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        """One routing attempt: route, wait or shed ``pending_request`` (see the module docstring)."""
        if pending_request is None or pending_request.future.done():
            return [candidate_replicas[:1]] if candidate_replicas else []
        if self._agentic_loop is None:
            self._agentic_loop = asyncio.get_running_loop()
        if pending_request.metadata.call_method in self.ungated_methods:
            return [candidate_replicas]  # control calls: Serve's least-queue choice, no policy
        now = time.time()
        key = pending_request.metadata.internal_request_id
        flight = self.state.flight(key)
        if flight is None:
            return self._admit(pending_request, candidate_replicas, key, now)
        call: _Call = flight.context
        if call.future_id != id(pending_request.future):
            # Serve re-routes a request a replica rejected: a retry, paid from the retry budget.
            call.future_id = id(pending_request.future)
            shed = self.state.retry(key, now)
            if shed is not None:
                return self._shed(pending_request, candidate_replicas, flight.request, shed, now, None, call)
        return self._decide(pending_request, candidate_replicas, key, now)

    def _blocks_routing(self, request: Request) -> bool:
        """True when ``request`` may be shed, is not of the most urgent class, and waiting would hold one
        of Serve's few routing tasks (at most twice the replicas) while other requests queue for one in
        Serve's first-come-first-served queue, where a critical request would wait behind it."""
        if request.shedding is Shedding.NEVER or request.priority <= self._top_priority:
            return False
        backlog = self._pending_requests_to_route
        while backlog and backlog[0].future.done():
            backlog.popleft()  # Serve skips these too (lazy cleanup)
        return bool(backlog)

    def _admit(self, pending_request: PendingRequest, candidates: list[RunningReplica], key: str, now: float) -> list:
        """Classify a new request and start tracking it (a hedge pays here), then decide."""
        http = http_request_of(pending_request.args) if pending_request.metadata.is_http_request else None
        try:
            request, meta = self._classify(pending_request, key, now, http)
        except (PolicyError, ValueError, AuthError) as exc:
            self._refused(key, exc, now)
            if http is not None and candidates:
                # The replica answers 400/401/403 at once, without a slot; a proxy cannot send those itself.
                status, headers, body = refusal(exc)
                stamp(pending_request.args, http, {"error": body, "status": status, "headers": headers})
                return [candidates]
            return self._fail(pending_request, candidates, exc)
        workflow = meta.get("workflow")
        route = meta.get(DOOR_CALL)  # sent by the proxy's door for its route: held there, as HTTP requests are
        if isinstance(route, str):
            door.seen({"root_path": route}, self)  # this router answers for the route now (a redeploy's new one)
        call = _Call(id(pending_request.future), http, meta if http is not None else None,
                     pending_request.metadata.request_id, self.policy.version,
                     drift_workflow(workflow, meta.get("stage")) if workflow else None,
                     held=isinstance(route, str))  # fmt: skip
        if self._shadow is not None:
            self._shadow_admit(request, call, now)
        if self._log_arrivals:
            self._arrival(request, meta, call, now)
        tally = self._tally
        if tally is not None:
            tally.offer(request.qos)
        shed = self.state.admit(key, request, now, call_id=meta.get(CALL_ID), hedge_of=meta.get(HEDGE_OF),
                                context=call)  # fmt: skip
        if shed is not None:
            return self._shed(pending_request, candidates, request, shed, now, None, call)
        return self._decide(pending_request, candidates, key, now)

    def _arrival(self, request: Request, meta: dict[str, Any], call: _Call, now: float) -> None:
        attrs = {k: meta.get(k) for k in ("tenant", "workflow", "stage", "data_class")}
        attrs["model"] = request.model
        event = ("router", "arrive", call.rid if call.rid is not None else request.id, request.qos, "", None, None,
                 request.remaining_ms(now), request.rule_ids, call.version, None, now, {"request": attrs})  # fmt: skip
        if self._push is not None:
            self._push(event)
        else:
            safe_record(self.hook, DecisionEvent._make(event))

    def _classify(self, pending_request: PendingRequest, key: str, now: float, http: Any) -> tuple[Request, dict]:
        """The request's metadata (kwargs, or a direct HTTP request's headers) classified by the policy;
        its deadline and class are written back where the replica's gate reads them."""
        kwargs = pending_request.kwargs
        if http is not None:
            door.seen(http.asgi_scope, self)  # the proxy's door throttles this route from now on
            headers = scope_headers(http.asgi_scope)
            meta = caller_meta(self.http_auth, headers)
            carrier = trace_carrier(headers)
            if tracing.is_sampled(carrier):
                kwargs[TRACE_KWARG] = carrier
        else:
            meta = pop_meta(kwargs)
            _identity.run_as(self.policy, meta)  # a handle call from a bound process runs as its tenant
        asked = request_meta(meta)
        if self._shadow is not None:
            self._asked = asked
        classification = self.policy.classify(asked, now)
        request = to_request(
            classification, key, now, meta.get("deadline"), meta.get("model"), meta.get(WORKFLOW_DEADLINE)
        )
        request = with_tokens(request, meta)
        meta["deadline"] = request.deadline
        meta["qos"] = request.qos
        if http is None:
            kwargs[META_KWARG] = meta
        return request, meta

    def _candidates(self, candidates: list[RunningReplica]) -> list[tuple[str, int | None]]:
        """``(replica key, ongoing from Serve's queue-length cache)`` per candidate."""
        state = self.state
        if any(not state.knows(_replica_key(r.replica_id)) for r in candidates):
            self._rebuild(candidates)  # replicas seen before this router's first update
        cache = self.replica_queue_len_cache
        return [(_replica_key(r.replica_id), cache.get(r.replica_id)) for r in candidates]

    def _decide(self, pending_request: PendingRequest, candidates: list[RunningReplica], key: str, now: float) -> list:
        flight = self.state.flight(key)
        request, call = flight.request, flight.context  # type: ignore[union-attr]
        # No pressure rule for HTTP requests: an instant 429 to a client that does not back off comes straight
        # back, and at high concurrency answering those saturates the proxy, which keeps the delay high (a
        # latch: critical work then expired in the proxy's queues). Over HTTP the replica's own delay limit
        # holds less urgent work in its gate instead, which paces the clients (and the proxy's door holds
        # the requests it sends by handle call: ``_door_call``).
        decision = self.state.decide(key, now, self._candidates(candidates), pressure=not call.held)
        decision_ns = self.state.decision_ns
        decision_us = decision_ns / 1000.0 if decision_ns is not None else None
        carrier = pending_request.kwargs.get(TRACE_KWARG)  # only sampled contexts travel (with_trace)
        if isinstance(decision, Route):
            replica = self._by_key.get(decision.replica_id)
            if call.shadow is not None:
                self._shadow_route(request, call, decision, now)
            if carrier:
                self._route_span(pending_request.kwargs, carrier, request, decision, now, decision_us)
            if call.http is None:
                wire = pending_request.kwargs.get(META_KWARG)
                if wire is not None:
                    wire[ROUTED_AT] = now  # the replica measures the trip to its gate from it
            else:
                decided = dict(call.meta)
                if pending_request.kwargs.get(TRACE_KWARG):
                    decided["trace"] = pending_request.kwargs[TRACE_KWARG]
                stamp(pending_request.args, call.http, decided)
            self._event("route", request, decision.reason, now, decision.replica_id, decision.predicted_ms,
                        decision_us, log_id=call.rid, version=call.version)  # fmt: skip
            return [[replica]] if replica is not None else []
        if isinstance(decision, Wait):
            if not call.held and self._blocks_routing(request):  # not over HTTP: see the pressure rule
                shed = Shed("router_backlog", self._backoff_cap_s, request.rule_ids, math.nan)
                return self._shed(pending_request, candidates, request, shed, now, decision_us, call, carrier)
            pending_request.routing_context.should_backoff = True
            self._event("wait", request, decision.reason, now, None, None, decision_us, carrier, log_id=call.rid,
                        version=call.version)  # fmt: skip
            return []
        return self._shed(pending_request, candidates, request, decision, now, decision_us, call, carrier)

    def _route_span(self, kwargs: dict, carrier: Any, request: Request, decision: Route, now: float,
                    decision_us: float | None) -> None:  # fmt: skip
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
            s.end(end_time=start_ns + int((decision_us or 0.0) * 1000.0))
        except Exception:  # telemetry must not break serving
            pass

    def _shed(self, pending_request, candidates, request: Request, shed: Shed, now: float, decision_us,
              call: _Call | None, carrier: Any = None) -> list:  # fmt: skip
        if call is not None:
            self._event("shed", request, shed.reason, now, None, shed.predicted_ms, decision_us, carrier,
                        log_id=call.rid, version=call.version)  # fmt: skip
            if self._tally is not None:
                self._tally.shed(request.qos, shed.reason, (now - request.arrival) * 1000.0, call.drift)
        else:
            self._event("shed", request, shed.reason, now, None, shed.predicted_ms, decision_us, carrier)
        error: Exception = shed_error(shed, self._target)
        if call is not None and call.http is not None:
            error = HttpShed.of(error)  # Serve's proxy answers it with its status, JSON body, Retry-After
        return self._fail(pending_request, candidates, error)

    def _fail(self, pending_request: PendingRequest, candidates: list[RunningReplica], error: Exception) -> list:
        if not pending_request.future.done():
            pending_request.future.set_exception(error)
        self._remove_pending_request_from_indices(pending_request)
        # One candidate, so Serve's loop yields, sees the finished future and stops routing it.
        return [candidates[:1]] if candidates else []

    def _event(self, outcome, request: Request, reason, now, replica_id, predicted_ms, decision_us,
               carrier: Any = None, *, log_id: Any = None, version: str | None = None) -> None:  # fmt: skip
        """Report a decision: a pushed tuple (``DecisionEvent`` field order), or ``record`` for hooks
        without ``push`` and for requests carrying a sampled trace (the hook then traces it under the
        caller's span). A routed sampled request passes no ``carrier`` here: ``_route_span`` traced it
        already. ``log_id``: the id the record names the request by (default ``request.id``);
        ``version``: the policy version that classified it (default the router's current one).
        (``benchmarks/telemetry_overhead.py`` times this method.)"""
        rid = request.id if log_id is None else log_id
        if version is None:
            version = self.policy.version
        push = self._push
        if push is not None and not carrier:
            push(("router", outcome, rid, request.qos, reason, replica_id, predicted_ms,
                            (request.deadline - now) * 1000.0, request.rule_ids, version, decision_us,
                            now, None))  # fmt: skip
            return
        if self._hook_off:
            return
        pm = None if predicted_ms is None or math.isnan(predicted_ms) else predicted_ms
        safe_record(
            self.hook,
            DecisionEvent("router", outcome, str(rid), request.qos, reason, replica_id, pm,
                          request.remaining_ms(now), request.rule_ids, version, decision_us, now,
                          extra={"trace": carrier} if carrier else None),
        )  # fmt: skip

    def _refused(self, key: str, error: Exception, now: float) -> None:
        """Report a request refused before it was classified (no or unknown API key, a tenant it may not
        claim, an entitlement it lacks, a header that cannot be classified): outcome ``refuse``, always
        written to the decision log when one is configured, with the entitlement's rule."""
        if self._hook_off:
            return
        if isinstance(error, EntitlementError):
            reason, rules = f"entitlement:{error.entitlement}", (error.rule,)
            qos = str(error.requested) if error.entitlement == "class" else ""
        elif isinstance(error, AuthError):
            reason, rules, qos = f"auth:{error.body['error']}", (), ""
        else:
            reason, rules, qos = "bad_request", (), ""
        event = ("router", "refuse", key, qos, reason, None, None, None, rules, self.policy.version, None, now, None)
        if self._push is not None:
            self._push(event)
        else:
            safe_record(self.hook, DecisionEvent._make(event))

    # -- early refusal, in the caller's thread (serve._handle_throttle) --------------------------------
    def refuse_early(
        self, classification: Any, meta: dict[str, Any], now: float, *, pressure: bool = True
    ) -> AdmissionError | None:
        """The refusal this router would make of a handle call before choosing a replica (no room for its
        class anywhere it may go, or the pressure rule: ``RoutingState.refuse_early``), decided in the
        caller's thread, without the hop to this router's thread and back, which under overload is most of
        such a refusal's latency (the chaos ladder's per-reason p99). ``classification``: the call as this
        router's policy classifies it; ``meta``: its wire metadata as classified (run as the caller's
        tenant; ``serve._handle_throttle`` did both). None: let the router decide (also before it routed
        anything, or on any error here). The refusal is recorded on this router's loop as one of its own
        sheds (decision event, control-plane tally)."""
        state, loop = self.state, self._agentic_loop
        if state is None or loop is None:
            return None
        try:
            log_id = meta.get(CALL_ID)
            request = _early_request(classification, meta, now)
            shed = state.refuse_early(request, now, pressure=pressure)
            if shed is None:
                return None
            workflow = meta.get("workflow")
            drift = drift_workflow(workflow, meta.get("stage")) if workflow else None
            loop.call_soon_threadsafe(self._early_shed, request, shed, now, log_id, self.policy.version, drift)
        except Exception:  # the router decides instead
            return None
        return shed_error(shed, self._target)

    def has_room(self, classification: Any, meta: dict[str, Any], now: float) -> bool:
        """Whether a replica the request may use has room for its class now, as ``refuse_early`` judges it
        without the pressure rule; records nothing (the proxy's door asks it of a request waiting there
        before letting it in). True also when the router cannot judge (before it routed anything, or on
        any error here)."""
        state = self.state
        if state is None or self._agentic_loop is None:
            return True
        try:
            return state.refuse_early(_early_request(classification, meta, now), now, pressure=False) is None
        except Exception:
            return True

    def _early_shed(self, request: Request, shed: Shed, now: float, log_id: Any, version: str, drift: Any) -> None:
        """Record a refusal ``refuse_early`` made in a caller's thread (run on this router's loop)."""
        self._event("shed", request, shed.reason, now, None, shed.predicted_ms, None, log_id=log_id, version=version)
        if self._tally is not None:
            self._tally.offer(request.qos)
            self._tally.shed(request.qos, shed.reason, 0.0, drift)

    # -- feedback -------------------------------------------------------------------------------------
    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        """The replica accepted the request: count it pending there."""
        self.state.routed(pending_request.metadata.internal_request_id, _replica_key(replica_id), time.time())

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        """The request finished (any outcome): it is no longer pending at its replica."""
        self.state.completed(internal_request_id, time.time())
