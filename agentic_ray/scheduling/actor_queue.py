"""ActorQueue: the bounded priority-then-deadline queue in front of a governed actor's methods. Pure.

API (``now`` is seconds on the caller's clock; results are the ``AdmissionGate``'s own types)::

    queue = ActorQueue(slots, classes, max_queued)
    queue.offer(request, now)                      -> Start | Enqueued | Reject
    queue.finish(request_id, now, service_ms=None) -> Admitted
    queue.expire(now)                              -> list[Dropped]
    queue.cancel(request_id)                       -> bool
    queue.snapshot()                               -> GateSnapshot
    queue.queued_by_class()                        -> dict[str, int]

It is an ``AdmissionGate`` (``scheduling.admission``: ``slots`` calls run at once, waiting calls start by
class priority, then earliest deadline; a call whose deadline passes while it waits is dropped before
it starts; a call that cannot finish in time is refused on arrival) with one bound over all classes,
``max_queued``, instead of the replica's per-class bounds:

- The gate's class bounds are set to ``min(policy queue_bound, max_queued)`` for classes that may be
  shed and lifted for never-shed classes, so only the rule below refuses never-shed work (never).
- When an arrival would make more than ``max_queued`` calls wait, the least critical waiting call that
  may be shed (highest priority number, then latest deadline, then latest arrival) is the *victim*.
  If the victim is strictly less critical than the arrival (a higher priority number), it is evicted
  (``Dropped(reason="evicted")``, its caller gets ``Overloaded``) and the arrival waits in its place.
  Otherwise the arrival is refused (``Reject(reason="queue_full")``, ``Overloaded`` with
  ``retry_after_s`` = predicted time for the work ahead of it to drain), unless its class is never
  shed: then it waits over the bound. Equal priorities never displace each other (tail drop within a
  class: the queue does not churn between calls of one class).

This is the shedding order of Google's "Handling Overload" (SRE book, ch. 21: criticality first, drop
the least critical first) over the tiered queue of the replica gate; the bound itself is the design's
"backpressure via bounded actor queues" (a full queue refuses at once instead of growing Ray's queue).
Service-time estimates are kept per ``Request.model`` (``MethodServiceTime``); the actor runtime passes
the method name there, so a slow method never makes another look infeasible: a method not measured yet
has no estimate and is not refused as infeasible.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Hashable, Mapping

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.admission import (
    AdmissionGate,
    Admitted,
    Dropped,
    Enqueued,
    GateSnapshot,
    Reject,
    Start,
)
from agentic_ray.scheduling.estimators import EwmaServiceTime
from agentic_ray.scheduling.types import Request

__all__ = ["DEFAULT_MAX_QUEUED", "ActorQueue", "MethodServiceTime", "check_max_queued"]

DEFAULT_MAX_QUEUED = 64  # waiting calls per actor unless ``max_queued`` says otherwise
_UNBOUNDED = 1 << 30  # the class bound of a never-shed class: only ``max_queued`` applies, and never refuses it
_DEFAULT_RETRY_AFTER_S = 0.1


def check_max_queued(value: object) -> int:
    """``value`` as a queue bound: an integer >= 1, else ``ValueError`` naming ``max_queued``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_queued: must be an integer >= 1, got {value!r}")
    return value


class MethodServiceTime(EwmaServiceTime):
    """EWMA service times per method: a method not measured yet has no estimate (``None``) instead of the
    all-methods average, so a fast method is never refused as infeasible because a slow one was measured."""

    __slots__ = ()

    def estimate(self, model: str | None = None) -> float | None:
        if model is not None and model not in self._by_model:
            return None
        return super().estimate(model)


def _bounded(classes: Mapping[str, QosClass], max_queued: int) -> dict[str, QosClass]:
    out = {}
    for name, cls in classes.items():
        if cls.shedding is Shedding.NEVER:
            bound = _UNBOUNDED
        else:
            bound = max_queued if cls.queue_bound is None else min(cls.queue_bound, max_queued)
        out[name] = dataclasses.replace(cls, queue_bound=bound)
    return out


