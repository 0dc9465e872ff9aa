"""The simulation run loop: one router, one workload, one virtual clock.

Life of a request (all times virtual)::

    arrival at router -> router.choose(request, views, now)
        Route(r) -> on_dispatch; travels network_ms -> replica r: starts, queues (fifo) or is offered
                    to r's AdmissionGate (gate); after its service time (x slowdown) it finishes and the
                    response travels network_ms back -> router.observe(...); latency = return - arrival
        Shed     -> counted shed at once
        Wait     -> held at the router, ordered by router.wait_order(request) (ties FIFO); retried in
                    that order whenever a replica reports back (at most one held request is routed
                    per freed position) or crashes; the scan stops at the first request told to wait
                    because every replica is full, or after 64 that wait for a replica of their own
                    (placement-constrained, or waiting for a faster replica that is busy)

Requests refused or dropped by a replica's gate are counted ``shed`` and reported back to the router
with ``ok=False``; requests on a replica when it crashes, or started on it while an ``error`` fault
lasts, are counted ``failed``. Requests still held at the router when nothing is left to happen (every
replica gone) are counted ``failed``.

Routers whose replicas run a gate (``replica_discipline == "gate"``: ``agentic``) are driven the way
Serve's router drives them, through ``scheduling.routing_state.RoutingState`` (``admit``, ``decide``,
``routed``, ``completed``), each replica's view registered as a live view (the loop keeps it exact). So
the simulated run has what the live one has:

- gates built like a deployment's (``admission.replica_gate``: budget-sized queue bounds, the tenants'
  share caps);
- the circuit breaker, fed with every answer (a failed call: a failure; a refusal by admission: no
  signal) and with the crash of a replica; an ejected replica gets no work until its probe;
- hedging: for a class with ``hedge_after_ms``, when no answer came that long after arrival and the
  deadline has not passed, a second copy goes through ``decide`` (never to the first copy's replica,
  paid from the retry budget; a refused hedge is ignored and the first copy awaited). The first answer
  that succeeds wins; the other copy is cancelled at once: taken out of its replica's queue, or its slot
  freed, and its position at the router given back. A request fails only when both copies do (then
  with the first copy's outcome), as ``agentic_ray.serve.call`` does.

Streams (a workload with ``tokens``): a request's first token leaves its replica ``prefill_ms`` after it
starts (times the slowdown it started under) and reaches the caller ``network_ms`` later; its TTFT and
TPOT are recorded per class (``metrics``). With gated replicas, every completed stream teaches the gate's
stream estimate at once and the routing state's when its answer returns (``StreamSample``), and a class
with ``ttft_ms`` gets the routing state's stream router (``scheduling.streams``), as on Serve. As on
Serve, a stream's duration is not a service-time sample of the gate or the router.

Baseline routers (``fifo`` replicas) keep the bare loop: ``router.choose`` / ``on_dispatch`` /
``observe``, as Serve's default router has no breaker, retry budget or hedges.

The loop reads no clock: ``timer`` (e.g. ``time.perf_counter_ns``), when given, times each router
decision (``router.choose``; with the routing state, its ``with_room`` and ``choose``) and the whole run
for the ``decision_us_*`` and ``sim_requests_per_s`` figures; ``cpu_timer`` (e.g.
``time.process_time_ns``) gives ``sim_requests_per_cpu_s``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from agentic_ray.policies.types import BreakerSettings, QosClass, RetrySettings
from agentic_ray.scheduling.streams import StreamSample, stream_router_for
from agentic_ray.scheduling.types import Request, Route, Router, Shed, Wait
from agentic_ray.sim.cluster import SimReplica, build_replicas
from agentic_ray.sim.engine import EventQueue
from agentic_ray.sim.metrics import ClassStats, percentile, summarize
from agentic_ray.sim.scenario import Scenario
from agentic_ray.sim.workload import Workload

__all__ = ["RunResult", "run_router"]

_AT_REPLICA, _DONE, _RETURN, _FAULT_START, _FAULT_END, _CRASH, _HEDGE, _ERRORS_START, _ERRORS_END = range(9)
_COMPLETED, _SHED, _FAILED, _CANCELLED = 1, 2, 3, 4
_SERVICE_EWMA_ALPHA = 0.1
_MAX_HELD_SCAN = 64  # placement-constrained waiters retried per replica event before giving up
# Waits that say "this request waits for one replica", not "every replica is full": later requests may
# still go elsewhere, so the scan of held requests goes on past them.
_OWN_WAITS = frozenset({"faster_replica_full", "faster_replica_busy"})


class _Job:
    """One copy of a request at the router (a hedged request has two, ``twin`` of each other).

    ``outcome``: 0 while it runs; negative once its replica decided (the answer is on its way back);
    positive once it ended at the router. ``settled`` (first copy only): the request's outcome is recorded."""

    __slots__ = ("dispatched", "fails", "hedge", "index", "key", "outcome", "reason", "replica", "request",
                 "service_ms", "settled", "slow", "start", "started", "twin")  # fmt: skip

    def __init__(self, index: int, request: Request, key: int, hedge: bool = False) -> None:
        self.index = index
        self.request = request
        self.key = key  # the routing state's key: the index, or ~index for a hedge
        self.hedge = hedge
        self.twin: _Job | None = None
        self.replica: SimReplica | None = None
        self.outcome = 0
        self.reason = ""
        self.service_ms = math.nan
        self.started = False
        self.start = 0.0  # when it started on its replica (virtual s)
        self.dispatched = False
        self.fails = False
        self.settled = False
        self.slow = 1.0  # the slowdown it started under


