"""``agentic``: the deadline-aware router (cheapest replica that meets the remaining budget).

For each eligible replica r (placement ``request.allows(r.attrs)``, healthy, ``ongoing < max_ongoing``)
it predicts this request's completion time from now::

    m     = mean service ms of (r, model): own estimate fed by ``observe``, else r.service_ms[model],
            else r.service_ms["default"], else ``default_service_ms``
    d     = mean deviation of that service time (own estimate; 0 while only the replica's report is known)
    n     = executing on r + queued on r with priority <= this request's (work ahead of its class);
            executing = max(ongoing, local pending) - queued; unreported local pending counts as ahead
    wait  = 0 if n < slots else (n - slots + 1) / slots * m      (the n-th request ahead frees a slot)
    pred  = wait + m + k * d                                      (k = ``deviation_k``, default 2)

``m + k * d`` is Jacobson/Karels' estimator (TCP's retransmission timeout, "Congestion Avoidance and
Control", SIGCOMM 1988; RFC 6298 uses k = 4): with the mean alone, a replica whose service time varies
(cv 0.5) is predicted to finish on time about half of the times it is chosen at the edge of the
budget; the deviation term asks for room for a likely slow draw. The queue wait uses the mean (a sum of
n draws varies about sqrt(n) times one draw, not n times). Estimates: ``MeanDeviation`` in
``estimators.py`` (mean smoothing ``alpha``, deviation smoothing ``deviation_beta``, as RFC 6298).
``alpha`` defaults to 0.05 (a memory of about 20 samples per replica and model; RFC 6298 uses 1/8): with
bimodal service (5 % of requests 40x slower) a faster-forgetting mean drops back to the fast mode
between slow requests and ``m + k * d`` under-predicts; in the SLO matrix (``benchmarks/slo_matrix.py``)
0.05 was as good or better than 0.2 in every scenario, including ``straggler`` and ``failure``, where
the estimate must follow a replica that slows down or dies.

Head-of-line residual (``residual=True``): a busy single-slot replica (n >= 1) may be running a request
far slower than the mean (bimodal service: 5 % of requests take 40x the typical time), which no
replica report shows. The router remembers when it sent each request still in flight (``on_dispatch``,
cleared by ``observe``); the oldest one on the replica is taken as the running one, started at
``max(sent, last answer from that replica)``, and its expected remaining time is the mean residual life
``E[S - age | S > age]`` of recent service times (``ResidualLife`` in ``residual.py``)::

    wait  = residual(age) + (n - 1) * m      (instead of n * m)

Replicas with several slots keep the formula above (one slow request holds one slot of many).

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
pow2's); with it 24.5 rps (oracle 24.4).

A replica *meets* the budget when ``pred * (1 + safety_margin) + margin_ms <= remaining_ms``.

- Classes that may be shed (``when_overloaded``, ``first``): among replicas that meet the budget, the
  cheapest (``ReplicaView.cost``: CPU before GPU), then the fastest; when none meets it, not even with
  its present queue (see "Jumping ahead"), ``Shed("cannot_meet_deadline", retry_after_s)``.
- Never-shed classes (``never``) rank by predicted completion, not cost: the fastest replica, whether
  or not it meets the budget. Cost ranking only trades a cheaper replica for a later (still on-time)
  completion, and for work that cannot be shed the margin is worth more than the saving. When even the
  fastest free replica is predicted to miss but a replica that is full now (``ongoing >= max_ongoing``)
  would meet the budget with the work ahead of this class, the request waits
  (``Wait("faster_replica_full")``) instead of starting on a replica known to be too slow (e.g. a
  large-model request to a 150 ms CPU replica while the 30 ms GPUs are momentarily full): one
  completion on the fast replica frees the position long before the slow one would finish. Otherwise
  ``Route(..., reason="fastest_never_shed")``. This is the "wait for the fast server" rule of
  heterogeneous-server queueing (Lin & Kumar, "Optimal control of a queueing system with two
  heterogeneous servers", IEEE TAC 1984: a slow server should be used only when the queue is long
  enough).

Headroom: a class with ``shed_threshold`` (and shedding other than ``never``) is shed with reason
``"over_shed_threshold"`` when the least-utilised eligible replica, counting this request, is above the
threshold (utilisation = ongoing / max_ongoing, or ongoing / slots when unbounded, capped at 1), even if
it could meet its own budget, so that less critical work goes first and critical work keeps headroom.

Held requests (after ``Wait``) leave in ``wait_order = (priority, deadline, arrival)``: the class
priority first, then earliest deadline, the same discipline as the replicas' ``AdmissionGate``, so
work held at the router leaves in the order the gate would start it (a plain EDF order would let a
sheddable request with a near deadline take a freed position ahead of a critical one).

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
from agentic_ray.scheduling.estimators import MeanDeviation
from agentic_ray.scheduling.residual import ResidualLife
from agentic_ray.scheduling.retry import RetryBudget
from agentic_ray.scheduling.routers.base import GATE, PendingRouter
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Shed, Wait

__all__ = ["AgenticRouter"]

_NEVER = Shedding.NEVER
_REBASE = 200.0  # time constants between epoch moves of the decayed dispatch rates (exp(200) is finite)
_MAX_TRACKED = 1024  # in-flight requests remembered per replica (oldest forgotten first)


class AgenticRouter(PendingRouter):
    """Deadline-aware, cost-aware router (see the module docstring). Replicas run an AdmissionGate.

    Config keys (all optional): ``classes``, ``safety_margin`` (0.1), ``margin_ms`` (0), ``default_service_ms``
    (50), ``alpha`` (0.05: mean smoothing), ``deviation_beta`` (0.25: deviation smoothing), ``deviation_k``
    (2: deviations added to the mean; 0 predicts with the mean alone), ``hedge_budget``, ``residual``
    (True: predict a single-slot replica's head-of-line wait from its oldest in-flight request's age),
    ``arrival_window_s`` (1.0: time constant of the per-replica, per-priority dispatch rates that stretch
    a queued request's wait for more urgent work jumping ahead; None turns that off).
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
        hedge_budget: RetrySettings | None = None,
        deviation_beta: float = 0.25,
        deviation_k: float = 2.0,
        residual: bool = True,
        arrival_window_s: float | None = 1.0,
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
        self.classes = dict(classes or {})
        self.safety_factor = 1.0 + safety_margin
        self.margin_ms = margin_ms
        self.default_service_ms = default_service_ms
        self.alpha = alpha
        self.deviation_beta = deviation_beta
        self.deviation_k = deviation_k
        # model -> replica id -> its estimator, and the hot-path copy (mean, mean + k * deviation).
        self._stats_by_model: dict[str, dict[str, MeanDeviation]] = {}
        self._est_by_model: dict[str, dict[str, tuple[float, float]]] = {}
        self.hedge_budget = RetryBudget(hedge_budget) if hedge_budget is not None else None
        # Head-of-line residual: replica id -> request id -> (dispatched at, model), insertion-ordered,
        # and the time of the last answer from each replica (its oldest in-flight request started no
        # earlier than that).
        self.residual = ResidualLife() if residual else None
        self._inflight: dict[str, dict[object, tuple[float, str]]] = {}
        self._last_answer: dict[str, float] = {}
        # Jumping ahead: replica id -> priority -> decayed dispatch rate (1/s) scaled to the epoch
        # ``rate(now) = scaled * exp((epoch - now) / tau)``, so that one exp per decision decays them all;
        # the epoch moves (all rates rescaled) every _REBASE time constants to keep exp() finite.
        self.arrival_window_s = arrival_window_s
        # ``_below[p][rid]`` caches the sum over priorities q < p, for every priority level p seen so far.
        self._rates: dict[str, dict[int, float]] | None = {} if arrival_window_s is not None else None
        self._below: dict[int, dict[str, float]] = {}
        self._levels: set[int] = set()
        self._epoch: float | None = None

    def on_dispatch(self, request: Request, replica_id: str, now: float) -> None:
        """Count ``request`` as pending at ``replica_id``; remember when it was sent."""
        super().on_dispatch(request, replica_id, now)
        if self.residual is not None:
            flights = self._inflight.get(replica_id)
            if flights is None:
                flights = self._inflight[replica_id] = {}
            elif len(flights) >= _MAX_TRACKED:
                del flights[next(iter(flights))]
            flights[request.id] = (now, request.model)
        rates = self._rates
        if rates is not None:
            tau: float = self.arrival_window_s  # type: ignore[assignment]
            epoch = self._epoch
            if epoch is None:
                epoch = self._epoch = now
            elif now - epoch > _REBASE * tau:
                factor = math.exp((epoch - now) / tau)  # underflows to 0.0 after a long idle: fine
                for table in (rates, self._below):
                    for by in table.values():
                        for key in by:
                            by[key] *= factor
                epoch = self._epoch = now
            prio = request.priority
            if prio not in self._levels:
                self._add_level(prio)
            by_prio = rates.get(replica_id)
            if by_prio is None:
                by_prio = rates[replica_id] = {}
            inc = math.exp((now - epoch) / tau) / tau
            by_prio[prio] = by_prio.get(prio, 0.0) + inc
            for level, table in self._below.items():
                if level > prio:
                    table[replica_id] = table.get(replica_id, 0.0) + inc

    def _add_level(self, level: int) -> None:
        """Start caching, for every replica, the scaled dispatch rate of priorities below ``level``."""
        self._levels.add(level)
        self._below[level] = {
            rid: sum(v for q, v in by_prio.items() if q < level)
            for rid, by_prio in self._rates.items()  # type: ignore[union-attr]
        }

    def urgent_load(self, replica_id: str, priority: int, service_ms: float, slots: int, now: float) -> float:
        """``rho_h``: the load (0 = none, >= 1 = saturated) that work more urgent than ``priority`` puts on
        ``replica_id`` per slot, from this router's decayed dispatch rates, at ``service_ms`` per request."""
        if self._rates is None or self._epoch is None:
            return 0.0
        by_prio = self._rates.get(replica_id)
        if not by_prio:
            return 0.0
        scaled = sum(v for q, v in by_prio.items() if q < priority)
        decay = math.exp((self._epoch - now) / self.arrival_window_s)  # type: ignore[operator]
        return scaled * decay * service_ms / (1000.0 * slots)

    def wait_order(self, request: Request) -> tuple[float, ...]:
        """Class priority, then earliest deadline, then arrival: the admission gate's order."""
        return (request.priority, request.deadline, request.arrival)

    def observe(
        self, request: Request, replica_id: str, service_ms: float, latency_ms: float, ok: bool, now: float
    ) -> None:
        """Feed the (replica, model) mean/deviation with a successful request's service time; clear its pending."""
        super().observe(request, replica_id, service_ms, latency_ms, ok, now)
        if self.residual is not None:
            flights = self._inflight.get(replica_id)
            if flights is not None and flights.pop(request.id, None) is not None:
                self._last_answer[replica_id] = now
        if ok and service_ms is not None and math.isfinite(service_ms) and service_ms >= 0:
            stats = self._stats_by_model.setdefault(request.model, {})
            st = stats.get(replica_id)
            if st is None:
                st = stats[replica_id] = MeanDeviation(self.alpha, self.deviation_beta)
            if self.residual is not None and st.mean is not None:
                self.residual.observe(service_ms, st.mean)
            st.observe(service_ms, now)
            mean = st.mean
            self._est_by_model.setdefault(request.model, {})[replica_id] = (mean, mean + self.deviation_k * st.dev)

    def service_ms(self, replica: ReplicaView, model: str) -> float:
        """The mean service-time estimate (ms) this router uses for ``model`` on ``replica``."""
        return self._estimate(replica, model)[0]

    def predicted_service_ms(self, replica: ReplicaView, model: str) -> float:
        """The service time (ms) this router predicts for one request: mean + k * mean deviation."""
        return self._estimate(replica, model)[1]

    def _estimate(self, replica: ReplicaView, model: str) -> tuple[float, float]:
        est = self._est_by_model.get(model, {}).get(replica.replica_id)
        if est is None:
            sm = replica.service_ms
            s = sm.get(model) or sm.get("default") or self.default_service_ms
            est = (s, s)
        return est

    def _head_wait(self, rid: str, now: float, ahead: int, s: float, flights: dict[object, tuple[float, str]]) -> float:
        """Wait (ms) on a busy single-slot replica: the oldest in-flight request's mean residual life
        (its age counted from max(sent, last answer from the replica)), then ``ahead - 1`` means."""
        if not flights:
            return ahead * s
        sent, head_model = flights[next(iter(flights))]
        started = self._last_answer.get(rid, sent)
        if sent > started:
            started = sent
        head_est = self._est_by_model.get(head_model)
        head_mean = head_est[rid][0] if head_est and rid in head_est else s
        rest = self.residual.residual((now - started) * 1000.0, head_mean)  # type: ignore[union-attr]
        if rest is None:
            return ahead * s
        return rest + (ahead - 1) * s

    def _retry_after(self, pred_ms: float) -> float:
        """Retry hint (s): the predicted completion, or one rate window when urgent work saturates it."""
        return pred_ms / 1000.0 if pred_ms < math.inf else self.arrival_window_s or 1.0

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
        est = self._est_by_model.get(model) or {}
        inflight = self._inflight if self.residual is not None else None
        urgent = None  # replica id -> scaled dispatch rate of work more urgent than this request
        if self._rates:
            if prio not in self._levels:
                self._add_level(prio)
            urgent = self._below[prio]
            # rho_h per ms of service and slot = scaled rate * load_unit (one exp per decision)
            load_unit = math.exp((self._epoch - now) / self.arrival_window_s) / 1000.0  # type: ignore[operator]
        dev_k = self.deviation_k
        sqrt = math.sqrt
        default_s = self.default_service_ms
        inf = math.inf
        placed = 0
        healthy = 0
        min_util = inf
        meet: ReplicaView | None = None
        meet_cost = meet_pred = inf
        now_meet: ReplicaView | None = None  # meets with the queue of the moment (nothing overtaking)
        now_cost = now_pred = inf
        fastest: ReplicaView | None = None
        fastest_pred = inf
        second: ReplicaView | None = None
        second_pred = inf
        full_pred = inf  # best prediction on a replica that is full now (never-shed classes only)
        need = (remaining - self.margin_ms) / self.safety_factor
        shedding, threshold = self._shedding(request)
        never = shedding is _NEVER
        use_util = threshold is not None and not never
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
            full = ongoing >= max_ongoing
            if full and not never:
                continue
            qbp = r.queued_by_priority
            ahead = ongoing
            if qbp:
                for q, k in qbp.items():
                    if q > prio:
                        ahead -= k
                if ahead < 0:
                    ahead = 0
            e = est.get(rid)
            if e is None:
                sm = r.service_ms
                s = s_hi = sm.get(model) or sm.get("default") or default_s
            else:
                s, s_hi = e
            slots = r.slots
            stretched = False
            if ahead < slots:
                pred = s_hi
            else:
                if slots == 1 and inflight and rid in inflight:
                    wait = self._head_wait(rid, now, ahead, s, inflight[rid])
                else:
                    wait = (ahead - slots + 1) / slots * s
                u = urgent.get(rid) if urgent else None
                if u:
                    rho = u * load_unit * s / slots
                    stretched = True
                    pred_now = wait + s_hi
                    if rho >= 1.0:
                        wait = inf
                    else:
                        free = 1.0 - rho
                        # busy period started by `wait`: mean wait / (1 - rho), variance
                        # wait * rho * E[S^2] / E[S] / (1 - rho)^3 (E[S^2] / E[S] ~ s_hi per slot)
                        wait = (wait + dev_k * sqrt(wait * rho * s_hi / slots / free)) / free
                pred = wait + s_hi
            if full:
                if pred < full_pred:
                    full_pred = pred
                continue
            if use_util:
                util = (ongoing + 1) / (slots if max_ongoing == inf else max_ongoing)
                if util < min_util:
                    min_util = util
            if not never:
                if pred <= need:
                    cost = r.cost
                    if cost < meet_cost or (cost == meet_cost and pred < meet_pred):
                        meet, meet_cost, meet_pred = r, cost, pred
                elif stretched and meet is None and pred_now <= need:
                    cost = r.cost
                    if cost < now_cost or (cost == now_cost and pred_now < now_pred):
                        now_meet, now_cost, now_pred = r, cost, pred_now
            if pred < fastest_pred or fastest is None:  # pred is inf on a replica saturated by urgent work
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
            return Shed("over_shed_threshold", self._retry_after(fastest_pred), request.rule_ids, fastest_pred)
        if never:
            if fastest_pred <= need:
                pred, chosen, reason = fastest_pred, fastest, "meets_budget"
            elif full_pred <= need:
                return Wait("faster_replica_full")
            else:
                pred, chosen, reason = fastest_pred, fastest, "fastest_never_shed"
        elif meet is not None:
            pred, chosen, reason = meet_pred, meet, "meets_budget"
        elif now_meet is not None:
            pred, chosen, reason = now_pred, now_meet, "meets_present_queue"
        else:
            return Shed("cannot_meet_deadline", self._retry_after(fastest_pred), request.rule_ids, fastest_pred)
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