class ActorQueue:
    """An ``AdmissionGate`` with one bound over all classes and least-critical displacement (see the
    module docstring). Not thread-safe: the actor runtime calls it under its own lock or on one loop."""

    def __init__(
        self,
        slots: int,
        classes: Mapping[str, QosClass],
        max_queued: int = DEFAULT_MAX_QUEUED,
        *,
        refuse_infeasible: bool = True,
    ) -> None:
        self.max_queued = check_max_queued(max_queued)
        self.classes = dict(classes)
        self.gate = AdmissionGate(
            slots,
            _bounded(self.classes, self.max_queued),
            default_queue_bound=self.max_queued,
            service=MethodServiceTime(),
            refuse_infeasible=refuse_infeasible,
        )
        self.slots = self.gate.slots
        # What waits, mirrored from the gate's results (the gate keeps its queues private): victims are
        # chosen from here. Values: (request, arrival sequence).
        self._waiting: dict[Hashable, tuple[Request, int]] = {}
        self._seq = itertools.count()
        self.refused_total = 0  # arrivals refused by the bound (the gate counts its own refusals)
        self.evicted_total = 0

    # ----------------------------------------------------------------- queries
    def queued(self) -> int:
        """Calls waiting now."""
        return len(self._waiting)

    def queued_by_class(self) -> dict[str, int]:
        """Waiting calls per class (classes with none are absent)."""
        out: dict[str, int] = {}
        for request, _ in self._waiting.values():
            out[request.qos] = out.get(request.qos, 0) + 1
        return out

    def is_queued(self, request_id: Hashable) -> bool:
        return request_id in self._waiting

    def is_executing(self, request_id: Hashable) -> bool:
        return self.gate.is_executing(request_id)

    def snapshot(self) -> GateSnapshot:
        """The gate's snapshot, with this queue's refusals and evictions added to its totals."""
        snap = self.gate.snapshot()
        return dataclasses.replace(
            snap,
            rejected_total=snap.rejected_total + self.refused_total,
            evicted_total=snap.evicted_total + self.evicted_total,
        )

    # ----------------------------------------------------------------- actions
    def offer(self, request: Request, now: float) -> Start | Enqueued | Reject:
        """Start, queue or refuse ``request`` (see the module docstring for the bound)."""
        result = self.gate.offer(request, now)
        self._forget(result.dropped)
        self._forget(result.evicted)
        if not isinstance(result, Enqueued):
            return result
        self._waiting[request.id] = (request, next(self._seq))
        if len(self._waiting) <= self.max_queued:
            return result
        priority = self._priority(request)
        victim = self._victim(exclude=request.id)
        if victim is not None and self._priority(victim) > priority:
            self.gate.cancel(victim.id)
            del self._waiting[victim.id]
            self.evicted_total += 1
            detail = f"evicted from a full actor queue ({self.max_queued}) by a call of class {request.qos!r}"
            dropped = Dropped(victim.id, victim.qos, "evicted", detail, victim.rule_ids, self._retry_after_s(victim))
            return dataclasses.replace(result, evicted=(*result.evicted, dropped))
        if self._shedding(request) is Shedding.NEVER:
            return result  # never-shed work waits over the bound
        self.gate.cancel(request.id)
        del self._waiting[request.id]
        self.refused_total += 1
        detail = f"actor queue is full ({self.max_queued} calls wait, none less critical than {request.qos!r})"
        return Reject(
            request.id,
            "queue_full",
            detail,
            request.rule_ids,
            self._retry_after_s(request),
            result.dropped,
            result.evicted,
        )

    def finish(self, request_id: Hashable, now: float, service_ms: float | None = None) -> Admitted:
        """Free ``request_id``'s slot; returns the calls that start now (and any dropped). Idempotent."""
        admitted = self.gate.finish(request_id, now, service_ms)
        self._forget(admitted.dropped)
        for start in admitted.started:
            self._waiting.pop(start.request_id, None)
        return admitted

    def expire(self, now: float) -> list[Dropped]:
        """Drop waiting calls whose deadline has passed; they never start."""
        dropped = self.gate.expire(now)
        self._forget(dropped)
        return dropped

    def cancel(self, request_id: Hashable) -> bool:
        """Remove a waiting call (its caller went away); ``False`` when it is not waiting."""
        self._waiting.pop(request_id, None)
        return self.gate.cancel(request_id)

    # ----------------------------------------------------------------- internals
    def _forget(self, dropped: tuple[Dropped, ...] | list[Dropped]) -> None:
        for item in dropped:
            self._waiting.pop(item.request_id, None)

    def _priority(self, request: Request) -> int:
        cls = self.classes.get(request.qos)
        return cls.priority if cls is not None else request.priority

    def _shedding(self, request: Request) -> Shedding:
        cls = self.classes.get(request.qos)
        return cls.shedding if cls is not None else request.shedding

    def _victim(self, exclude: Hashable) -> Request | None:
        """The least critical waiting call that may be shed: highest priority number, then latest
        deadline, then latest arrival."""
        best: tuple[int, float, int] | None = None
        victim: Request | None = None
        for rid, (request, seq) in self._waiting.items():
            if rid == exclude or self._shedding(request) is Shedding.NEVER:
                continue
            key = (self._priority(request), request.deadline, seq)
            if best is None or key > best:
                best, victim = key, request
        return victim

    def _retry_after_s(self, request: Request) -> float:
        """Predicted time for the work ahead of ``request`` to drain: (running + waiting of its priority
        or more critical) / slots x the service estimate of its method."""
        service = self.gate.service.estimate(request.model)
        if service is None:
            return _DEFAULT_RETRY_AFTER_S
        priority = self._priority(request)
        ahead = self.gate.snapshot().executing
        ahead += sum(1 for r, _ in self._waiting.values() if self._priority(r) <= priority and r.id != request.id)
        return ahead / self.slots * service / 1000.0