@dataclass(slots=True)
class RunResult:
    """Outcome of one router on one workload (see ``to_json`` for the reported fields)."""

    router: str
    classes: dict[str, ClassStats]
    measured_s: float
    violations: int = 0
    decision_ns: list[int] = field(default_factory=list)
    shed_reasons: dict[str, int] = field(default_factory=dict)
    class_shed_reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> reason -> count
    wall_ns: int | None = None
    cpu_ns: int | None = None
    total_requests: int = 0
    tenants: dict[str, ClassStats] = field(default_factory=dict)
    hedges_sent: int = 0  # second copies routed
    hedges_won: int = 0  # requests whose second copy answered first
    hedges_refused: int = 0  # second copies the routing state refused (budget, no other replica, ...)
    busy_cost: float = 0.0  # sum over measured requests' executions of seconds on a replica x its cost

    def to_json(self) -> dict[str, Any]:
        """The per-router JSON object of the ``agentic-ray sim`` output."""
        overall = ClassStats()
        for stats in self.classes.values():
            overall.merge(stats)
        d = sorted(self.decision_ns)
        p50, p99 = percentile(d, 0.5), percentile(d, 0.99)
        out: dict[str, Any] = {
            "overall": summarize(overall),
            "classes": {name: summarize(s) for name, s in sorted(self.classes.items())},
            "goodput_rps": round(overall.within_budget / self.measured_s, 4),
            "cost_per_1k_good": (
                round(1000.0 * self.busy_cost / overall.within_budget, 4) if overall.within_budget else None
            ),
            "decision_us_p50": None if p50 is None else round(p50 / 1000.0, 3),
            "decision_us_p99": None if p99 is None else round(p99 / 1000.0, 3),
            "violations": self.violations,
            "shed_reasons": dict(sorted(self.shed_reasons.items())),
            "shed_reasons_by_class": {c: dict(sorted(r.items())) for c, r in sorted(self.class_shed_reasons.items())},
        }
        if self.tenants:
            out["tenants"] = {name: summarize(s) for name, s in sorted(self.tenants.items())}
        if self.hedges_sent or self.hedges_refused:
            out["hedges"] = {"sent": self.hedges_sent, "won": self.hedges_won, "refused": self.hedges_refused}
        if self.wall_ns:
            out["sim_requests_per_s"] = round(self.total_requests / (self.wall_ns / 1e9), 1)
        if self.cpu_ns:
            out["sim_requests_per_cpu_s"] = round(self.total_requests / (self.cpu_ns / 1e9), 1)
        return out


def _fifo_key(request: Request) -> tuple[float, ...]:
    return (request.arrival,)


