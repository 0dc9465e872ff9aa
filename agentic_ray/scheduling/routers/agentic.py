"""``agentic``: the deadline-aware router (cheapest replica that meets the remaining budget).

For each eligible replica r (placement ``request.allows(r.attrs)``, healthy, ``ongoing < max_ongoing``)
it predicts this request's completion time from now::

    m     = mean service ms of (r, model): own estimate fed by ``observe``, else r.service_ms[model],
            else r.service_ms["default"], else the mean over the replicas this router measured for the
            model, else ``default_service_ms``
    d     = mean deviation of that service time (own estimate; 0 while only the replica's report is known)
    n     = executing on r + queued on r with priority <= this request's (work ahead of its class);
            executing = max(ongoing, local pending) - queued; unreported local pending counts as ahead
    wait  = 0 if n < slots else (n - slots + 1) / slots * m      (the n-th request ahead frees a slot)
    pred  = wait + m + k * d                                      (k = ``deviation_k``, default 2)

``m + k * d`` is Jacobson/Karels' estimator (TCP's retransmission timeout, "Congestion Avoidance and
Control", SIGCOMM 1988; RFC 6298 uses k = 4): with the mean alone, a replica whose service time varies
(cv 0.5) is predicted to finish on time about half of the times it is chosen at the edge of the
budget; the deviation term asks for room for a likely slow draw. The queue wait uses the mean (a sum of
n draws varies about sqrt(n) times one draw, not n times). Estimates: ``ServiceTable`` in
``service_table.py`` (mean smoothing ``alpha``, deviation smoothing ``deviation_beta``, as RFC 6298).
``alpha`` defaults to 0.05 (a memory of about 20 samples per replica and model; RFC 6298 uses 1/8): with
bimodal service (5 % of requests 40x slower) a faster-forgetting mean drops back to the fast mode
between slow requests and ``m + k * d`` under-predicts; in the SLO matrix (``benchmarks/slo_matrix.py``)
0.05 was as good or better than 0.2 in every scenario, including ``straggler`` and ``failure``, where
the estimate must follow a replica that slows down or dies.

Head-of-line residual (``residual=True``): a busy single-slot replica (n >= 1) may be running a request
far slower than the mean (bimodal service: 5 % of requests take 40x the typical time), which no
replica report shows. The router remembers when it sent each request still in flight (``on_dispatch``,
cleared by ``observe``) and follows which one the replica's gate is executing: a request sent to an idle
replica starts when it gets there; when the executing one is answered, the most urgent one that had
reached the replica when it finished (``wait_order``: the gate's order, not the oldest) started then.
Its expected remaining time is the mean residual life ``E[S - age | S > age]`` of recent service times
(``HeadOfLine`` and ``ResidualLife`` in ``residual.py``)::

    wait  = residual(age) + (n - 1) * m      (instead of n * m)

Replicas with several slots: the n-th request ahead frees a slot when the earliest of the executing
requests' residuals (a slot with none free now) has passed and the queued ones ahead took the earliest
free slot for ``m`` each; only while the service time is heavier-tailed than exponential
(``ResidualLife.heavy``), else the formula above (``HeadOfLine.wait``). The router learns a replica's
slots from the views it routes to.

Jumping ahead (``arrival_window_s``, default 1 s; None turns it off): the replicas' ``AdmissionGate``
starts queued work by class priority, so a request that has to queue (n >= slots) also waits for every
more urgent request that reaches the replica before it starts. The router knows what it sends: per
replica and priority it keeps an exponentially decayed dispatch rate ``lambda_q`` (time constant
``arrival_window_s``, updated in ``on_dispatch``). With ``rho_h = sum_{q < p} lambda_q * m / slots``
(the load of more urgent work, at this request's mean service time), the wait is the busy period that
the present queue starts (Cobham, "Priority assignment in waiting line problems", Oper. Res. 1954;
Kleinrock, Queueing Systems vol. 2, ch. 3: non-preemptive priority queue)::

    W0    = wait                                   (the wait above: the queue of the moment)
    wait  = W0 / (1 - rho_h) + k * sqrt(W0 * rho_h * (m + k * d) / slots / (1 - rho_h)) / (1 - rho_h)
            (infinite when rho_h >= 1: the replica never reaches it)

Without it, at low load standard work kept the cheap single-slot CPU replica of
``benchmarks/results/serve_live_agreement.yaml`` busy, and sheddable work sent there (predicted on time
from the queue of the moment) starved behind later standard requests until it was shed at the replica
(``deadline_passed_in_queue``, ``queue_full``): goodput 18.8 rps against pow2's 23.7.

The stretched prediction ranks replicas ("meets the budget" above); shedding still needs the queue of
the moment to miss: when no replica meets the budget once overtaking is counted but some replica meets
it with its present queue, the request goes to the cheapest of those (then the fastest by that
prediction), ``Route(..., reason="meets_present_queue")``. The busy-period formula assumes the urgent
rate lasts; in a short burst (``surge`` in the SLO matrix: 2 s at 2.5x capacity) it ends while the
request waits, and shedding on the stretched prediction alone lost 6 % of goodput there.
The second term is ``k`` standard deviations of that busy period (variance ``W0 * lambda * E[S^2] /
(1 - rho_h)^3``, same references; ``E[S^2] / E[S]`` taken as ``m + k * d`` per slot): with the mean
alone 8 % of the sheddable requests of the agreement scenario still missed (goodput 23.9 rps, about
pow2's); with it 24.5 rps (central_edf, then named oracle: 24.4).

A replica *meets* the budget when ``pred * (1 + safety_margin) + margin_ms <= remaining_ms``.

- Classes that may be shed (``when_overloaded``, ``first``): among replicas that meet the budget, the
  cheapest (``ReplicaView.cost``: CPU before GPU), then the fastest; when none meets it, not even with
  its present queue (see "Jumping ahead"), the request waits (``Wait("faster_replica_full")``) when a
  replica that is full now would meet its budget and holds queued work less urgent than it (its gate
  would start this request first; the router cannot send it there until a position frees), else
  ``Shed("cannot_meet_deadline", retry_after_s)``.
- Never-shed classes (``never``), and the most urgent class of ``classes`` (the lowest priority number;
  0 without ``classes``) whatever its shedding mode unless ``first``: priority, not the mode, orders who
  is shed, so the most urgent work is routed as never-shed work and shed only by its replicas' gates
  when their queues are full. They rank by expected completion (``wait + m``: the mean, not
  ``m + k * d``, so that an idle replica whose deviation a recent slow request inflated still ranks
  before a busy one), not cost: the fastest replica, whether or not it meets the budget. Cost ranking
  only trades a cheaper replica for a later (still on-time) completion, and for work that cannot be shed
  the margin is worth more than the saving. When even the fastest free replica is predicted to miss but
  a replica that is full now (``ongoing >= max_ongoing``) would meet the budget with the work ahead of
  this class, the request waits (``Wait("faster_replica_full")``) instead of starting on a replica known
  to be too slow (e.g. a large-model request to a 150 ms CPU replica while the 30 ms GPUs are
  momentarily full): one
  completion on the fast replica frees the position long before the slow one would finish. Otherwise
  ``Route(..., reason="fastest_never_shed")``. This is the "wait for the fast server" rule of
  heterogeneous-server queueing (Lin & Kumar, "Optimal control of a queueing system with two
  heterogeneous servers", IEEE TAC 1984: a slow server should be used only when the queue is long
  enough).

Reserve (``reserve``, default 0): on single-slot replicas, work other than the most urgent may not take
the last ``reserve`` positions (``max_ongoing - reserve``), so that urgent work can always reach a
replica's gate, where it starts before the less urgent work queued there, instead of waiting at the
router while less urgent work holds every position (``hol`` in the SLO matrix: 5 % of requests 40x slower).
For the "waits for a full replica" rule above, a replica is full for such work at ``max_ongoing - reserve``:
counting it full only at ``max_ongoing`` shed standard requests in ``hol`` (0.28 %) that one freed
position on a fast replica would have served, while sheddable work, with a looser budget, was never shed.

Idle reserve (``idle_reserve``, default 0): work other than the most urgent may not take one of the last
``idle_reserve`` free slots over the replicas it may use (trunk reservation: Ott & Krishnan, "State
dependent routing of telephone traffic and the use of separable routing schemes", ITC 1985, keep the
last free circuits for the traffic that cannot wait). It queues behind busy replicas instead (its
prediction decides which, as above), or waits at the router (``Wait("idle_reserved")``) when none meets
its budget there: it is not shed for a slot it was kept off. Urgent work then usually finds a replica
with nothing executing; behind any executing request, even one that just started, it risks a slow draw
(``hol``: a 5 % chance of 200 ms).

Late weight (``late_weight``, default 2): never-shed work ranks a replica where it has to queue by its
expected completion plus ``late_weight x its budget x P(late)``, P(late) being the chance that no slot
frees in time for it (``HeadOfLine.late``: every executing request still running ``need - m`` minus the
queue ahead from now, by the residual life; single-slot replicas, and several slots under a heavy tail).
The mean alone ranked a replica whose request had run 207 ms of a 200 +- 40 ms slow draw (5 ms left on
average, a long tail after it) before one whose request had just started.

Headroom: a class with ``shed_threshold`` (and shedding other than ``never``) is shed with reason
``"over_shed_threshold"`` when the least-utilised eligible replica, counting this request, is above the
threshold (utilisation = ongoing / max_ongoing, or ongoing / slots when unbounded, capped at 1), even if
it could meet its own budget, so that less critical work goes first and critical work keeps headroom.

Held requests (after ``Wait``) leave in ``wait_order = (priority, deadline, arrival)``: the class
priority first, then earliest deadline, the same discipline as the replicas' ``AdmissionGate``, so
work held at the router leaves in the order the gate would start it (a plain EDF order would let a
sheddable request with a near deadline take a freed position ahead of a critical one).

Probing (``probe_after_s``, off by default; 5 s is the value measured). A replica is ranked by its estimates, and
an estimate changes only when the replica answers: a replica whose first answers were slow (a cold
start, a moment of contention) ranks behind its peers, gets no more work, and keeps its old estimate
for good (an integration test's canary replica got no call for 120 s that way, ~1 run in 10). So a
request of a class that may be shed, with a replica that meets its budget, goes instead to an idle
replica no more expensive that answered before but not for ``probe_after_s`` (nor was it probed since),
when that one meets the budget too (``Route(..., reason="probe_stale")``): at most one probe per replica and
period, never urgent work, never a busy or dearer replica. Its answer then weighs by the time since the
replica's previous one (``ServiceTable``'s ``tau_s``, here ``probe_after_s / 2``: at least 86 %), so one
answer re-measures it (the time-decayed estimates of Finagle's and Linkerd's Peak-EWMA balancers,
which let an idle endpoint's cost decay so it is tried again). Decisions look for a replica to probe at
most every 0.25 s. Off by default: in the chaos suite's noisy neighbour (the demo's burst with one core
taken) critical attainment over handles was 88.9 and 89.5 % with it (5 s) against 98.7 and 96.7 %
without, in alternating runs; a replica that is silent because it is slow there takes the probes.

Circuit breakers: the caller folds a ``CircuitBreaker`` into ``ReplicaView.healthy``
(``breaker.available(replica_id, now)``); an unhealthy replica is never chosen.

Other outcomes: no replica passes placement -> ``Shed("no_eligible_replica", rule_ids)``; all of them
unhealthy -> ``Shed("no_healthy_replica", retry_after_s=1)``; all at ``max_ongoing`` -> ``Wait``;
deadline already passed -> ``Shed("deadline_passed")``.

Hedging is not decided here: ``routing_state.RoutingState`` (which Serve's router and the simulator
drive) routes a hedge like any request, away from its first copy's replica, and pays it from the retry
budget.

Structure: measuring is apart from ranking. The estimates live in their own modules
(``service_table.ServiceTable``: mean and deviation per replica and model; ``urgency.UrgentRates``:
the decayed dispatch rates; ``residual.HeadOfLine``: in-flight requests and the residual life);
``choose`` makes one pass over the candidates (``_scan``: each one's prediction, ``_queued`` when the
request has to queue, and the running best of each ranking) and applies the class's shedding rules to
what it found (the never-shed rule in ``_never_shed``).

Ideas from: Linkerd/Finagle latency-aware balancing and deadline-aware admission in Google's SRE book
ch. 21-22.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import NamedTuple

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.residual import HeadOfLine
from agentic_ray.scheduling.routers.base import GATE, PendingRouter
from agentic_ray.scheduling.service_table import ServiceTable
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Shed, Wait
from agentic_ray.scheduling.urgency import UrgentRates

__all__ = ["AgenticRouter"]

_NEVER = Shedding.NEVER
_OVERLOADED = Shedding.WHEN_OVERLOADED
_INF = math.inf
_PROBE_CHECK_S = 0.25  # how often a decision looks for a replica to probe (``AgenticRouter._probe``)


class _Scan(NamedTuple):
    """What one pass over the candidates found: how many there were; the cheapest replica predicted to
    meet the budget (then the fastest of those); the cheapest that meets it with the queue of the moment;
    the fastest one; the lowest utilisation counting this request."""

    candidates: int
    meet: ReplicaView | None
    meet_pred: float
    now_meet: ReplicaView | None
    now_pred: float
    fastest: ReplicaView | None
    fastest_pred: float
    min_util: float


class AgenticRouter(PendingRouter):
    """Deadline-aware, cost-aware router (see the module docstring). Replicas run an AdmissionGate.

    Config keys (all optional): ``classes``, ``safety_margin`` (0.1), ``margin_ms`` (0), ``default_service_ms``
    (50), ``alpha`` (0.05: mean smoothing), ``deviation_beta`` (0.25: deviation smoothing), ``deviation_k``
    (2: deviations added to the mean; 0 predicts with the mean alone), ``residual``
    (True: predict a busy replica's head-of-line wait from its executing requests' ages),
    ``arrival_window_s`` (1.0: time constant of the per-replica, per-priority dispatch rates that stretch
    a queued request's wait for more urgent work jumping ahead; None turns that off), ``reserve`` (0:
    positions of each single-slot replica kept for the most urgent work), ``idle_reserve`` (0: free slots
    over the replicas kept for the most urgent work), ``late_weight`` (2: never-shed work's cost of a
    likely late slot, in budgets; 0 ranks by the expected completion alone), ``probe_after_s`` (None: off;
    5: an idle replica silent this long gets the next request that may be shed and that it would meet).
    """

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
        alpha: float = 0.05,
        deviation_beta: float = 0.25,
        deviation_k: float = 2.0,
        residual: bool = True,
        arrival_window_s: float | None = 1.0,
        reserve: int = 0,
        idle_reserve: int = 0,
        late_weight: float = 2.0,
        probe_after_s: float | None = None,
    ) -> None:
        super().__init__(rng)
        if not safety_margin >= 0:
            raise ValueError(f"safety_margin: must be >= 0, got {safety_margin!r}")
        if not default_service_ms > 0:
            raise ValueError(f"default_service_ms: must be > 0, got {default_service_ms!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha: must be in (0, 1], got {alpha!r}")
        if not 0 < deviation_beta <= 1:
            raise ValueError(f"deviation_beta: must be in (0, 1], got {deviation_beta!r}")
        if not (deviation_k >= 0 and math.isfinite(deviation_k)):
            raise ValueError(f"deviation_k: must be a finite number >= 0, got {deviation_k!r}")
        if arrival_window_s is not None and not (arrival_window_s > 0 and math.isfinite(arrival_window_s)):
            raise ValueError(f"arrival_window_s: must be a finite number > 0 or None, got {arrival_window_s!r}")
        for key, value in (("reserve", reserve), ("idle_reserve", idle_reserve)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key}: must be an integer >= 0, got {value!r}")
        if not (late_weight >= 0 and math.isfinite(late_weight)):
            raise ValueError(f"late_weight: must be a finite number >= 0, got {late_weight!r}")
        if probe_after_s is not None and not (probe_after_s > 0 and math.isfinite(probe_after_s)):
            raise ValueError(f"probe_after_s: must be a finite number > 0 or None, got {probe_after_s!r}")
        self.probe_after_s = probe_after_s
        self._probed: dict[str, float] = {}  # replica id -> when a probe was sent, until it answers
        self._probe_check_at = -_INF
        self.reserve = reserve
        self.idle_reserve = idle_reserve
        self.late_weight = late_weight
        self.classes = dict(classes or {})
        self.top_priority = min((c.priority for c in self.classes.values()), default=0)
        self.safety_factor = 1.0 + safety_margin
        self.margin_ms = margin_ms
        self.default_service_ms = default_service_ms
        self.deviation_k = deviation_k
        self.arrival_window_s = arrival_window_s
        tau = probe_after_s / 2.0 if probe_after_s is not None else None  # a probe's answer weighs >= 86 %
        self.table = ServiceTable(alpha, deviation_beta, deviation_k, tau_s=tau)
        self.head = HeadOfLine() if residual else None
        self._slots: dict[str, int] = {}  # replica id -> slots, as last routed to
        self.urgency = UrgentRates(arrival_window_s) if arrival_window_s is not None else None

    # -- measuring ------------------------------------------------------------------------------------
    def on_dispatch(self, request: Request, replica_id: str, now: float) -> None:
        """Count ``request`` as pending at ``replica_id``; remember when it was sent, and its priority's rate."""
        super().on_dispatch(request, replica_id, now)
        if self.head is not None:
            slots = self._slots.get(replica_id, 1)
            self.head.sent(replica_id, request.id, request.model, now, self.wait_order(request), slots)
        if self.urgency is not None:
            self.urgency.on_dispatch(replica_id, request.priority, now)

    def observe(
        self, request: Request, replica_id: str, service_ms: float, latency_ms: float, ok: bool, now: float
    ) -> None:
        """Feed the (replica, model) mean/deviation with a successful request's service time; clear its pending."""
        super().observe(request, replica_id, service_ms, latency_ms, ok, now)
        if self.head is not None:
            if ok:
                self.head.observe_round_trip(latency_ms, service_ms)
            self.head.answered(replica_id, request.id, now, ok)
        if ok:
            self.observe_service(replica_id, request.model, service_ms, now)

    def observe_service(self, replica_id: str, model: str, service_ms: float, now: float) -> None:
        """One service time measured on ``replica_id`` (e.g. a replica's published sample): feeds the
        estimates only, not the pending counts. Not finite or negative: ignored."""
        if service_ms is None or not math.isfinite(service_ms) or service_ms < 0:
            return
        self.table.observe(replica_id, model, service_ms, now)
        if self._probed:
            self._probed.pop(replica_id, None)
        if self.head is not None:
            self.head.observe(replica_id, model, service_ms)

    def running(self, replica_id: str, request_id: object) -> bool | None:
        """Whether ``request_id`` is taken as executing on single-slot or any ``replica_id`` (the oldest of
        this router's requests in flight there); None without the head-of-line tracking."""
        return None if self.head is None else self.head.running(replica_id, request_id)

    def urgent_load(self, replica_id: str, priority: int, service_ms: float, slots: int, now: float) -> float:
        """``rho_h``: the load (0 = none, >= 1 = saturated) that work more urgent than ``priority`` puts on
        ``replica_id`` per slot, from this router's decayed dispatch rates, at ``service_ms`` per request."""
        if self.urgency is None:
            return 0.0
        return self.urgency.load(replica_id, priority, service_ms, slots, now)

    def service_ms(self, replica: ReplicaView, model: str) -> float:
        """The mean service-time estimate (ms) this router uses for ``model`` on ``replica``."""
        return self.table.estimate(replica, model, self.default_service_ms)[0]

    def predicted_service_ms(self, replica: ReplicaView, model: str) -> float:
        """The service time (ms) this router predicts for one request: mean + k * mean deviation."""
        return self.table.estimate(replica, model, self.default_service_ms)[1]

    def wait_order(self, request: Request) -> tuple[float, ...]:
        """Class priority, then earliest deadline, then arrival: the admission gate's order."""
        return (request.priority, request.deadline, request.arrival)

    # -- deciding -------------------------------------------------------------------------------------
    def choose(self, request: Request, replicas: list[ReplicaView], now: float) -> Decision:
        """Route, shed or wait (see the module docstring)."""
        remaining = (request.deadline - now) * 1000.0
        if remaining <= 0:
            return Shed("deadline_passed", None, request.rule_ids, math.nan)
        shedding, threshold = self._shedding(request)
        never = shedding is _NEVER
        # The most urgent class is routed as a never-shed one whatever its shedding mode (its replicas'
        # gates still refuse it when its queues are full): priority, not the mode, orders who is shed.
        urgent = never or (shedding is _OVERLOADED and request.priority <= self.top_priority)
        need = (remaining - self.margin_ms) / self.safety_factor
        use_util = threshold is not None and not never
        held = self._kept_off(request, replicas) if self.idle_reserve and not urgent else None
        reserve = 0 if urgent else self.reserve
        scan = self._scan(request, held or replicas, now, need, urgent, use_util, reserve=reserve)
        if scan.candidates == 0:
            return self._none_eligible(request, replicas)
        if scan.fastest is None:
            return Wait("all_replicas_full")
        if use_util and min(scan.min_util, 1.0) > threshold:  # type: ignore[operator]
            return Shed(
                "over_shed_threshold", self._retry_after(scan.fastest_pred), request.rule_ids, scan.fastest_pred
            )
        if urgent:
            return self._never_shed(request, replicas, now, need, scan)
        if scan.meet is not None:
            after = self.probe_after_s
            if after is not None and now >= self._probe_check_at:
                probe = self._probe(request, held or replicas, now, need, scan.meet, after)
                if probe is not None:
                    return probe
            return self._route(scan.meet, scan.meet_pred, "meets_budget", request)
        if scan.now_meet is not None:
            return self._route(scan.now_meet, scan.now_pred, "meets_present_queue", request)
        if held:  # the free slots are kept for urgent work; one frees before long
            return Wait("idle_reserved")
        # full: at the positions this request may take (the reserve's too), as in the first scan
        waits = self._scan(request, replicas, now, need, True, False, full=True, overtakes=True, reserve=self.reserve)
        if waits.fastest_pred <= need:
            return Wait("faster_replica_full")
        return Shed("cannot_meet_deadline", self._retry_after(scan.fastest_pred), request.rule_ids, scan.fastest_pred)

    def _route(self, replica: ReplicaView, pred: float, reason: str, request: Request) -> Route:
        # the replica's slots, for the head-of-line tracking when the request is dispatched there
        self._slots[replica.replica_id] = replica.slots
        return Route(replica.replica_id, pred, reason, request.rule_ids)

    @staticmethod
    def _none_eligible(request: Request, replicas: list[ReplicaView]) -> Shed:
        """No candidate: none passes placement, or every one that does is unhealthy."""
        allows = request.allows
        if any(allows is None or allows(r.attrs) for r in replicas):
            return Shed("no_healthy_replica", 1.0, request.rule_ids, math.nan)
        return Shed("no_eligible_replica", None, request.rule_ids, math.nan)

    def _never_shed(
        self, request: Request, replicas: list[ReplicaView], now: float, need: float, scan: _Scan
    ) -> Decision:
        """A class that is never shed (or the most urgent class) goes to the fastest free replica, unless
        that misses the budget and a replica that is full now would meet it: then it waits for that one
        (Lin & Kumar, 1984)."""
        fastest, pred = scan.fastest, scan.fastest_pred
        if pred <= need:
            return self._route(fastest, pred, "meets_budget", request)  # type: ignore[arg-type]
        if self._scan(request, replicas, now, need, True, False, full=True).fastest_pred <= need:
            return Wait("faster_replica_full")
        return self._route(fastest, pred, "fastest_never_shed", request)  # type: ignore[arg-type]

    def _scan(
        self, request: Request, replicas: list[ReplicaView], now: float, need: float, never: bool, use_util: bool,
        full: bool = False, overtakes: bool = False, reserve: int = 0,
    ) -> _Scan:  # fmt: skip
        """One pass over the candidates (healthy, allowed by the request's placement) with room
        (``full``: those without; ``overtakes``: only those holding queued work less urgent than this
        request; ``reserve``: positions of each single-slot replica this request may not take): each
        one's predicted completion (module docstring), ranked."""
        prio = request.priority
        model = request.model
        allows = request.allows
        pending = self.pending
        est = self.table.by_replica(model)
        urgency = self.urgency
        urgent = urgency.below(prio) if urgency is not None else None
        unit = urgency.unit(now) if urgent else 0.0  # type: ignore[union-attr]
        late_ms = self.late_weight * (request.deadline - request.arrival) * 1000.0 if never else 0.0
        candidates = 0
        meet = now_meet = fastest = None
        meet_cost = meet_pred = now_cost = now_pred = fastest_pred = fastest_key = min_util = _INF
        for r in replicas:
            if not r.healthy or (allows is not None and not allows(r.attrs)):
                continue
            candidates += 1
            rid = r.replica_id
            local = pending.get(rid, 0)
            ongoing = local if local > r.ongoing else r.ongoing
            if (ongoing >= (r.max_ongoing - reserve if reserve and r.slots == 1 else r.max_ongoing)) is not full:
                continue
            ahead = ongoing  # executing, and queued no less urgent than this request
            qbp = r.queued_by_priority
            if qbp:
                for q, k in qbp.items():
                    if q > prio:
                        ahead -= k
            if overtakes and ahead >= ongoing:
                continue
            e = est.get(rid)
            s, s_hi = e if e is not None else self._published(r, model, est)
            if ahead < r.slots:
                pred = pred_now = s_hi
                late = 0.0
            else:
                rate = urgent.get(rid, 0.0) * unit if urgent else 0.0
                pred, pred_now, late = self._queued(r, now, ahead, s, s_hi, rate, late_ms, need)
            if use_util:
                util = (ongoing + 1) / (r.slots if r.max_ongoing == _INF else r.max_ongoing)
                min_util = util if util < min_util else min_util
            if not never:
                cost = r.cost
                if pred <= need:
                    if cost < meet_cost or (cost == meet_cost and pred < meet_pred):
                        meet, meet_cost, meet_pred = r, cost, pred
                elif (
                    pred_now <= need
                    and meet is None
                    and (cost < now_cost or (cost == now_cost and pred_now < now_pred))
                ):
                    now_meet, now_cost, now_pred = r, cost, pred_now
            # never-shed work ranks by expected completion (the mean: an idle replica that drew a slow
            # request lately is still faster than a busy one); pred is inf where urgent work saturates
            key = (pred - s_hi + s if never else pred) + late
            if key < fastest_key or fastest is None:
                fastest, fastest_pred, fastest_key = r, pred, key
        return _Scan(candidates, meet, meet_pred, now_meet, now_pred, fastest, fastest_pred, min_util)

    def _probe(
        self, request: Request, replicas: list[ReplicaView], now: float, need: float, meet: ReplicaView, after: float
    ) -> Route | None:
        """A route to an idle replica of ``replicas`` no dearer than ``meet``, meeting the budget, that has
        not answered (nor been probed) for ``after`` seconds, if any (module docstring, "Probing"); looked
        for at most every ``_PROBE_CHECK_S``."""
        self._probe_check_at = now + _PROBE_CHECK_S
        allows, model, pending = request.allows, request.model, self.pending
        est = self.table.by_replica(model)
        for r in replicas:
            if r is meet or r.cost > meet.cost or not r.healthy or (allows is not None and not allows(r.attrs)):
                continue
            rid = r.replica_id
            if max(pending.get(rid, 0), r.ongoing) >= r.slots or not self._stale(rid, model, now, after):
                continue
            e = est.get(rid)
            pred = e[1] if e is not None else self._published(r, model, est)[1]  # idle: its own service time
            if pred <= need:
                if len(self._probed) > 4096:  # probes to replicas that went away before answering
                    self._probed.clear()
                self._probed[rid] = now
                return self._route(r, pred, "probe_stale", request)
        return None

    def _stale(self, replica_id: str, model: str, now: float, after_s: float) -> bool:
        """True when ``replica_id`` answered ``model`` before but not (nor was it probed) for ``after_s``
        seconds; a replica that never answered is priced by its peers (``_published``), not probed."""
        last = self.table.last_at(replica_id, model)
        if last is None:
            return False
        probed = self._probed.get(replica_id)
        if probed is not None and probed > last:
            last = probed
        return now - last > after_s

    def _kept_off(self, request: Request, replicas: list[ReplicaView]) -> list[ReplicaView] | None:
        """The replicas without a free slot when at most ``idle_reserve`` slots are free over the healthy
        replicas ``request`` may use (ongoing counted as ``_scan`` counts it), else None (all may be used)."""
        pending = self.pending
        allows = request.allows
        free = 0
        busy = []
        for r in replicas:
            if r.healthy and (allows is None or allows(r.attrs)):
                local = pending.get(r.replica_id, 0)
                ongoing = local if local > r.ongoing else r.ongoing
                if ongoing < r.slots:
                    free += r.slots - ongoing
                else:
                    busy.append(r)
        return busy if busy and free <= self.idle_reserve else None

    def _published(
        self, r: ReplicaView, model: str, measured: Mapping[str, tuple[float, float]]
    ) -> tuple[float, float]:
        """``(mean, mean)``: the replica's published service time before it has answered this router; with
        none published, the mean of the replicas this router measured (``measured``), else
        ``default_service_ms``. A replica nobody measured yet is taken as fast as its peers, not as the
        default: with a pessimistic default it ranks behind a busy measured peer, never gets a call and
        never gets measured (a canary replica starved that way: integration test, ~1 run in 4)."""
        sm = r.service_ms
        s = sm.get(model) or sm.get("default")
        if not s:
            s = sum(v[0] for v in measured.values()) / len(measured) if measured else self.default_service_ms
        return s, s

    def _queued(
        self, r: ReplicaView, now: float, ahead: int, s: float, s_hi: float, urgent: float, late_ms: float, need: float
    ) -> tuple[float, float, float]:
        """``(pred, pred_now, late)`` on a replica where the request has to queue behind ``ahead`` requests:
        with more urgent work overtaking (``urgent``: its rate there per ms of service; 0: none), with
        the queue of the moment alone, and ``late_ms`` x P(late): the chance no slot frees in time for it to
        finish within ``need`` ms (``HeadOfLine.estimate``; 0 where the ages are not used)."""
        slots = r.slots
        head = self.head
        late = 0.0
        if head is not None and (slots == 1 or head.life.heavy):  # (HeadOfLine.estimate: where ages matter)
            wait, p_late = head.estimate(r.replica_id, now, ahead, s, slots, need - s if late_ms else _INF)
            if late_ms and p_late:
                late = p_late * late_ms
        else:
            wait = (ahead - slots + 1) / slots * s
        pred_now = wait + s_hi
        if not urgent:
            return pred_now, pred_now, late
        rho = urgent * s / slots
        if rho >= 1.0:
            return _INF, pred_now, late  # more urgent work saturates the replica: it never reaches this request
        free = 1.0 - rho
        # busy period started by `wait`: mean wait / (1 - rho), variance
        # wait * rho * E[S^2] / E[S] / (1 - rho)^3 (E[S^2] / E[S] ~ s_hi per slot)
        wait = (wait + self.deviation_k * math.sqrt(wait * rho * s_hi / slots / free)) / free
        return wait + s_hi, pred_now, late

    def _retry_after(self, pred_ms: float) -> float:
        """Retry hint (s): the predicted completion, or one rate window when urgent work saturates it."""
        return pred_ms / 1000.0 if pred_ms < _INF else self.arrival_window_s or 1.0

    def _shedding(self, request: Request) -> tuple[Shedding, float | None]:
        cls = self.classes.get(request.qos)
        if cls is None:
            return request.shedding, None
        return cls.shedding, cls.shed_threshold
