"""The simulation run loop: one router, one workload, one virtual clock.

Life of a request (all times virtual)::

    arrival at router -> router.choose(request, views, now)
        Route(r) -> on_dispatch; travels network_ms -> replica r: starts, queues (fifo) or is offered
                    to r's AdmissionGate (gate); after its service time (x slowdown) it finishes and the
                    response travels network_ms back -> router.observe(...); latency = return - arrival
        Shed     -> counted shed at once
        Wait     -> held at the router, ordered by router.wait_order(request) (ties FIFO); retried in
                    that order whenever a replica reports back (at most one held request is routed
                    per freed position) or crashes; the scan stops at the first unconstrained request
                    told to wait again, or after 64 placement-constrained ones

Requests refused or dropped by a replica's gate are counted ``shed`` and reported back to the router
with ``ok=False``; requests on a replica when it crashes are counted ``failed``. Requests still held at
the router when nothing is left to happen (every replica gone) are counted ``failed``. Hedged routes
(``Route.hedge_replica_id``) are not simulated: only the primary replica runs the request.

The loop reads no clock: ``timer`` (e.g. ``time.perf_counter_ns``), when given, times each
``router.choose`` call and the whole run for the ``decision_us_*`` and ``sim_requests_per_s`` figures;
``cpu_timer`` (e.g. ``time.process_time_ns``) gives ``sim_requests_per_cpu_s``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.policies.types import QosClass
from agentic_ray.scheduling.types import Request, Route, Router, Shed, Wait
from agentic_ray.sim.cluster import SimReplica, build_replicas
from agentic_ray.sim.engine import EventQueue
from agentic_ray.sim.metrics import ClassStats, percentile, summarize
from agentic_ray.sim.scenario import Scenario
from agentic_ray.sim.workload import Workload

__all__ = ["RunResult", "run_router"]

_AT_REPLICA, _DONE, _RETURN, _FAULT_START, _FAULT_END, _CRASH = range(6)
_COMPLETED, _SHED, _FAILED = 1, 2, 3
_SERVICE_EWMA_ALPHA = 0.1
_MAX_HELD_SCAN = 64  # placement-constrained waiters retried per replica event before giving up


class _Job:
    __slots__ = ("dispatched", "index", "outcome", "replica", "request", "service_ms", "started")

    def __init__(self, index: int, request: Request) -> None:
        self.index = index
        self.request = request
        self.replica: SimReplica | None = None
        self.outcome = 0
        self.service_ms = math.nan
        self.started = False
        self.dispatched = False


@dataclass(slots=True)
class RunResult:
    """Outcome of one router on one workload (see ``to_json`` for the reported fields)."""

    router: str
    classes: dict[str, ClassStats]
    measured_s: float
    violations: int = 0
    decision_ns: list[int] = field(default_factory=list)
    shed_reasons: dict[str, int] = field(default_factory=dict)
    wall_ns: int | None = None
    cpu_ns: int | None = None
    total_requests: int = 0
    tenants: dict[str, ClassStats] = field(default_factory=dict)

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
            "decision_us_p50": None if p50 is None else round(p50 / 1000.0, 3),
            "decision_us_p99": None if p99 is None else round(p99 / 1000.0, 3),
            "violations": self.violations,
            "shed_reasons": dict(sorted(self.shed_reasons.items())),
        }
        if self.tenants:
            out["tenants"] = {name: summarize(s) for name, s in sorted(self.tenants.items())}
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
        make_gate = None
        if discipline == "gate":
            from agentic_ray.scheduling.admission import AdmissionGate

            def make_gate(spec: Any) -> Any:
                return AdmissionGate(spec.slots, classes)
        elif discipline != "fifo":
            raise ValueError(f"router {name!r}: unknown replica_discipline {discipline!r}")
        self.replicas = build_replicas(list(scenario.replicas), make_gate)
        self.by_id = {r.replica_id: r for r in self.replicas}
        self.views = [r.view for r in self.replicas]
        self.free = len(self.replicas)  # alive replicas with ongoing < max_ongoing
        self.events = EventQueue()
        self.waiting: list[tuple[Any, int, _Job]] = []
        self.wait_seq = 0
        self.result = RunResult(name, {c: ClassStats() for c in workload.class_budget_ms}, scenario.measured_s)

    # ----------------------------------------------------------------- recording
    def _stats(self, job: _Job) -> ClassStats | None:
        if not self.workload.items[job.index].measured:
            return None
        stats = self.result.classes.get(job.request.qos)
        if stats is None:
            stats = self.result.classes[job.request.qos] = ClassStats()
        return stats

    def _finish(self, job: _Job, outcome: int, now: float, reason: str = "") -> None:
        job.outcome = outcome
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
        if outcome == _SHED:
            self.result.shed_reasons[reason] = self.result.shed_reasons.get(reason, 0) + 1

    def _tenant_stats(self, tenant: str) -> ClassStats:
        st = self.result.tenants.get(tenant)
        if st is None:
            st = self.result.tenants[tenant] = ClassStats()
        return st

    # ----------------------------------------------------------------- routing
    def _choose(self, job: _Job, now: float) -> bool:
        """Ask the router; act on its decision. False when the request must keep waiting."""
        timer = self.timer
        if timer is not None:
            t0 = timer()
            decision = self.router.choose(job.request, self.views, now)
            self.result.decision_ns.append(timer() - t0)
        else:
            decision = self.router.choose(job.request, self.views, now)
        if type(decision) is Route:
            self._dispatch(job, decision.replica_id, now)
            return True
        if type(decision) is Shed:
            self._finish(job, _SHED, now, decision.reason)
            return True
        if type(decision) is Wait:
            return False
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
        self.router.on_dispatch(job.request, replica_id, now)
        self.events.schedule(now + self.net, _AT_REPLICA, job)

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
            if not self._choose(job, now):
                held.append(entry)
                if job.request.allows is None or len(held) >= _MAX_HELD_SCAN:
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

    def _done(self, job: _Job, now: float) -> None:
        rep = job.replica
        if job.outcome or rep is None or not rep.alive:
            return
        rep.busy -= 1
        model = job.request.model
        sm = rep.view.service_ms
        old = sm.get(model)
        sm[model] = job.service_ms if old is None else old + _SERVICE_EWMA_ALPHA * (job.service_ms - old)
        job.outcome = -_COMPLETED
        self.events.schedule(now + self.net, _RETURN, (job, ""))
        if rep.gate is None:
            if rep.fifo:
                self._start(rep.fifo.popleft(), rep, now)
            return
        admitted = rep.gate.finish(job.request.id, now, job.service_ms)
        self._gate_dropped(rep, admitted.dropped, now)
        for s in admitted.started:
            started = rep.jobs[s.request_id]
            self._unqueue(rep, started)
            self._start(started, rep, now)

    def _return(self, job: _Job, reason: str, now: float) -> None:
        rep = job.replica
        if job.outcome > 0 or rep is None:  # already failed by a crash
            return
        rep.jobs.pop(job.index, None)
        view = rep.view
        if rep.alive and view.ongoing - 1 < view.max_ongoing <= view.ongoing:
            self.free += 1
        view.ongoing -= 1
        ok = job.outcome == -_COMPLETED
        self._finish(job, _COMPLETED if ok else _SHED, now, reason)
        latency_ms = (now - job.request.arrival) * 1000.0
        self.router.observe(job.request, rep.replica_id, job.service_ms, latency_ms, ok, now)
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
        for job in list(rep.jobs.values()):
            if job.outcome < 0:
                continue  # completed or refused: the answer is already on its way back
            self._finish(job, _FAILED, now)
            view.ongoing -= 1
            rep.jobs.pop(job.index, None)
            self.router.observe(job.request, rep.replica_id, math.nan, (now - job.request.arrival) * 1000.0, False, now)
        rep.fifo.clear()
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
                    if fault.kind == "crash":
                        self.events.schedule(fault.at_s, _CRASH, rep)
                    else:
                        self.events.schedule(fault.at_s, _FAULT_START, (rep, fault.factor))
                        if fault.for_s is not None:
                            self.events.schedule(fault.at_s + fault.for_s, _FAULT_END, rep)

    def run(self) -> RunResult:
        timer = self.timer
        t_start = timer() if timer is not None else 0
        cpu_start = self.cpu_timer() if self.cpu_timer is not None else 0
        self._schedule_faults()
        items = self.workload.items
        n = len(items)
        i = 0
        events = self.events
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
                elif kind == _FAULT_START:
                    self._set_slowdown(payload[0], payload[1])
                elif kind == _FAULT_END:
                    self._set_slowdown(payload, 1.0)
                else:
                    self._crash(payload, now)
            else:
                if events.now < next_arrival:
                    events.now = next_arrival
                job = _Job(i, items[i].request)
                i += 1
                self._choose_new(job, next_arrival)
        for _key, _seq, job in self.waiting:
            self._finish(job, _FAILED, events.now)
        self.waiting.clear()
        self.result.total_requests = n
        if timer is not None:
            self.result.wall_ns = timer() - t_start
        if self.cpu_timer is not None:
            self.result.cpu_ns = self.cpu_timer() - cpu_start
        return self.result

    def _choose_new(self, job: _Job, now: float) -> None:
        if not self._choose(job, now):
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
) -> RunResult:
    """Run ``router`` over ``workload`` on the cluster of ``scenario`` and return its figures.

    ``classes`` feeds the replicas' admission gates (routers with ``replica_discipline == "gate"``).
    ``timer`` returns integer nanoseconds (``time.perf_counter_ns``); ``None`` measures nothing.
    The router must be fresh: it keeps state between calls. ``slowdowns`` (replica id -> current
    slowdown factor) is kept up to date during the run when given (the oracle's service-time view).
    ``cpu_timer`` (e.g. ``time.process_time_ns``) measures the run's CPU time, for a simulator speed
    figure that other processes on the machine do not distort.
    """
    run = _Run(
        scenario,
        workload,
        router,
        classes or {},
        timer,
        name or getattr(router, "name", "router"),
        slowdowns,
        cpu_timer,
    )
    return run.run()