class _Run:
    """State of one run; ``run()`` drives the event loop to the end."""

    def __init__(
        self,
        scenario: Scenario,
        workload: Workload,
        router: Router,
        classes: Mapping[str, QosClass],
        timer: Callable[[], int] | None,
        name: str,
        slowdowns: dict[str, float] | None = None,
        cpu_timer: Callable[[], int] | None = None,
        admission: tuple[Any, ...] = (None, None, None, None),
    ) -> None:
        self.slowdowns = slowdowns
        self.cpu_timer = cpu_timer
        self.scenario = scenario
        self.workload = workload
        self.router = router
        self.timer = timer
        self.net = scenario.network_ms / 1000.0
        self.wait_key = getattr(router, "wait_order", _fifo_key)
        discipline = getattr(router, "replica_discipline", "fifo")
        breaker, retry, tenant_shares, *more = admission  # (..., costs): costs None -> the scenario's
        costs = more[0] if more and more[0] is not None else scenario.costs
        hedge_running = scenario.hedge_running
        make_gate = None
        if discipline == "gate":
            from agentic_ray.scheduling.admission import replica_gate

            def make_gate(spec: Any) -> Any:
                return replica_gate(spec.slots, classes, tenant_shares=tenant_shares)
        elif discipline != "fifo":
            raise ValueError(f"router {name!r}: unknown replica_discipline {discipline!r}")
        self.replicas = build_replicas(list(scenario.replicas), make_gate, costs)
        self.by_id = {r.replica_id: r for r in self.replicas}
        self.views = [r.view for r in self.replicas]
        self.state = None
        if discipline == "gate":
            from agentic_ray.scheduling.routing_state import RoutingState

            self.state = RoutingState(router, breaker=breaker, retry=retry, timer=timer, hedge_running=hedge_running,
                                      streams=stream_router_for(classes))  # fmt: skip
            for view in self.views:
                self.state.add_replica(view)
        self.free = len(self.replicas)  # alive replicas with ongoing < max_ongoing
        self.events = EventQueue()
        self.waiting: list[tuple[Any, int, _Job]] = []
        self.wait_seq = 0
        self.result = RunResult(name, {c: ClassStats() for c in workload.class_budget_ms}, scenario.measured_s)
        self.token_budgets = {n: (c.ttft_ms, c.tpot_ms) for n, c in classes.items()}

    # ----------------------------------------------------------------- recording
    def _stats(self, job: _Job) -> ClassStats | None:
        if not self.workload.items[job.index].measured:
            return None
        stats = self.result.classes.get(job.request.qos)
        if stats is None:
            stats = self.result.classes[job.request.qos] = ClassStats()
        return stats

    def _finish(self, job: _Job, outcome: int, now: float, reason: str = "") -> None:
        """A copy ended at the router with ``outcome``; record its request unless a twin decides it."""
        job.outcome = outcome
        job.reason = reason
        if job.twin is None:
            self._record(job, outcome, now, reason)
        else:
            self._finish_copy(job, outcome, now)

    def _finish_copy(self, job: _Job, outcome: int, now: float) -> None:
        """One copy of a hedged request ended: the first success wins (the other copy is cancelled); the
        request fails only when both copies did, with the first copy's outcome."""
        twin: _Job = job.twin  # type: ignore[assignment]
        first = twin if job.hedge else job
        if first.settled:
            return
        if job.hedge and not job.dispatched and outcome == _SHED:
            self.result.hedges_refused += 1
        if outcome == _COMPLETED:
            first.settled = True
            self.result.hedges_won += job.hedge
            self._record(job, _COMPLETED, now, "")
            self._cancel(twin, now)
        elif twin.outcome > 0:
            first.settled = True
            self._record(first, first.outcome, now, first.reason)

    def _record(self, job: _Job, outcome: int, now: float, reason: str) -> None:
        stats = self._stats(job)
        if stats is None:
            return
        tenant = job.request.tenant
        targets = (stats,) if tenant is None else (stats, self._tenant_stats(tenant))
        for st in targets:
            st.requests += 1
            if outcome == _COMPLETED:
                st.completed += 1
                st.latencies_ms.append((now - job.request.arrival) * 1000.0)
                if now <= job.request.deadline + 1e-12:
                    st.within_budget += 1
            elif outcome == _SHED:
                st.shed += 1
            else:
                st.failed += 1
        if job.request.prompt_tokens is not None:
            self._record_stream(job, targets, outcome == _COMPLETED)
        if outcome == _SHED:
            result = self.result
            result.shed_reasons[reason] = result.shed_reasons.get(reason, 0) + 1
            by_class = result.class_shed_reasons.get(job.request.qos)
            if by_class is None:
                by_class = result.class_shed_reasons[job.request.qos] = {}
            by_class[reason] = by_class.get(reason, 0) + 1

    def _record_stream(self, job: _Job, targets: tuple[ClassStats, ...], completed: bool) -> None:
        """A stream request's TTFT and TPOT (none when it did not complete) against its class's budgets."""
        ttft = tpot = None
        if completed and job.replica is not None:
            item = self.workload.items[job.index]
            prefill = item.prefill_ms[job.replica.group] * job.slow
            ttft = (job.start - job.request.arrival + self.net) * 1000.0 + prefill
            n = job.request.max_tokens or 1
            tpot = (job.service_ms - prefill) / (n - 1) if n > 1 else None
        budgets = self.token_budgets.get(job.request.qos, (None, None))
        for st in targets:
            st.record_stream(ttft, tpot, *budgets)

    def _stream_sample(self, job: _Job) -> StreamSample:
        """What a completed stream teaches the estimators (as ``serve._streams`` measures it)."""
        prefill = self.workload.items[job.index].prefill_ms[job.replica.group] * job.slow  # type: ignore[union-attr]
        n = job.request.max_tokens or 1
        tpot = (job.service_ms - prefill) / (n - 1) if n > 1 else None
        return StreamSample(job.request.prompt_tokens or 0, n, prefill, tpot, job.service_ms)

    def _tenant_stats(self, tenant: str) -> ClassStats:
        st = self.result.tenants.get(tenant)
        if st is None:
            st = self.result.tenants[tenant] = ClassStats()
        return st

    # ----------------------------------------------------------------- routing
    def _choose(self, job: _Job, now: float) -> Wait | None:
        """Ask the router (through the routing state when there is one); act on its decision. The
        ``Wait`` when the request must keep waiting, else None."""
        timer = self.timer
        state = self.state
        if state is not None:
            decision = state.decide(job.key, now)
            if timer is not None and state.decision_ns is not None:
                self.result.decision_ns.append(state.decision_ns)
        elif timer is not None:
            t0 = timer()
            decision = self.router.choose(job.request, self.views, now)
            self.result.decision_ns.append(timer() - t0)
        else:
            decision = self.router.choose(job.request, self.views, now)
        if type(decision) is Route:
            self._dispatch(job, decision.replica_id, now)
            return None
        if type(decision) is Shed:
            self._finish(job, _SHED, now, decision.reason)
            return None
        if type(decision) is Wait:
            return decision
        raise TypeError(f"router returned {decision!r}, not Route/Shed/Wait")

    def _dispatch(self, job: _Job, replica_id: str, now: float) -> None:
        rep = self.by_id.get(replica_id)
        if rep is None or not rep.alive:
            raise ValueError(f"router routed request {job.request.id} to unknown or dead replica {replica_id!r}")
        view = rep.view
        allows = job.request.allows
        if allows is not None and not allows(view.attrs) and self.workload.items[job.index].measured:
            self.result.violations += 1
        if view.ongoing < view.max_ongoing <= view.ongoing + 1:
            self.free -= 1
        view.ongoing += 1
        job.replica = rep
        job.dispatched = True
        rep.jobs[job.index] = job
        state = self.state
        if state is None:
            self.router.on_dispatch(job.request, replica_id, now)
        else:
            state.routed(job.key, replica_id, now)
            if job.hedge:
                self.result.hedges_sent += 1
            elif job.request.hedge_after_ms is not None:
                at = state.hedge_at(job.key)
                if at is not None:
                    self.events.schedule(max(at, now), _HEDGE, job)
        self.events.schedule(now + self.net, _AT_REPLICA, job)

    def _hedge(self, job: _Job, now: float) -> None:
        """No answer to ``job`` after its class's ``hedge_after_ms``: a second copy goes to another replica."""
        state = self.state
        if job.outcome > 0 or job.twin is not None or state is None or not state.hedge_due(job.key, now):
            return
        hedge = _Job(job.index, job.request, ~job.index, hedge=True)
        hedge.twin, job.twin = job, hedge
        refused = state.admit(hedge.key, job.request, now, hedge_of=job.key)
        if refused is not None:
            self._finish(hedge, _SHED, now, refused.reason)
            return
        self._choose_new(hedge, now)

    def _cancel(self, job: _Job, now: float) -> None:
        """Its twin won: take the copy out of its replica (queue or slot) and give its position back. A
        copy whose answer is already on its way back just returns (and is ignored)."""
        if job.outcome:
            return
        job.outcome = _CANCELLED
        rep = job.replica
        state = self.state
        if rep is None:  # held at the router: dropped when its turn comes
            if state is not None:
                state.forget(job.key)
            return
        if rep.alive and rep.gate is not None:
            self._leave_replica(job, rep, now)
        rep.jobs.pop(job.index, None)
        self._release(rep)
        if state is not None:
            state.completed(job.key, now, ok=False)

    def _leave_replica(self, job: _Job, rep: SimReplica, now: float) -> None:
        gate = rep.gate
        rid = job.request.id
        if job.started and gate.is_executing(rid):
            rep.busy -= 1
            self._busy(job, rep, now)
            self._admitted(rep, gate.finish(rid, now), now)
        elif gate.cancel(rid):
            self._unqueue(rep, job)
        # else still travelling to the replica: it is ignored on arrival

    def _release(self, rep: SimReplica) -> None:
        """A copy's position at ``rep`` is free again (answer returned, or cancelled)."""
        view = rep.view
        if rep.alive and view.ongoing - 1 < view.max_ongoing <= view.ongoing:
            self.free += 1
        view.ongoing -= 1

    def _drain_waiting(self, now: float, max_routes: int | None = None) -> None:
        """Retry held requests in wait order; stop after ``max_routes`` routes (one freed position
        admits at most one), at the first unconstrained request told to wait again (every later one
        would be too), or after ``_MAX_HELD_SCAN`` placement-constrained ones."""
        waiting = self.waiting
        if not waiting or self.free <= 0:
            return
        held = []
        routed = 0
        while waiting and self.free > 0:
            entry = heapq.heappop(waiting)
            job = entry[2]
            if job.outcome:  # a cancelled copy
                continue
            wait = self._choose(job, now)
            if wait is not None:
                held.append(entry)
                unconstrained = job.request.allows is None and wait.reason not in _OWN_WAITS
                if unconstrained or len(held) >= _MAX_HELD_SCAN:
                    break
            elif job.dispatched:
                routed += 1
                if max_routes is not None and routed >= max_routes:
                    break
        for entry in held:
            heapq.heappush(waiting, entry)

    # ----------------------------------------------------------------- replicas
    def _start(self, job: _Job, rep: SimReplica, now: float) -> None:
        rep.busy += 1
        job.started = True
        job.start = now
        job.slow = rep.slowdown
        job.fails = rep.erroring
        service = self.workload.items[job.index].service_ms[rep.group] * rep.slowdown
        job.service_ms = service
        self.events.schedule(now + service / 1000.0, _DONE, job)

    def _gate_dropped(self, rep: SimReplica, dropped: Any, now: float) -> None:
        for d in dropped:
            job = rep.jobs.get(d.request_id)
            if job is None or job.outcome:
                continue
            self._unqueue(rep, job)
            self._refused(job, rep, now, d.reason)

    def _admitted(self, rep: SimReplica, admitted: Any, now: float) -> None:
        """Queued work the gate starts now (and expired work it dropped on the way)."""
        self._gate_dropped(rep, admitted.dropped, now)
        for s in admitted.started:
            started = rep.jobs[s.request_id]
            self._unqueue(rep, started)
            self._start(started, rep, now)

    def _unqueue(self, rep: SimReplica, job: _Job) -> None:
        qbp = rep.queued_by_priority
        p = job.request.priority
        n = qbp.get(p, 0) - 1
        if n > 0:
            qbp[p] = n
        else:
            qbp.pop(p, None)

    def _refused(self, job: _Job, rep: SimReplica, now: float, reason: str) -> None:
        job.outcome = -_SHED  # decided; recorded when the answer reaches the router
        job.service_ms = math.nan
        self.events.schedule(now + self.net, _RETURN, (job, reason))

    def _at_replica(self, job: _Job, now: float) -> None:
        rep = job.replica
        if job.outcome or rep is None or not rep.alive:
            return
        gate = rep.gate
        if gate is None:
            if rep.busy < rep.slots:
                self._start(job, rep, now)
            else:
                rep.fifo.append(job)
            return
        result = gate.offer(job.request, now)
        self._gate_dropped(rep, result.dropped, now)
        self._gate_dropped(rep, getattr(result, "evicted", ()), now)
        kind = type(result).__name__
        if kind == "Start":
            self._start(job, rep, now)
        elif kind == "Enqueued":
            qbp = rep.queued_by_priority
            qbp[job.request.priority] = qbp.get(job.request.priority, 0) + 1
        else:  # Reject
            self._refused(job, rep, now, result.reason)

    def _busy(self, job: _Job, rep: SimReplica, now: float) -> None:
        """``job`` stops executing on ``rep`` at ``now``: its replica time counts in the run's cost."""
        if self.workload.items[job.index].measured:
            self.result.busy_cost += (now - job.start) * rep.view.cost

    def _done(self, job: _Job, now: float) -> None:
        rep = job.replica
        if job.outcome or rep is None or not rep.alive:
            return
        rep.busy -= 1
        self._busy(job, rep, now)
        if job.fails:  # an error fault: the call failed; its time is no service sample
            job.outcome = -_FAILED
            service = None
        else:
            job.outcome = -_COMPLETED
            service = job.service_ms
            model = job.request.model
            sm = cast("dict[str, float]", rep.view.service_ms)  # the simulator builds its views with dicts
            old = sm.get(model)
            sm[model] = service if old is None else old + _SERVICE_EWMA_ALPHA * (service - old)
        self.events.schedule(now + self.net, _RETURN, (job, ""))
        if rep.gate is None:
            if rep.fifo:
                self._start(rep.fifo.popleft(), rep, now)
            return
        if job.request.prompt_tokens is not None:  # a stream: its length is no service-time sample
            if service is not None and rep.gate.streams is not None:
                rep.gate.streams.observe(self._stream_sample(job))
            service = None
        self._admitted(rep, rep.gate.finish(job.request.id, now, service), now)

    def _return(self, job: _Job, reason: str, now: float) -> None:
        rep = job.replica
        if job.outcome > 0 or rep is None:  # already failed by a crash, or cancelled
            return
        rep.jobs.pop(job.index, None)
        view = rep.view
        if rep.alive and view.ongoing - 1 < view.max_ongoing <= view.ongoing:
            self.free += 1
        view.ongoing -= 1
        outcome = -job.outcome
        ok = outcome == _COMPLETED
        if self.state is not None:
            health = True if ok else (False if outcome == _FAILED else None)  # a refusal is no failure
            service_ms = job.service_ms
            if job.request.prompt_tokens is not None:
                if ok:
                    self.state.observe_stream(rep.replica_id, self._stream_sample(job))
                service_ms = math.nan
            self.state.completed(job.key, now, service_ms=service_ms, ok=ok, health=health)
        else:
            latency_ms = (now - job.request.arrival) * 1000.0
            self.router.observe(job.request, rep.replica_id, job.service_ms, latency_ms, ok, now)
        self._finish(job, outcome, now, reason)
        self._drain_waiting(now, max_routes=1)

    def _crash(self, rep: SimReplica, now: float) -> None:
        if not rep.alive:
            return
        rep.alive = False
        view = rep.view
        view.healthy = False
        if view.ongoing < view.max_ongoing:
            self.free -= 1
        self.views = [v for v in self.views if v is not view]
        state = self.state
        for job in list(rep.jobs.values()):
            if job.outcome < 0:
                continue  # completed or refused: the answer is already on its way back
            if job.started:
                self._busy(job, rep, now)
            view.ongoing -= 1
            rep.jobs.pop(job.index, None)
            if state is not None:
                state.completed(job.key, now, ok=False, health=False)
            else:
                latency_ms = (now - job.request.arrival) * 1000.0
                self.router.observe(job.request, rep.replica_id, math.nan, latency_ms, False, now)
            self._finish(job, _FAILED, now)
        rep.fifo.clear()
        if state is not None:
            state.remove_replica(rep.replica_id)
        self._drain_waiting(now)

    def _set_slowdown(self, rep: SimReplica, factor: float) -> None:
        rep.slowdown = factor
        if self.slowdowns is not None:
            self.slowdowns[rep.replica_id] = factor

    # ----------------------------------------------------------------- the loop
    def _schedule_faults(self) -> None:
        first = 0
        for spec in self.scenario.replicas:
            members = self.replicas[first : first + spec.count]
            first += spec.count
            for fault in spec.faults:
                targets = members if fault.replica == "all" else [members[fault.replica]]
                for rep in targets:
                    self._schedule_fault(fault, rep)

    def _schedule_fault(self, fault: Any, rep: SimReplica) -> None:
        events = self.events
        if fault.kind == "crash":
            events.schedule(fault.at_s, _CRASH, rep)
            return
        start, end = (_ERRORS_START, _ERRORS_END) if fault.kind == "error" else (_FAULT_START, _FAULT_END)
        events.schedule(fault.at_s, start, (rep, fault.factor))
        if fault.for_s is not None:
            events.schedule(fault.at_s + fault.for_s, end, rep)

    def _rare_event(self, kind: int, payload: Any, now: float) -> None:
        if kind == _HEDGE:
            self._hedge(payload, now)
        elif kind == _FAULT_START:
            self._set_slowdown(payload[0], payload[1])
        elif kind == _FAULT_END:
            self._set_slowdown(payload, 1.0)
        elif kind == _ERRORS_START:
            payload[0].erroring = True
        elif kind == _ERRORS_END:
            payload.erroring = False
        else:
            self._crash(payload, now)

    def run(self) -> RunResult:
        timer = self.timer
        t_start = timer() if timer is not None else 0
        cpu_start = self.cpu_timer() if self.cpu_timer is not None else 0
        self._schedule_faults()
        items = self.workload.items
        n = len(items)
        i = 0
        events = self.events
        state = self.state
        inf = math.inf
        while True:
            next_arrival = items[i].request.arrival if i < n else inf
            if events.peek_time() <= next_arrival:
                if not events:
                    break
                now, kind, payload = events.pop()
                if kind == _DONE:
                    self._done(payload, now)
                elif kind == _RETURN:
                    self._return(payload[0], payload[1], now)
                elif kind == _AT_REPLICA:
                    self._at_replica(payload, now)
                else:
                    self._rare_event(kind, payload, now)
            else:
                if events.now < next_arrival:
                    events.now = next_arrival
                request = items[i].request
                job = _Job(i, request, i)
                if state is not None:  # a hedged class's request is its own call id (for its hedge)
                    state.admit(i, request, next_arrival, call_id=i if request.hedge_after_ms is not None else None)
                i += 1
                self._choose_new(job, next_arrival)
        for _key, _seq, job in self.waiting:
            if not job.outcome:
                self._finish(job, _FAILED, events.now)
        self.waiting.clear()
        self.result.total_requests = n
        if timer is not None:
            self.result.wall_ns = timer() - t_start
        if self.cpu_timer is not None:
            self.result.cpu_ns = self.cpu_timer() - cpu_start
        return self.result

    def _choose_new(self, job: _Job, now: float) -> None:
        if self._choose(job, now) is not None:
            self.wait_seq += 1
            heapq.heappush(self.waiting, (self.wait_key(job.request), self.wait_seq, job))


