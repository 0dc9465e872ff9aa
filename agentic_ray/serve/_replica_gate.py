"""The replica side of admission: an asyncio wrapper around the pure ``AdmissionGate``.

Each replica of an ``@agentic_ray.deployment`` holds one ``ReplicaAdmission``. A call is offered to the
gate with ``now = time.time()`` (deadlines are wall-clock, they cross processes):

- ``Start``    -> the call runs at once;
- ``Enqueued`` -> the call awaits a future that ``finish`` of an earlier call resolves when the gate
  starts it (priority, then earliest deadline). A timer at the request's deadline runs ``expire``, so
  work whose deadline passes while queued is dropped before it starts and its caller gets
  ``BudgetExhausted(reason="deadline_passed_in_queue")``;
- ``Reject``   -> the typed ``AdmissionError`` (``Overloaded`` / ``BudgetExhausted``) is raised to the
  caller and the user's code never runs.

Evicted and dropped requests get their error through their waiting future. A cancelled waiter leaves
the queue (``gate.cancel``); a cancelled running call frees its slot. Every outcome is reported to the
decision hook. The gate's ``snapshot()`` feeds ``record_routing_stats`` (a ``reports.RoutingStats``: queued
per class priority, EWMA service times, totals, service samples) so routers see the queue ahead of each
class.

Telemetry: decisions go to the hook's ``push`` as plain tuples in ``DecisionEvent`` field order, or
through ``record`` for hooks without ``push`` and for calls that carry a sampled trace (then the hook
traces them under the caller's span). With ``metrics`` (an
``AgenticMetrics``, component ``replica``) every finished call records ``completion(qos, latency_ms,
budget_left_ms, ok)`` (latency from the call's arrival at this replica, budget left at its end) and
``routing_stats()`` sets ``queue_depth`` for every class of the policy.
``run(..., trace=ctx)`` with a sampled parent context opens ``agentic.queue`` (offer to start) and
``agentic.execute`` (the user's code) spans under it.

Streams: ``stream_done(request, sample, ttft_ms)`` (called by ``_streams.measured_stream`` when a
stream ends) feeds the gate's stream estimate (``AdmissionGate.streams``), publishes the sample in the
next ``RoutingStats.stream_samples`` and records ``stream(qos, ttft_ms, tpot_ms, ...)`` against the
class's ``ttft_ms`` / ``tpot_ms``.

Control plane (``serve/_plane.py``): with a ``tally`` (a ``control.ServeTally``) every arrival and
outcome is counted per class for the replica's reports to its node's agent (offered, admitted, shed by
reason, expired, completed with latency at this replica); ``switch_policy`` adopts a new policy between
requests (the gate's classes and tenant shares, the version decisions carry); the gate enforces the
per-class caps the agent answers (``AdmissionGate.set_class_caps``).

Request ids. A request is known in the decision log by the id its caller gave it (``request_id``: Serve's
request id, the same at the HTTP ingress, the router and here), so one request's records join across
processes; a second request with an id already in the gate gets ``<id>~<n>``. With a hook whose decision
log is on (``TelemetryHook.completion``), every finished call also logs a ``completion`` record under
that id (all of them, not a sample: a completion is one more record per request beside its two or three
decision records, and a sampled log could not show that an admitted request ended).

All methods run on the replica's event loop (Serve runs user code on one loop per replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from agentic_ray.scheduling.admission import AdmissionGate, Admitted, Dropped, Enqueued, Reject
from agentic_ray.scheduling.limits import DelayLimit
from agentic_ray.scheduling.reports import RoutingStats, ServiceSample, StreamReport
from agentic_ray.scheduling.streams import StreamSample
from agentic_ray.scheduling.types import Request
from agentic_ray.serve._hooks import DecisionEvent, DecisionHook, NoopHook, hook_push, safe_record

__all__ = ["ReplicaAdmission"]

_SAMPLES_KEPT = 64


class ReplicaAdmission:
    """Runs calls through an ``AdmissionGate`` on the current event loop (see the module docstring)."""

    def __init__(
        self,
        gate: AdmissionGate,
        *,
        hook: DecisionHook | None = None,
        policy_version: str = "",
        metrics: Any = None,
        limiter: DelayLimit | None = None,
        lag_period_s: float = 0.02,
        policy_sha: str | None = None,
        tally: Any = None,
        where: str = "gate",
    ) -> None:
        self.gate = gate
        self.where = where  # "gate" (a replica) or "ingress" (the HTTP ingress's own gate)
        self.policy_sha = policy_sha
        self.tally = tally  # control.ServeTally: per-class counts for the control plane, or None
        self.replica_id: str | None = None  # Serve's replica id, for completion records
        self.loop: Any = None  # the event loop calls run on (known after the first call)
        self._waiting: dict[Any, tuple[float, str | None]] = {}  # queued request -> (arrival, drift workflow)
        self.limiter = limiter  # shrinks the gate's limit while this loop lags (a saturated host)
        self.lag_period_s = lag_period_s
        self._tick_due: float | None = None  # loop time the lag timer should fire at; None: not running
        self.hook = hook or NoopHook()
        self._push = hook_push(self.hook)
        self._hook_off = isinstance(self.hook, NoopHook)
        complete = getattr(self.hook, "completion", None)
        self._complete = complete if callable(complete) and getattr(self.hook, "decision_log", None) else None
        self.policy_version = policy_version
        self.metrics = metrics  # AgenticMetrics("replica") or None
        self._depth_classes: set[str] = {str(q) for q in getattr(gate, "classes", ())}
        self._waiters: dict[Any, asyncio.Future] = {}
        self._ids = itertools.count()
        # Recent service times of successful calls, published so routers can feed their own per-replica
        # service-time estimators (mean and deviation).
        self._samples: deque[ServiceSample] = deque(maxlen=_SAMPLES_KEPT)
        self._sample_seq = itertools.count()
        self._streams: deque[StreamReport] = deque(maxlen=_SAMPLES_KEPT)  # recent completed streams
        self._stream_seq = itertools.count()
        self.completed_total = 0
        self.failed_total = 0

    def next_id(self) -> str:
        """A request id unique within this replica."""
        return f"q{next(self._ids)}"

    def request_id(self, wanted: str | None) -> Any:
        """``wanted`` (the caller's request id) when no request of that id is in the gate, else
        ``<wanted>~<n>``; ``next_id()`` without one."""
        if not wanted:
            return self.next_id()
        gate = self.gate
        if gate.is_executing(wanted) or gate.is_queued(wanted):
            return f"{wanted}~{next(self._ids)}"
        return wanted

    def switch_policy(self, policy: Any) -> None:
        """Adopt ``policy`` from the next request on (call on this replica's loop): the gate's classes
        and tenant shares, and the version and sha256 decisions carry."""
        from agentic_ray.scheduling.admission import tenant_shares_of
        from agentic_ray.serve._hooks import register_policy

        self.gate.set_classes(policy.classes, tenant_shares_of(policy.tenants))
        register_policy(self.hook, policy.version, policy.sha256)
        self.policy_version = policy.version
        self.policy_sha = policy.sha256

    async def run(self, request: Request, call: Callable[[], Awaitable[Any]], trace: Any = None) -> Any:
        """Admit ``request`` and run ``call()`` when the gate starts it; raise its error when refused.

        ``trace``: the caller's sampled context (``tracing.pop_trace``) or None; with one, the wait and the
        call are ``agentic.queue`` / ``agentic.execute`` spans under it and the decisions are traced."""
        async with self.admitted(request, trace):
            return await call()

    @contextlib.asynccontextmanager
    async def admitted(
        self, request: Request, trace: Any = None, measure: bool = True, workflow: str | None = None
    ) -> AsyncIterator[None]:
        """``async with gate.admitted(request):`` waits until the gate starts ``request`` (or raises its
        typed error when refused or expired) and holds its slot until the block exits; the block's time
        is the call's service time (``measure=False``: not a sample of it), and an exception in it counts
        the call as failed. ``run`` is this around one awaited call; a streaming method holds the slot
        for its whole stream, whose length says nothing about a call's service time. ``workflow``: the
        drift key the request names (``control.drift_workflow``), for the tally."""
        now = time.time()
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        tally = self.tally
        carrier = None
        queue_span: Any = contextlib.nullcontext()
        if trace is not None:
            from agentic_ray.telemetry import tracing

            carrier = tracing.inject(trace) or None
            attrs = {"agentic.qos": request.qos, "agentic.request_id": str(request.id)}
            queue_span = tracing.span("agentic.queue", parent=trace, child_only=True, attributes=attrs)
        if self.limiter is not None and self._tick_due is None:
            self._start_lag_timer()
        with queue_span:
            if tally is not None:
                tally.offer(request.qos)
            decision = self.gate.offer(request, now)
            self._fail(decision.dropped)
            if isinstance(decision, Reject):
                self._fail(decision.evicted)
                self._event("reject", request, decision.reason, now, carrier)
                if tally is not None:
                    tally.shed(request.qos, decision.reason, 0.0, workflow)
                raise decision.error
            if tally is not None:
                tally.admit(request.qos)
            if isinstance(decision, Enqueued):
                self._fail(decision.evicted)
                self._event("enqueue", request, "queued", now, carrier)
                if tally is not None:
                    self._waiting[request.id] = (now, workflow)
                await self._wait_for_start(request)
            else:
                self._event("start", request, "slot_free", now, carrier)
        started = time.perf_counter()
        ok = False
        execute_span: Any = contextlib.nullcontext()
        if trace is not None:
            execute_span = tracing.span("agentic.execute", parent=trace, child_only=True,
                                        attributes={"agentic.qos": request.qos})  # fmt: skip
        try:
            with execute_span:
                yield
            ok = True
        finally:
            self._finished(request, now, started, ok, measure, workflow)

    def _finished(
        self, request: Request, arrived: float, started: float, ok: bool, measure: bool, workflow: str | None
    ) -> None:
        """A call admitted at ``arrived`` and started at ``started`` (``perf_counter``) ended: count it,
        sample its service time, report it, and free its slot."""
        end = time.time()
        service_ms = (time.perf_counter() - started) * 1000.0
        if ok:
            self.completed_total += 1
            if measure:
                self._samples.append(ServiceSample(next(self._sample_seq), request.model, round(service_ms, 3)))
        else:
            self.failed_total += 1
        latency_ms = (end - arrived) * 1000.0
        if self.metrics is not None:
            with contextlib.suppress(Exception):  # telemetry must not break serving
                self.metrics.completion(request.qos, latency_ms, (request.deadline - end) * 1000.0, ok)
        if self.tally is not None:
            self.tally.complete(request.qos, latency_ms, ok, end <= request.deadline, workflow)
        if self._complete is not None:
            with contextlib.suppress(Exception):  # telemetry must not break serving
                self._complete((request.id, request.qos, ok, latency_ms, (request.deadline - end) * 1000.0,
                                self.replica_id, end))  # fmt: skip
        self._on_admitted(self.gate.finish(request.id, end, service_ms if ok and measure else None))

    async def _wait_for_start(self, request: Request) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiters[request.id] = future
        delay = max(0.0, request.deadline - time.time()) + 0.001
        timer = loop.call_later(delay, self._expire)
        try:
            await future
        except asyncio.CancelledError:
            if not self.gate.cancel(request.id) and self.gate.is_executing(request.id):
                self._on_admitted(self.gate.finish(request.id, time.time()))
            raise
        finally:
            timer.cancel()
            self._waiters.pop(request.id, None)
            self._waiting.pop(request.id, None)

    def stream_done(self, request: Request, sample: StreamSample, ttft_ms: float) -> None:
        """A stream ended normally: learn from it, publish it, and record its TTFT and TPOT."""
        streams = getattr(self.gate, "streams", None)
        if streams is not None:
            streams.observe(sample)
        self._streams.append(StreamReport(next(self._stream_seq), *sample))
        if self.metrics is not None:
            qos = self.gate.classes.get(request.qos)
            with contextlib.suppress(Exception):  # telemetry must not break serving
                self.metrics.stream(request.qos, ttft_ms, sample.tpot_ms, getattr(qos, "ttft_ms", None),
                                    getattr(qos, "tpot_ms", None))  # fmt: skip

    def note_upstream_delay(self, delay_ms: float) -> None:
        """A call's wait on its caller's process (a direct HTTP request's body fetch from Serve's proxy,
        a handle call's trip from its router's decision to this gate): when the host or the caller's
        process is saturated, this grows before anything here does. The gate also takes it as the likely
        trip of the answer back (queued work that cannot finish in time counting it is dropped)."""
        self.gate.note_trip(delay_ms)
        if self.limiter is not None:
            self._apply_limit(self.limiter.upstream(delay_ms, time.time()))

    def _apply_limit(self, limit: int) -> None:
        gate = self.gate
        pace_s = self.limiter.pace_ms / 1000.0 if self.limiter is not None else 0.0
        # While paced, every tick may start the next held call (set_limit starts what the pace allows).
        if limit != gate.limit or pace_s != gate.pace_s or (pace_s > 0 and gate.is_busy()):
            self._on_admitted(gate.set_limit(limit, time.time(), pace_s))

    def _start_lag_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._tick_due = loop.time() + self.lag_period_s
        loop.call_at(self._tick_due, self._lag_tick)

    def _lag_tick(self) -> None:
        """How late this timer fired is the loop's lag: feed it to the limiter, apply its limit, and keep
        ticking while the gate holds work or runs below its slots."""
        loop = asyncio.get_running_loop()
        due, self._tick_due = self._tick_due, None
        limiter = self.limiter
        if limiter is None or due is None:
            return
        self._apply_limit(limiter.lag((loop.time() - due) * 1000.0, time.time()))
        gate = self.gate
        # Also while the published delay is high: routers shed on it, and only fresh samples lower it.
        calm_ms = limiter.config.target_ms * limiter.config.increase_below
        if gate.is_busy() or gate.limit < gate.slots or gate.pace_s > 0 or limiter.delay_ms >= calm_ms:
            self._start_lag_timer()

    def _expire(self) -> None:
        self._fail(self.gate.expire(time.time()))

    def _on_admitted(self, admitted: Admitted) -> None:
        self._fail(admitted.dropped)
        for start in admitted.started:
            future = self._waiters.get(start.request_id)
            if future is not None and not future.done():
                future.set_result(None)
            elif future is None or future.cancelled():
                # Its caller went away between start and wake-up: give the slot back.
                self._on_admitted(self.gate.finish(start.request_id, time.time()))

    def _fail(self, dropped: tuple[Dropped, ...] | list[Dropped]) -> None:
        tally = self.tally
        for item in dropped:
            future = self._waiters.get(item.request_id)
            outcome = "evict" if item.reason == "evicted" else "drop"
            if tally is not None:
                arrival, workflow = self._waiting.pop(item.request_id, (None, None))
                waited_ms = (time.time() - arrival) * 1000.0 if arrival is not None else 0.0
                if item.reason == "evicted":
                    tally.shed(item.qos, "evicted", waited_ms, workflow)
                else:
                    tally.expire(item.qos, waited_ms, workflow)
            push = self._push
            if push is not None:
                push((self.where, outcome, item.request_id, item.qos, item.reason, None, None, None, (),
                                self.policy_version, None, time.time(), None))  # fmt: skip
            elif not self._hook_off:
                safe_record(
                    self.hook,
                    DecisionEvent(self.where, outcome, str(item.request_id), item.qos, item.reason,
                                  policy_version=self.policy_version, at=time.time()),
                )  # fmt: skip
            if future is not None and not future.done():
                future.set_exception(item.error)

    def _event(self, outcome: str, request: Request, reason: str, now: float, carrier: Any = None) -> None:
        push = self._push
        if push is not None and not carrier:
            push((self.where, outcome, request.id, request.qos, reason, None, None,
                            (request.deadline - now) * 1000.0, request.rule_ids, self.policy_version, None, now,
                            None))  # fmt: skip
            return
        if self._hook_off:
            return
        safe_record(
            self.hook,
            DecisionEvent(self.where, outcome, str(request.id), request.qos, reason,
                          remaining_ms=request.remaining_ms(now), rule_ids=request.rule_ids,
                          policy_version=self.policy_version, at=now,
                          extra={"trace": carrier} if carrier else None),
        )  # fmt: skip

    def routing_stats(self) -> dict[str, Any]:
        """What the replica publishes for routers (``record_routing_stats``): ``report().to_dict()``."""
        return self.report().to_dict()

    def report(self) -> RoutingStats:
        """The replica's ``RoutingStats`` now (its gate's snapshot, totals and recent service samples)."""
        snap = self.gate.snapshot()
        if self.metrics is not None:
            self._publish_depth(snap.queued_by_class)
        return RoutingStats(
            executing=snap.executing,
            queued=snap.queued,
            queued_by_priority=dict(snap.queued_by_priority),
            queued_by_class=dict(snap.queued_by_class),
            queue_bounds=dict(snap.queue_bounds),
            cap_room=dict(snap.cap_room),
            class_caps=dict(snap.class_caps),
            limit=snap.limit if snap.limit is not None else snap.slots,
            delay_ms=round(self.limiter.delay_ms, 3) if self.limiter is not None else None,
            service_ms={k: round(v, 3) for k, v in snap.service_ms_by_model.items()},
            ewma_service_ms=snap.ewma_service_ms,
            started_total=snap.started_total,
            dropped_total=snap.dropped_total,
            rejected_total=snap.rejected_total,
            completed_total=self.completed_total,
            failed_total=self.failed_total,
            service_samples=tuple(self._samples),
            stream_samples=tuple(self._streams),
        )

    def _publish_depth(self, queued_by_class: Any) -> None:
        """``agentic_queue_depth`` per class: the current count, 0 for classes seen before and empty now."""
        with contextlib.suppress(Exception):  # telemetry must not break serving
            depth = {str(q): n for q, n in dict(queued_by_class).items()}
            self._depth_classes.update(depth)
            for qos in self._depth_classes:
                self.metrics.queue_depth(qos, depth.get(qos, 0))
