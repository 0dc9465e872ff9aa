"""RoutingState: everything a router process knows and decides around the pure router, in one object.

Serve's ``AgenticRequestRouter`` (one per caller process) and the simulator both drive it, so the circuit
breaker, the retry budget, hedges and the queue estimates run the same code in both; the Serve adapter
keeps only Serve's I/O (reading ``RunningReplica``, failing futures, HTTP stamping, telemetry).

Replicas. ``update_replicas(reports, now)`` takes what each replica published (``ReplicaReport``: its
``ReplicaMetadata`` and last ``RoutingStats``, typed in ``reports.py``) and rebuilds the ``ReplicaView``
of each: zone, accelerator, labels, cost; slots lowered to the replica's published concurrency limit
while that holds it below them; service time per model measured, else the replica's prior; per class
the room left in its queue. Its running totals of completed and failed calls feed the circuit breaker
(the new successes of a report, then its new failures, so failures at the end of a period count as
consecutive; at most ``consecutive_failures`` of each per report; the first report is a baseline, not
news), and its new service-time samples feed the router's estimators (``observe_service``). A replica
whose view the caller keeps exact itself (the simulator) is added with ``add_replica(view)``.

Queued work. Reports lag by a stats period, while this router knows what it sent. For a reported
replica, the queued work per class priority a decision sees is the larger of the report and this
router's own count of requests it routed there that have not completed, trimmed so that at least
``min(ongoing, slots)`` requests count as executing (work ahead of any arrival; the trim takes from
the least urgent first). A live replica's view is taken as it is.

Requests. ``admit(key, request, now)`` starts tracking a request (a first attempt deposits into the
retry budget); ``decide(key, now)`` returns ``Route``, ``Wait`` or ``Shed``; ``routed`` and
``completed`` follow it to its end. Every decision sees the replicas' breaker states
(``ReplicaView.healthy``), then the room in each class queue (``frontdoor.with_room``), then the delay
each replica reports on the path to it or this router measured on it (``pressure.under_pressure`` and
``pressure.TripDelay``, with ``pressure_ms``: ``routed`` times the trip from a ``Route`` to the
replica's acceptance), then the pure router's ``choose``. A ``Shed`` ends the request's tracking.
``refuse_early(request, now)`` answers, without tracking anything, whether the room or delay check would
shed a request now (another thread may ask it: ``serve.call`` does, in the caller's).

- Retries: ``retry(key, now)`` when a request comes back after a replica refused it (Serve's rejection
  protocol) pays one retry from the ``RetryBudget``; when it is spent the request is shed with
  ``retry_budget_exhausted``.
- Hedges ("The Tail at Scale", Dean & Barroso, CACM 2013): a request admitted with ``hedge_of`` (the
  ``call_id`` of an earlier copy) is paid from the retry budget at admission (else shed with
  ``hedge_budget_exhausted``) and never goes to the replica that copy was routed to (none left:
  ``no_hedge_replica``). ``hedge_after_ms(request)`` is when its caller should send one. With
  ``hedge_running=False`` a hedge is refused (``hedge_first_copy_running``) while the router takes its
  first copy as executing on its replica (the oldest of its requests in flight there, from the router's
  ``running``): where slowness belongs to the request, not the replica, a second copy would be as slow
  and only doubles the replica time; a copy waiting behind another request is still hedged.
- LLM streams (``streams``, a ``streams.StreamRouter``; Serve's router and the simulator give one when
  a class of the policy sets ``ttft_ms``): a stream request (``prompt_tokens`` given) of such a class is
  ranked by its predicted time to first token on each replica, learned from the completed streams the
  replicas publish (``RoutingStats.stream_samples``) or the caller reports (``observe_stream``); other
  requests, and stream requests with no eligible healthy replica, go to the pure router as before.
- Avoidance (``set_avoid``, the control plane's ``avoid_replica`` / ``avoid_node`` actions): a replica
  named there, or on a node named there, with weight ``w`` in [0, 1) stays a candidate in a share ``w``
  of the decisions (a deterministic credit: each decision adds ``w``, a whole credit lets it in once),
  but only while the request has another eligible healthy candidate: residency and placement rules win
  over avoidance, so an avoided replica that is the only one a request may use still gets it.
- Circuit breaking (``breaker.CircuitBreaker``): replicas whose breaker is open are no candidates. When
  every replica the request may use is out, the router's ``Shed("no_healthy_replica")`` carries the time
  until the first of their breakers half-opens as ``retry_after_s`` (the Serve adapter raises it as
  ``CircuitOpen``).

Pure: no Ray, no asyncio, no clock (``now`` comes in; ``timer``, when given, only measures how long the
router's own decision took, as the simulator's timer does).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentic_ray.policies.types import BreakerSettings, NodeAttrs, RetrySettings
from agentic_ray.scheduling.breaker import BreakerState, CircuitBreaker
from agentic_ray.scheduling.frontdoor import with_room
from agentic_ray.scheduling.pressure import PressureRule, TripDelay, under_pressure
from agentic_ray.scheduling.reports import ReplicaMetadata, RoutingStats
from agentic_ray.scheduling.retry import RetryBudget
from agentic_ray.scheduling.streams import StreamRouter, StreamSample
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Router, Shed

__all__ = ["Flight", "ReplicaReport", "RoutingState"]

_CLOSED = BreakerState.CLOSED
_EMPTY_STATS = RoutingStats()


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """One replica as a router learns of it: what it published, its node and Serve's ``max_ongoing``."""

    replica_id: str
    metadata: ReplicaMetadata
    stats: RoutingStats | None = None
    max_ongoing: float = math.inf
    node_id: str = ""


