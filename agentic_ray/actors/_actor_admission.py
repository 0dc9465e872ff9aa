"""Inside a governed actor: the ``ActorQueue`` in front of its methods, for threaded and for async actors.

One ``ActorAdmission`` per actor process (``install``), built from the ``ActorSpec`` the creator sent
(``actors._actor_class``). Every gated call becomes a ``scheduling.types.Request`` (class, priority and
shedding from the spec's class table, deadline from the call's ``TaskContext``, ``model`` = the method
name, so service times are kept per method) and is offered to the pure ``ActorQueue``
(``scheduling.actor_queue``) with ``now = time.time()`` (deadlines are wall-clock: they cross processes):
``Start`` runs it, ``Enqueued`` waits until a finishing call starts it (priority, then earliest
deadline) or its deadline passes (then it never runs: ``BudgetExhausted``), ``Reject`` raises the typed
error (``Overloaded`` for a full queue, ``BudgetExhausted`` for a deadline) to the caller's ``ray.get``;
an evicted call gets ``Overloaded`` the same way.

Two ways of waiting, one queue:

- ``ThreadedAdmission`` (sync actors). Ray runs a sync actor's calls on its own thread pool of
  ``max_concurrency`` threads, first come first served; with one thread, a call queued in Ray cannot be
  overtaken. So the creator asks Ray for ``slots + max_queued + OVERFLOW_THREADS`` threads (``slots``:
  the user's ``max_concurrency``, default 1): every call Ray hands over gets a thread at once, is offered
  to the queue under one lock, and waiting calls park on their own ``threading.Condition`` (sharing that
  lock) until a finishing call starts them or their deadline passes. Only ``slots`` calls ever run user
  code at once, so an actor written for one thread still sees one call at a time (in deadline order,
  no longer in submission order). ``OVERFLOW_THREADS`` spare threads let Ray hand over (and the queue
  refuse) arrivals while the queue is full and never-shed calls wait over the bound; past that, Ray
  holds arrivals in its own queue until a thread frees.
- ``AsyncAdmission`` (async actors). Every call is a coroutine on the actor's event loop: waiting
  calls await a future, a timer at each deadline expires them, and ``slots`` (the user's
  ``max_concurrency``, default Ray's 1000) coroutines run user code at once. No lock: everything runs on
  the loop.

Telemetry (``spec.telemetry``, on by default): each decision (``start``, ``enqueue``, ``reject``,
``drop``, ``evict``) is pushed to the process's ``telemetry.hotpath.TelemetryHook`` as the replica gate
pushes its own (``where="actor"``, so metrics carry ``component="actor"``; with
``AGENTIC_DECISION_LOG_DIR`` set in the actor's environment each one is a record of its decision log,
with the call's request id, class, reason, the rule ids of the actor's placement and the policy
version); every finished call records ``completion``; the queue depth per class is set at most once a
second (and whenever the queue empties) on ``agentic_queue_depth``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from agentic_ray.actors._worker import TaskContext, _scopes, _worker_tracing
from agentic_ray.policies.types import Shedding
from agentic_ray.scheduling.actor_queue import ActorQueue
from agentic_ray.scheduling.admission import Admitted, Dropped, Enqueued, Reject
from agentic_ray.scheduling.types import Request

__all__ = ["OVERFLOW_THREADS", "ActorAdmission", "AsyncAdmission", "ThreadedAdmission", "INSIDE"]

OVERFLOW_THREADS = 8  # Ray threads beyond slots + max_queued: arrivals refused while the queue is full
_DEPTH_PERIOD_S = 1.0

INSIDE: ContextVar[bool] = ContextVar("agentic_actor_call", default=False)
"""True while a gated call runs: a method the actor calls on itself (``self.other()``) is not gated again
(with one slot it would wait for the call that made it)."""


class _Waiter:
    __slots__ = ("cond", "outcome", "qos")

    def __init__(self, cond: threading.Condition, qos: str) -> None:
        self.cond = cond
        self.qos = qos
        self.outcome: BaseException | bool | None = None  # True: started; an error: will never start


class ActorAdmission:
    """What both runtimes share: requests from contexts, decision records, completion and depth metrics."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.queue = ActorQueue(spec.slots, spec.classes, spec.max_queued)
        self._classes = dict(spec.classes)
        self._unknown_priority = 1 + max((c.priority for c in self._classes.values()), default=0)
        self._ids = itertools.count(1)
        self.rule_ids = tuple(spec.rule_ids)
        self.completed_total = 0
        self.failed_total = 0
        self._push: Callable[[tuple], None] | None = None
        self._metrics: Any = None
        self._depth_due = 0.0
        self._depth_seen: set[str] = set(self._classes)
        self._depth_last = 0
        if spec.telemetry:
            self._open_telemetry()

    def _open_telemetry(self) -> None:
        with contextlib.suppress(Exception):  # telemetry must never keep the actor from starting
            from agentic_ray.telemetry.hotpath import process_hook
            from agentic_ray.telemetry.metrics import AgenticMetrics
            from agentic_ray.telemetry.ray_metrics import RayMetrics

            hook = process_hook()
            hook.register_policy(self.spec.policy_version, self.spec.policy_sha256)
            self._push = hook.push
            self._metrics = AgenticMetrics(RayMetrics(), "actor")

    # -- requests ----------------------------------------------------------------------------------
    def request(self, method: str, wire: list[Any] | None, now: float) -> tuple[Request, TaskContext]:
        """The queue's ``Request`` and the ``TaskContext`` of one call. A call without a context (a plain
        Ray handle, e.g. from ``ray.get_actor``) gets its method's default class and budget from the spec."""
        if wire is not None:
            ctx = TaskContext.from_wire(wire)
        else:
            qos, budget_ms = self.spec.defaults.get(method) or self.spec.defaults[""]
            ctx = TaskContext(now + budget_ms / 1000.0, now, qos, None, None, self.spec.policy_version, None, None)
        cls = self._classes.get(ctx.qos)
        if cls is not None:
            priority, shedding = cls.priority, cls.shedding
        else:  # a class added to the policy after this actor was created: least critical
            priority, shedding = self._unknown_priority, Shedding.WHEN_OVERLOADED
        rid = ctx.request_id if ctx.request_id is not None else next(self._ids)
        request = Request(rid, ctx.qos, priority, now, ctx.deadline_at, method, shedding, None, None, self.rule_ids)
        return request, ctx

    # -- telemetry ---------------------------------------------------------------------------------
    def _record(self, outcome: str, rid: Any, qos: str, reason: str, remaining_ms: float | None, now: float) -> None:
        push = self._push
        if push is not None:
            push(("actor", outcome, rid, qos, reason, None, None, remaining_ms, self.rule_ids,
                  self.spec.policy_version, None, now, None))  # fmt: skip

    def _offer(self, request: Request) -> bool:
        """Offer ``request`` to the queue at its arrival: raise its typed error when refused, ``False``
        when it may start now, ``True`` when it is queued and must wait (the caller waits its way)."""
        now = request.arrival
        decision = self.queue.offer(request, now)
        self._settle(decision.dropped)
        self._settle(decision.evicted)
        if isinstance(decision, Reject):
            self._decided("reject", request, decision.reason, now)
            self._depth(now)
            raise decision.error
        if not isinstance(decision, Enqueued):
            self._decided("start", request, "slot_free", now)
            return False
        self._decided("enqueue", request, "queued", now)
        self._depth(now)
        return True

    def _settle(self, dropped: tuple[Dropped, ...] | list[Dropped]) -> None:
        raise NotImplementedError

    def _decided(self, outcome: str, request: Request, reason: str, now: float) -> None:
        self._record(outcome, request.id, request.qos, reason, (request.deadline - now) * 1000.0, now)

    def _lost(self, item: Dropped) -> None:
        outcome = "evict" if item.reason == "evicted" else "drop"
        self._record(outcome, item.request_id, item.qos, item.reason, None, time.time())

    def _completed(self, request: Request, end: float, ok: bool) -> None:
        if ok:
            self.completed_total += 1
        else:
            self.failed_total += 1
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.completion(request.qos, (end - request.arrival) * 1000.0,
                                         (request.deadline - end) * 1000.0, ok)  # fmt: skip

    def _depth(self, now: float) -> None:
        """Publish the queue depth per class at most once per ``_DEPTH_PERIOD_S``, and when it empties."""
        if self._metrics is None:
            return
        queued = self.queue.queued()
        if now < self._depth_due and not (queued == 0 and self._depth_last):
            return
        self._depth_due = now + _DEPTH_PERIOD_S
        self._depth_last = queued
        with contextlib.suppress(Exception):
            depth = self.queue.queued_by_class()
            self._depth_seen.update(depth)
            for qos in self._depth_seen:
                self._metrics.queue_depth(qos, depth.get(qos, 0))

    # -- running user code -------------------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def executing(ctx: TaskContext, method: str) -> Iterator[None]:
        """The call's deadline scope (``agentic_ray.current_deadline()`` inside the method; nested
        tasks and actor calls inherit it), a trace span when the caller traced the call, and ``INSIDE``."""
        token = INSIDE.set(True)
        try:
            with _scopes(ctx, ctx.deadline_at):
                if ctx.traceparent is None:
                    yield
                else:
                    tracing = _worker_tracing()
                    attrs = {"agentic.qos": ctx.qos, "agentic.method": method}
                    if ctx.request_id is not None:
                        attrs["agentic.request_id"] = ctx.request_id
                    parent = {"traceparent": ctx.traceparent}
                    with tracing.span("agentic.execute", parent=parent, attributes=attrs, child_only=True):
                        yield
        finally:
            INSIDE.reset(token)

    def stats(self) -> dict[str, Any]:
        """The queue's counts now (for tests and ``agentic_actor_stats``)."""
        snap = self.queue.snapshot()
        return {
            "slots": snap.slots,
            "max_queued": self.queue.max_queued,
            "executing": snap.executing,
            "queued": self.queue.queued(),
            "queued_by_class": self.queue.queued_by_class(),
            "started_total": snap.started_total,
            "rejected_total": snap.rejected_total,
            "dropped_total": snap.dropped_total,
            "evicted_total": snap.evicted_total,
            "completed_total": self.completed_total,
            "failed_total": self.failed_total,
        }