def run_router(
    scenario: Scenario,
    workload: Workload,
    router: Router,
    *,
    classes: Mapping[str, QosClass] | None = None,
    timer: Callable[[], int] | None = None,
    name: str | None = None,
    slowdowns: dict[str, float] | None = None,
    cpu_timer: Callable[[], int] | None = None,
    breaker: BreakerSettings | None = None,
    retry: RetrySettings | None = None,
    tenant_shares: Mapping[str, float] | None = None,
    costs: dict[str, float] | None = None,
) -> RunResult:
    """Run ``router`` over ``workload`` on the cluster of ``scenario`` and return its figures.

    ``classes`` feeds the replicas' admission gates (routers with ``replica_discipline == "gate"``).
    ``timer`` returns integer nanoseconds (``time.perf_counter_ns``); ``None`` measures nothing.
    The router must be fresh: it keeps state between calls. ``slowdowns`` (replica id -> current
    slowdown factor) is kept up to date during the run when given (the true service times' view).
    ``cpu_timer`` (e.g. ``time.process_time_ns``) measures the run's CPU time, for a simulator speed
    figure that other processes on the machine do not distort. ``breaker`` / ``retry`` (the policy's
    settings; None: the defaults) and ``tenant_shares`` (tenant -> share of each replica's gate) apply
    to routers with gates, driven through the routing state (module docstring). ``costs`` (accelerator
    kind -> cost per replica-second; None: the scenario's) prices groups without a ``cost`` of their own.
    """
    run = _Run(
        scenario,
        workload,
        router,
        classes or {},
        timer,
        str(name or getattr(router, "name", "router")),
        slowdowns,
        cpu_timer,
        (breaker, retry, tenant_shares, costs),
    )
    return run.run()