class Flight:
    """A request this state tracks, from ``admit`` to ``completed`` (or a ``Shed``).

    ``replica_id`` / ``routed_at``: where and when it was routed (None / 0.0 before); ``context``: the
    caller's own data about it (the Serve adapter keeps its future token and HTTP request there)."""

    __slots__ = ("call_id", "context", "decided_at", "hedge_of", "held_at", "replica_id", "request", "routed_at")

    def __init__(self, request: Request, call_id: Hashable | None, hedge_of: Hashable | None, context: Any) -> None:
        self.request = request
        self.call_id = call_id
        self.hedge_of = hedge_of
        self.context = context
        self.replica_id: str | None = None
        self.routed_at = 0.0
        self.decided_at = math.nan  # when the last Route for it was decided (trip timing, with pressure)
        self.held_at: str | None = None  # the replica whose ``held`` counts it (class caps, ``_hold``)


class _Replica:
    __slots__ = ("bounds", "capped", "caps", "held", "inflight", "published_delay", "reported", "room", "sample_seq",
                 "sent", "stream_seq", "totals", "view")  # fmt: skip

    def __init__(self, view: ReplicaView, reported: dict[int, int] | None) -> None:
        self.view = view
        self.reported = reported  # queued per priority as last published; None: a live view
        self.inflight: dict[int, int] = {}  # routed here, not completed, per priority
        # Class caps (module docstring): the caps and the room and capped classes as published, and this
        # router's own requests per class from a Route here to their end (``sent``: routed, not yet accepted).
        self.caps: Mapping[str, int] = {}
        self.bounds: Mapping[str, int] = {}  # the class queues' bounds as published
        self.room: Mapping[str, int] = view.class_room
        self.capped: frozenset[str] = view.class_capped
        self.held: dict[str, int] = {}
        self.sent: OrderedDict[Hashable, tuple[str, float]] = OrderedDict()
        self.totals: tuple[int, int] | None = None  # (completed, failed) as last published
        self.sample_seq = -1  # last service sample taken
        self.stream_seq = -1  # last stream sample taken
        self.published_delay = view.delay_ms  # the delay it published (the view's may be the router's own)


def _unhold(rep: _Replica, key: Hashable, qos: str) -> None:
    """Request ``key`` (of class ``qos``) no longer counts against ``rep``'s class caps."""
    rep.sent.pop(key, None)
    if rep.held.get(qos, 0) > 0:
        rep.held[qos] -= 1


def view_of(report: ReplicaReport) -> ReplicaView:
    """The ``ReplicaView`` of a published report (see the module docstring)."""
    md = report.metadata
    stats = report.stats or _EMPTY_STATS
    slots = md.slots if stats.limit is None else max(1, min(md.slots, stats.limit))
    view = ReplicaView(
        replica_id=report.replica_id,
        attrs=NodeAttrs(node_id=report.node_id, zone=md.zone, accelerator=md.accelerator, labels=dict(md.labels)),
        slots=slots,
        max_ongoing=report.max_ongoing,
        queued_by_priority=dict(stats.queued_by_priority),
        service_ms=dict(stats.service_ms or md.service_ms),
        cost=md.cost,
        class_room=stats.class_room(),
        delay_ms=stats.delay_ms or 0.0,
        class_capped=stats.capped(),
    )
    view.ongoing = stats.ongoing
    return view


_SENT_TTL_S = 2.0  # a request routed and not accepted within this long stops counting against a class cap
_TRIP_REFRESH_S = 0.05  # how often decisions decay the router's own trip delays while one is high