class ThreadedAdmission(ActorAdmission):
    """The queue for a sync actor: one lock, one condition per waiting call (module docstring)."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._lock = threading.Lock()
        self._waiters: dict[Any, _Waiter] = {}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return super().stats()

    def admit(self, request: Request) -> None:
        """Return when ``request`` may run (it holds a slot: call ``release``); raise its typed error
        when it is refused, evicted or expires while it waits."""
        with self._lock:
            if not self._offer(request):
                return
            waiter = self._waiters[request.id] = _Waiter(threading.Condition(self._lock), request.qos)
            try:
                while waiter.outcome is None:
                    left = request.deadline - time.time()
                    if left <= 0:
                        self._settle(self.queue.expire(time.time()))
                        if waiter.outcome is None:  # cannot happen: expire drops every call past its deadline
                            waiter.outcome = True if self.queue.is_executing(request.id) else TimeoutError()
                        break
                    waiter.cond.wait(left + 0.001)
            finally:
                del self._waiters[request.id]
            if waiter.outcome is not True:
                raise waiter.outcome  # type: ignore[misc]

    def release(self, request: Request, end: float, service_ms: float | None, ok: bool) -> None:
        """Free ``request``'s slot (``service_ms``: a sample of its method's service time) and start the
        calls the queue picks next."""
        with self._lock:
            self._started(self.queue.finish(request.id, end, service_ms), end)
            self._completed(request, end, ok)
            self._depth(end)

    def _started(self, admitted: Admitted, now: float) -> None:
        self._settle(admitted.dropped)
        for start in admitted.started:
            waiter = self._waiters.get(start.request_id)
            if waiter is None:  # cannot happen (a waiter leaves only once started or failed)
                self._started(self.queue.finish(start.request_id, now), now)
                continue
            waiter.outcome = True
            waiter.cond.notify()
            self._record("start", start.request_id, waiter.qos, "dequeued", None, now)

    def _settle(self, dropped: tuple[Dropped, ...] | list[Dropped]) -> None:
        for item in dropped:
            self._lost(item)
            waiter = self._waiters.get(item.request_id)
            if waiter is not None and waiter.outcome is None:
                waiter.outcome = item.error
                waiter.cond.notify()

    def call(self, method: str, wire: list[Any] | None, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """Admit, run ``fn(*args, **kwargs)`` in the call's scope, release."""
        request, ctx = self.request(method, wire, time.time())
        self.admit(request)
        started = time.perf_counter()
        ok = False
        try:
            with self.executing(ctx, method):
                result = fn(*args, **kwargs)
            ok = True
            return result
        finally:
            self.release(request, time.time(), (time.perf_counter() - started) * 1000.0 if ok else None, ok)

    def stream(self, method: str, wire: list[Any] | None, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """A generator method: admitted like a call, holding its slot until the stream ends (its length
        is no sample of a service time)."""
        request, ctx = self.request(method, wire, time.time())
        self.admit(request)
        ok = False
        try:
            with self.executing(ctx, method):
                yield from fn(*args, **kwargs)
            ok = True
        finally:
            self.release(request, time.time(), None, ok)


class AsyncAdmission(ActorAdmission):
    """The queue for an async actor: waiting calls await futures on the actor's event loop."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._waiters: dict[Any, tuple[Any, str]] = {}  # request id -> (asyncio.Future, class)

    async def admit(self, request: Request) -> None:
        import asyncio

        if not self._offer(request):
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiters[request.id] = (future, request.qos)
        timer = loop.call_later(max(0.0, request.deadline - time.time()) + 0.001, self._expire)
        try:
            await future
        except asyncio.CancelledError:
            if not self.queue.cancel(request.id) and self.queue.is_executing(request.id):
                self._started(self.queue.finish(request.id, time.time()), time.time())
            raise
        finally:
            timer.cancel()
            self._waiters.pop(request.id, None)

    def release(self, request: Request, end: float, service_ms: float | None, ok: bool) -> None:
        self._started(self.queue.finish(request.id, end, service_ms), end)
        self._completed(request, end, ok)
        self._depth(end)

    def _expire(self) -> None:
        now = time.time()
        self._settle(self.queue.expire(now))
        self._depth(now)

    def _started(self, admitted: Admitted, now: float) -> None:
        self._settle(admitted.dropped)
        for start in admitted.started:
            future, qos = self._waiters.get(start.request_id, (None, ""))
            if future is not None and not future.done():
                future.set_result(None)
                self._record("start", start.request_id, qos, "dequeued", None, now)
            else:  # its caller went away between start and wake-up: give the slot back
                self._started(self.queue.finish(start.request_id, now), now)

    def _settle(self, dropped: tuple[Dropped, ...] | list[Dropped]) -> None:
        for item in dropped:
            self._lost(item)
            future, _ = self._waiters.get(item.request_id, (None, ""))
            if future is not None and not future.done():
                future.set_exception(item.error)

    async def call(self, method: str, wire: list[Any] | None, fn: Callable[..., Any], args: tuple,
                   kwargs: dict, is_coroutine: bool = True) -> Any:  # fmt: skip
        """Admit, run ``fn(*args, **kwargs)`` (awaited when ``is_coroutine``) in the call's scope, release."""
        request, ctx = self.request(method, wire, time.time())
        await self.admit(request)
        started = time.perf_counter()
        ok = False
        try:
            with self.executing(ctx, method):
                result = fn(*args, **kwargs)
                if is_coroutine:
                    result = await result
            ok = True
            return result
        finally:
            self.release(request, time.time(), (time.perf_counter() - started) * 1000.0 if ok else None, ok)

    async def stream(self, method: str, wire: list[Any] | None, fn: Callable[..., Any], args: tuple,
                     kwargs: dict) -> Any:  # fmt: skip
        """An async generator method, admitted like a call and holding its slot until the stream ends."""
        request, ctx = self.request(method, wire, time.time())
        await self.admit(request)
        ok = False
        try:
            with self.executing(ctx, method):
                async for item in fn(*args, **kwargs):
                    yield item
            ok = True
        finally:
            self.release(request, time.time(), None, ok)