class RoutingState:
    """The routing state of one router process (see the module docstring).

    ``core``: the pure router (``registry.create_router``); ``breaker`` / ``retry``: the policy's
    settings; ``max_tracked``: requests and call ids remembered at most (the oldest forgotten first);
    ``timer``: integer nanoseconds (``time.perf_counter_ns``) to time each decision of the router
    (``decision_ns``), or None; ``hedge_running``: hedge copies the router takes as executing too;
    ``streams``: the stream router (module docstring), or None; ``pressure_ms``: the delay (ms) above
    which the least urgent class is refused at the router (``pressure.under_pressure``; None: never)."""

    def __init__(
        self,
        core: Router,
        *,
        breaker: BreakerSettings | None = None,
        retry: RetrySettings | None = None,
        max_tracked: int = 100_000,
        timer: Callable[[], int] | None = None,
        streams: StreamRouter | None = None,
        hedge_running: bool = True,
        pressure_ms: float | None = None,
    ) -> None:
        self.core = core
        classes = getattr(core, "classes", None) or {}
        self.pressure = (
            PressureRule(pressure_ms, (c.priority for c in classes.values())) if pressure_ms is not None else None
        )
        # the router's own trip delays (pressure.TripDelay), with the pressure rule only
        self.trips = TripDelay() if self.pressure is not None else None
        self._trip_high = False  # some replica's own trip delay was over the lowest threshold
        self._trips_refreshed = -math.inf
        self.streams = streams
        self.breaker = CircuitBreaker(breaker)
        self.retry_budget = RetryBudget(retry)
        self.max_tracked = max_tracked
        self.timer = timer
        self.decision_ns: int | None = None  # how long the router's last decision took (None: not timed/asked)
        self._feed_service = getattr(core, "observe_service", None)
        self._replicas: dict[str, _Replica] = {}
        self._views: list[ReplicaView] = []
        self._reported: list[_Replica] = []  # the replicas known from reports (not live views)
        self._flights: OrderedDict[Hashable, Flight] = OrderedDict()
        # call id -> (replica it was routed to, its request id)
        self._call_replica: OrderedDict[Hashable, tuple[str, Any]] = OrderedDict()
        self.hedge_running = hedge_running
        self._running = getattr(core, "running", None)
        self._ejected: set[str] = set()  # replicas whose breaker is not closed
        self._suspect: set[str] = set()  # replicas with a failure not yet reset by a success that closed them
        self._plain_breaker = self.breaker.settings.latency_outlier_factor is None  # a success only resets
        self._room_reported = False  # some replica reports room per class queue
        self.requests_total = 0  # first attempts admitted (``admit`` without ``hedge_of``)
        self.retries_total = 0  # requests that came back after a replica refused them (``retry``)
        self._avoid_replicas: dict[str, float] = {}  # replica id -> weight (``set_avoid``)
        self._avoid_nodes: dict[str, float] = {}  # node id -> weight
        self._avoid_credit: dict[str, float] = {}

    def reconfigure(
        self, classes: Any = None, breaker: BreakerSettings | None = None, retry: RetrySettings | None = None
    ) -> None:
        """Adopt a new policy between requests: the pure router's ``classes`` (when it keeps them), and
        breaker / retry settings; a breaker or retry budget restarts only when its settings changed.
        Tracked requests stay tracked and finish as they were admitted."""
        if classes is not None and hasattr(self.core, "classes"):
            self.core.classes = dict(classes)
        if classes is not None and self.pressure is not None:
            self.pressure.set_priorities(c.priority for c in dict(classes).values())
        if breaker is not None and breaker != self.breaker.settings:
            self.breaker = CircuitBreaker(breaker)
            self._plain_breaker = self.breaker.settings.latency_outlier_factor is None
            self._ejected.clear()
            self._suspect.clear()
        if retry is not None and retry != self.retry_budget.settings:
            self.retry_budget = RetryBudget(retry)

    def set_avoid(self, replicas: Mapping[str, float], nodes: Mapping[str, float]) -> None:
        """Route away from these replicas and the replicas of these nodes (``{id: weight}``, weight in
        [0, 1): the share of decisions they stay candidates in); empty mappings lift it (module docstring)."""
        for what, weights in (("replicas", replicas), ("nodes", nodes)):
            for key, w in weights.items():
                if not 0.0 <= float(w) < 1.0:
                    raise ValueError(f"avoid {what}[{key!r}]: weight must be in [0, 1), got {w!r}")
        self._avoid_replicas = {str(k): float(w) for k, w in replicas.items()}
        self._avoid_nodes = {str(k): float(w) for k, w in nodes.items()}
        self._avoid_credit = {k: c for k, c in self._avoid_credit.items() if k in self._avoid_replicas}

    @property
    def avoiding(self) -> bool:
        """True while some replica or node is avoided."""
        return bool(self._avoid_replicas or self._avoid_nodes)

    def _thin(self, request: Request, views: list[ReplicaView]) -> list[ReplicaView]:
        """``views`` without the avoided replicas that sit this decision out, unless none other is left
        that the request may use (module docstring, "Avoidance")."""
        by_replica, by_node = self._avoid_replicas, self._avoid_nodes
        kept: list[ReplicaView] = []
        avoided: list[tuple[ReplicaView, float]] = []
        for v in views:
            w = by_replica.get(v.replica_id)
            node_w = by_node.get(v.attrs.node_id) if by_node else None
            if node_w is not None:
                w = node_w if w is None else min(w, node_w)
            if w is None:
                kept.append(v)
            else:
                avoided.append((v, w))
        if not avoided:
            return views
        allows = request.allows
        if not any(v.healthy and (allows is None or allows(v.attrs)) for v in kept):
            return views  # the avoided ones are all this request may use: placement wins
        credit = self._avoid_credit
        for v, w in avoided:
            c = credit.get(v.replica_id, 0.0) + w
            if c >= 1.0:
                c -= 1.0
                kept.append(v)
            credit[v.replica_id] = c
        return kept

    # -- replicas -------------------------------------------------------------------------------------
    def update_replicas(self, reports: Iterable[ReplicaReport], now: float) -> None:
        """The replicas as published now (the full set: a known replica missing here is gone)."""
        replicas: dict[str, _Replica] = {}
        for report in reports:
            rid = report.replica_id
            view = view_of(report)
            rep = self._replicas.get(rid)
            if rep is None or rep.reported is None:
                rep = _Replica(view, dict(view.queued_by_priority))
            else:
                rep.view, rep.reported = view, dict(view.queued_by_priority)
                rep.published_delay = view.delay_ms
                rep.room, rep.capped = view.class_room, view.class_capped
            if report.stats is not None:
                rep.caps, rep.bounds = report.stats.class_caps, report.stats.queue_bounds
            if self.trips is not None:
                view.delay_ms = max(view.delay_ms, self.trips.delay_ms(rid, now))
            stats = report.stats or _EMPTY_STATS
            self.breaker.add(rid)
            self._feed_totals(rid, rep, stats, now)
            self._feed_samples(rid, rep, stats, now)
            if stats.stream_samples and self.streams is not None:
                self._feed_streams(rid, rep, stats)
            view.healthy = rid not in self._ejected or self.breaker.available(rid, now)
            replicas[rid] = rep
        for gone in self._replicas.keys() - replicas.keys():
            self.breaker.remove(gone)
            if self.trips is not None:
                self.trips.forget(gone)
            self._ejected.discard(gone)
            self._suspect.discard(gone)
            if self.streams is not None:
                self.streams.rates.forget(gone)
        self._replicas = replicas
        self._views = [rep.view for rep in replicas.values()]
        self._reported = [rep for rep in replicas.values() if rep.reported is not None]
        self._room_reported = any(view.class_room for view in self._views)

    def add_replica(self, view: ReplicaView) -> None:
        """A replica whose ``view`` the caller keeps exact (``ongoing``, ``queued_by_priority``, service
        times): decisions take it as it is. The state sets only its ``healthy``."""
        self._replicas[view.replica_id] = _Replica(view, None)
        self._views.append(view)
        self.breaker.add(view.replica_id)
        self._room_reported = self._room_reported or bool(view.class_room)

    def remove_replica(self, replica_id: str) -> None:
        """A replica went away (its tracked requests are not completed here: call ``completed``)."""
        rep = self._replicas.pop(replica_id, None)
        if rep is not None:
            self._views = [v for v in self._views if v is not rep.view]
            self._reported = [r for r in self._reported if r is not rep]
        self.breaker.remove(replica_id)
        self._ejected.discard(replica_id)
        self._suspect.discard(replica_id)

    def replica_failed(self, replica_id: str, now: float) -> None:
        """A call on ``replica_id`` failed outside any tracked request (its actor died or is unavailable)."""
        self._record(replica_id, False, now)

    def knows(self, replica_id: str) -> bool:
        """True when ``replica_id`` is a known replica."""
        return replica_id in self._replicas

    def view(self, replica_id: str) -> ReplicaView | None:
        """The view of ``replica_id`` (None when it is not known)."""
        rep = self._replicas.get(replica_id)
        return rep.view if rep is not None else None

    def views(self) -> list[ReplicaView]:
        """Every known replica's view (do not modify the list)."""
        return self._views

    def breaker_state(self, replica_id: str, now: float) -> BreakerState:
        """The breaker state of ``replica_id`` at ``now``."""
        return self.breaker.state(replica_id, now)

    def _feed_totals(self, rid: str, rep: _Replica, stats: RoutingStats, now: float) -> None:
        done, failed = stats.completed_total, stats.failed_total
        last, rep.totals = rep.totals, (done, failed)
        if last is None:  # the first report this router sees: a baseline, not news
            return
        cap = self.breaker.settings.consecutive_failures
        for _ in range(min(max(0, done - last[0]), cap)):
            self._record(rid, True, now)
        for _ in range(min(max(0, failed - last[1]), cap)):
            self._record(rid, False, now)

    def _feed_samples(self, rid: str, rep: _Replica, stats: RoutingStats, now: float) -> None:
        last = rep.sample_seq
        feed = self._feed_service
        for seq, model, service_ms in stats.service_samples:
            if seq <= last:
                continue
            last = seq
            if feed is not None:
                feed(rid, model, service_ms, now)
        rep.sample_seq = last

    def _feed_streams(self, rid: str, rep: _Replica, stats: RoutingStats) -> None:
        last = rep.stream_seq
        for report in stats.stream_samples:
            if report.seq > last:
                last = report.seq
                self.streams.observe(rid, report.sample)  # type: ignore[union-attr]
        rep.stream_seq = last

    def observe_stream(self, replica_id: str, sample: StreamSample) -> None:
        """A stream completed on ``replica_id`` (the simulator's report; Serve's come with the stats)."""
        if self.streams is not None:
            self.streams.observe(replica_id, sample)

    def _record(self, rid: str, ok: bool, now: float) -> None:
        """One result for ``rid``'s breaker; keeps the set of ejected replicas and their views current."""
        if ok and self._plain_breaker and rid not in self._suspect:
            return  # closed, and no failure since its last success: a success changes nothing
        state = self.breaker.record(rid, ok, None, now)
        if not ok:
            self._suspect.add(rid)
        elif state is _CLOSED:  # a success closed it (or found it closed): its failure count is 0
            self._suspect.discard(rid)
        if state is not _CLOSED:
            self._ejected.add(rid)
        elif rid in self._ejected:
            self._ejected.discard(rid)
            rep = self._replicas.get(rid)
            if rep is not None:
                rep.view.healthy = True

    # -- requests -------------------------------------------------------------------------------------
    def admit(
        self,
        key: Hashable,
        request: Request,
        now: float,
        *,
        call_id: Hashable | None = None,
        hedge_of: Hashable | None = None,
        context: Any = None,
    ) -> Shed | None:
        """Start tracking ``request`` under ``key``: a first attempt deposits into the retry budget; a
        hedge (``hedge_of``: the ``call_id`` of the copy it hedges) pays from it, or is shed
        (``hedge_budget_exhausted``, and not tracked). ``call_id``: this copy's id, for later hedges."""
        if hedge_of is None:
            self.requests_total += 1
            self.retry_budget.record_request(now)
        else:
            if not self.hedge_running and self._first_copy_running(hedge_of):
                return Shed("hedge_first_copy_running", None, request.rule_ids)
            if not self.retry_budget.try_acquire(1, request.remaining_ms(now), 0.0, now):
                return Shed("hedge_budget_exhausted", 1.0, request.rule_ids)
        flights = self._flights
        flights[key] = Flight(request, call_id, hedge_of, context)
        if len(flights) > self.max_tracked:
            self._release(*flights.popitem(last=False))
        return None

    def _first_copy_running(self, call_id: Hashable) -> bool:
        """True when the router takes the copy ``call_id`` as executing on its replica (the oldest of its
        requests in flight there), not waiting behind another request."""
        routed = self._call_replica.get(call_id)
        if routed is None or self._running is None:
            return False
        return bool(self._running(routed[0], routed[1]))

    def flight(self, key: Hashable) -> Flight | None:
        """The tracked request under ``key`` (None when it is not tracked)."""
        return self._flights.get(key)

    def forget(self, key: Hashable) -> Flight | None:
        """Stop tracking ``key`` without completing it (a request that was never routed, e.g. refused)."""
        flight = self._flights.pop(key, None)
        self._release(key, flight)
        return flight

    def retry(self, key: Hashable, now: float) -> Shed | None:
        """The request came back after a replica refused it: one retry from the budget, or a ``Shed``
        (``retry_budget_exhausted``; the request is forgotten)."""
        request = self._flights[key].request
        self.retries_total += 1
        if self.retry_budget.try_acquire(1, request.remaining_ms(now), 0.0, now):
            return None
        self._release(key, self._flights.pop(key, None))
        return Shed("retry_budget_exhausted", 1.0, request.rule_ids)

    def hedge_at(self, key: Hashable) -> float | None:
        """When the caller of tracked request ``key`` should send a hedge if no answer came by then: its
        arrival plus its class's ``hedge_after_ms``, when that is before its deadline (None: no hedge;
        a hedge is never hedged)."""
        flight = self._flights.get(key)
        if flight is None or flight.hedge_of is not None:
            return None
        request = flight.request
        after = request.hedge_after_ms
        if after is None:
            return None
        at = request.arrival + after / 1000.0
        return at if at < request.deadline else None

    def hedge_due(self, key: Hashable, now: float) -> bool:
        """True when a hedge of ``key`` should go now: still tracked (no answer yet), past its
        ``hedge_at`` and before its deadline."""
        at = self.hedge_at(key)
        return at is not None and at <= now < self._flights[key].request.deadline

    def decide(
        self,
        key: Hashable,
        now: float,
        candidates: Sequence[tuple[str, int | None]] | None = None,
        pressure: bool = True,
    ) -> Decision:
        """Route, wait or shed the tracked request ``key`` (module docstring). ``candidates``: the replicas
        it may go to now, each with its current ongoing count (None: as last known); None: every known
        replica as its view stands. ``pressure``: False skips the pressure rule for this request (the
        Serve adapter's HTTP requests: see ``serve._router``). A ``Shed`` stops tracking it."""
        self.decision_ns = None
        flight = self._flights[key]
        request = flight.request
        if candidates is None and not self._ejected and not self._reported:
            views = self._views  # live views, all healthy: nothing to refresh
        else:
            views = self._candidate_views(candidates, now)
        if self._avoid_replicas or self._avoid_nodes:
            views = self._thin(request, views)
        if flight.hedge_of is not None:
            avoid = self._call_replica.get(flight.hedge_of, (None, None))[0]
            views = [v for v in views if v.replica_id != avoid]
            if not views:
                return self._shed(key, Shed("no_hedge_replica", 1.0, request.rule_ids))
        timer = self.timer
        started = timer() if timer is not None else 0
        decision: Decision | None = None
        if self._room_reported:
            views, decision = with_room(request, views)
        if decision is None and pressure and self.pressure is not None:
            if self._trip_high and now - self._trips_refreshed >= _TRIP_REFRESH_S:
                self._refresh_trips(now)
            views, decision = under_pressure(request, views, self.pressure)
        if decision is None and request.prompt_tokens is not None and self.streams is not None:
            decision = self.streams.choose(request, views, now, getattr(self.core, "pending", None))
        if decision is None:
            decision = self.core.choose(request, views, now)
        if timer is not None:
            self.decision_ns = timer() - started
        if type(decision) is Shed:
            if decision.reason == "no_healthy_replica":
                decision = self._circuit_open(request, decision, views, now)
            return self._shed(key, decision)
        if type(decision) is Route:
            self._sent(key, flight, decision.replica_id, now)
        return decision

    def refuse_early(self, request: Request, now: float, *, pressure: bool = True) -> Shed | None:
        """What ``decide`` would shed ``request`` for before it chooses a replica: no room for its class at
        any replica it may use (``class_cap`` / ``queue_full``), or the pressure rule (``host_saturated``),
        judged on the views as they stand (the last report, and this router's own sends as of its last
        decision) and the trip delays decayed to ``now``. None: let ``decide`` judge it (also while a
        breaker holds a replica out, whose half-open probe only ``decide`` can send). Tracks and changes
        nothing, so a caller may ask from another thread than the one deciding: it reads a copy of the
        list of views (a race reads a view one decision old). ``pressure``: False leaves the pressure rule
        to ``decide``."""
        if self._ejected:
            return None
        views = list(self._views)
        shed: Shed | None = None
        if self._room_reported:
            views, shed = with_room(request, views)
        if shed is None and pressure and self.pressure is not None:
            replicas, trips = self._replicas, self.trips

            def delay_of(view: ReplicaView) -> float:
                rep = replicas.get(view.replica_id)
                if rep is None or trips is None or rep.reported is None:
                    return view.delay_ms
                return max(rep.published_delay, trips.delay_ms(view.replica_id, now))

            _, shed = under_pressure(request, views, self.pressure, delay_of)
        return shed

    def _sent(self, key: Hashable, flight: Flight, replica_id: str, now: float) -> None:
        """Book a ``Route`` of ``flight`` to ``replica_id``: when it was decided (for the trip), its hold on
        the replica's class caps, and its copy's replica (a hedge decided before ``routed`` avoids it)."""
        if self.trips is not None:
            flight.decided_at = now
        self._hold(key, flight, replica_id, now)
        if flight.call_id is not None:
            self._note_call(flight.call_id, replica_id, flight.request.id)

    def _note_call(self, call_id: Hashable, replica_id: str, request_id: Any) -> None:
        """Remember that copy ``call_id`` went to ``replica_id`` (at its ``Route``, then at ``routed``: a
        saturated host may accept a call long after the router sent it, and a hedge sent meanwhile must
        not go to the same replica)."""
        calls = self._call_replica
        calls[call_id] = (replica_id, request_id)
        if len(calls) > self.max_tracked:
            calls.popitem(last=False)

    def _hold(self, key: Hashable, flight: Flight, replica_id: str, now: float) -> None:
        """Count ``flight`` against ``replica_id``'s class caps from its ``Route`` on (moved from the replica
        of an earlier decision for it): sent, until ``routed`` says the replica accepted it."""
        self._release(key, flight)
        rep = self._replicas.get(replica_id)
        if rep is None or rep.reported is None:
            return
        qos = flight.request.qos
        rep.held[qos] = rep.held.get(qos, 0) + 1
        rep.sent[key] = (qos, now)
        flight.held_at = replica_id

    def _release(self, key: Hashable, flight: Flight | None) -> None:
        """``flight`` no longer counts against the class caps of the replica that held it."""
        if flight is None or flight.held_at is None:
            return
        rep = self._replicas.get(flight.held_at)
        flight.held_at = None
        if rep is not None:
            _unhold(rep, key, flight.request.qos)

    def _own_room(self, rep: _Replica, now: float) -> None:
        """A replica's room per class queue as this decision sees it: no more than it published, nor
        than its cap (``class_caps``) or its queue bound minus this router's own requests of the class
        there (sent or accepted, not ended; all of them taken as queued, since the replica's slots may
        be running more urgent work). A request sent and not accepted within ``_SENT_TTL_S`` (cancelled
        while Serve routed it) stops counting."""
        sent = rep.sent
        while sent:
            key, (qos, at) = next(iter(sent.items()))
            if now - at < _SENT_TTL_S:
                break
            _unhold(rep, key, qos)
            flight = self._flights.get(key)
            if flight is not None and flight.held_at == rep.view.replica_id:
                flight.held_at = None
        room, caps, bounds = rep.room, rep.caps, rep.bounds
        adjusted: dict[str, int] | None = None
        capped: set[str] | None = None
        for qos, n in rep.held.items():
            if n <= 0:
                continue
            cap, bound = caps.get(qos), bounds.get(qos)
            left = math.inf if cap is None else cap - n
            if bound is not None:
                left = min(left, bound - n)
            if left < room.get(qos, math.inf):
                adjusted = adjusted if adjusted is not None else dict(room)
                adjusted[qos] = int(left)
            if cap is not None and cap <= n:
                capped = capped if capped is not None else set(rep.capped)
                capped.add(qos)
        rep.view.class_room = adjusted if adjusted is not None else room
        rep.view.class_capped = frozenset(capped) if capped is not None else rep.capped

    def _refresh_trips(self, now: float) -> None:
        """Decay the router's own trip delays into the views (they decay between trips, module docstring
        of ``pressure``), so a router refusing everything does not keep a stale high delay."""
        self._trips_refreshed = now
        trips, high, limit = self.trips, False, self.pressure.target_ms if self.pressure is not None else math.inf
        if trips is None:
            return
        for rid, rep in self._replicas.items():
            if rep.reported is None:
                continue
            own = trips.delay_ms(rid, now)
            high = high or own > limit
            rep.view.delay_ms = max(rep.published_delay, own)
        self._trip_high = high

    def _shed(self, key: Hashable, shed: Shed) -> Shed:
        self._release(key, self._flights.pop(key, None))
        return shed

    def _circuit_open(self, request: Request, shed: Shed, views: list[ReplicaView], now: float) -> Shed:
        """Every replica the request may use is out: retry when the first of their breakers half-opens."""
        allows = request.allows
        waits = [
            w
            for v in views
            if (allows is None or allows(v.attrs)) and (w := self.breaker.retry_after_s(v.replica_id, now)) is not None
        ]
        if not waits:
            return shed
        return Shed(shed.reason, min(waits), shed.rule_ids, shed.predicted_ms)

    def _candidate_views(self, candidates: Sequence[tuple[str, int | None]] | None, now: float) -> list[ReplicaView]:
        if self._ejected:
            self._refresh_health(now)
        if candidates is None:
            for reported in self._reported:
                reported.view.queued_by_priority = self._queued_estimate(reported)
                if reported.held:
                    self._own_room(reported, now)
            return self._views
        replicas = self._replicas
        views = []
        for rid, ongoing in candidates:
            rep = replicas.get(rid)
            if rep is None:
                continue
            view = rep.view
            if ongoing is not None:
                view.ongoing = ongoing
            if rep.reported is not None:
                view.queued_by_priority = self._queued_estimate(rep)
                if rep.held:
                    self._own_room(rep, now)
            views.append(view)
        return views

    def _refresh_health(self, now: float) -> None:
        """Ejected replicas' views: an ejection that expired half-opens (one probe may go)."""
        breaker = self.breaker
        for rid in list(self._ejected):
            rep = self._replicas.get(rid)
            if rep is not None:
                rep.view.healthy = breaker.available(rid, now)

    @staticmethod
    def _queued_estimate(rep: _Replica) -> dict[int, int]:
        """Queued work per priority: the report or this router's own in-flight count, whichever is larger
        (reports lag a stats period; this router knows what it sent), trimmed so that at least
        ``min(ongoing, slots)`` requests count as executing, taken from the least urgent first."""
        reported = rep.reported or {}
        own = rep.inflight
        view = rep.view
        ongoing = view.ongoing
        merged = {p: max(reported.get(p, 0), own.get(p, 0)) for p in reported.keys() | own.keys()}
        excess = sum(merged.values()) - max(0, ongoing - min(ongoing, view.slots))
        for p in sorted(merged, reverse=True):
            if excess <= 0:
                break
            take = min(excess, merged[p])
            merged[p] -= take
            excess -= take
        return {p: n for p, n in merged.items() if n > 0}

    def routed(self, key: Hashable, replica_id: str, now: float) -> None:
        """The request was sent to ``replica_id`` (and accepted there): count it pending there."""
        flight = self._flights.get(key)
        if flight is None:
            return
        flight.replica_id = replica_id
        flight.routed_at = now
        request = flight.request
        if flight.held_at != replica_id:
            self._hold(key, flight, replica_id, now)
        held = self._replicas.get(replica_id)
        if held is not None:
            held.sent.pop(key, None)  # accepted: counts until it ends
        if flight.call_id is not None:
            self._note_call(flight.call_id, replica_id, flight.request.id)
        self.core.on_dispatch(request, replica_id, now)
        rep = self._replicas.get(replica_id)
        if (
            self.trips is not None
            and rep is not None
            and rep.reported is not None
            and not math.isnan(flight.decided_at)
        ):
            own = self.trips.observe(replica_id, (now - flight.decided_at) * 1000.0, now)
            rep.view.delay_ms = max(rep.published_delay, own)
            if self.pressure is not None and own > self.pressure.target_ms:
                self._trip_high = True
        if rep is not None and rep.reported is not None:
            counts = rep.inflight
            counts[request.priority] = counts.get(request.priority, 0) + 1
        if replica_id in self._ejected:
            self.breaker.on_dispatch(replica_id, now)  # a half-open replica's one probe
            if rep is not None:
                rep.view.healthy = self.breaker.available(replica_id, now)

    def completed(
        self, key: Hashable, now: float, *, service_ms: float = math.nan, ok: bool = True, health: bool | None = None
    ) -> Flight | None:
        """The request finished (any outcome; a cancelled one too) and is no longer tracked.

        ``service_ms``: its measured service time (NaN: unknown); ``ok``: whether that time is a valid
        sample; ``health``: its result for the replica's breaker (True: succeeded, False: the replica
        failed it; None: no signal, e.g. refused by admission or, on Serve, learned later from the
        replica's totals). Returns the flight (None when ``key`` was not tracked)."""
        flight = self._flights.pop(key, None)
        self._release(key, flight)
        if flight is None or flight.replica_id is None:
            return flight
        if flight.call_id is not None:
            # A finished copy needs no hedge (the caller has its answer): forget where it ran, so the table
            # holds the calls in flight, not the last ``max_tracked`` ever routed (soak: 100k entries).
            self._call_replica.pop(flight.call_id, None)
        rid = flight.replica_id
        request = flight.request
        rep = self._replicas.get(rid)
        if rep is not None and rep.reported is not None:
            counts = rep.inflight
            if counts.get(request.priority, 0) > 0:
                counts[request.priority] -= 1
        self.core.observe(request, rid, service_ms, (now - flight.routed_at) * 1000.0, ok, now)
        if health is not None and (not health or rid in self._suspect or not self._plain_breaker):
            self._record(rid, health, now)  # (a success on a replica without failures changes nothing)
        return flight
