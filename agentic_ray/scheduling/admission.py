"""AdmissionGate: the replica-side tiered, bounded queue.

API (all pure; ``now`` is seconds on the caller's clock)::

    gate = AdmissionGate(slots, classes, default_queue_bound=64, service=None, refuse_infeasible=True,
                         tenant_shares=None)
    gate.offer(request, now)          -> Start | Enqueued | Reject
    gate.finish(request_id, now, service_ms=None) -> Admitted   # frees the slot (idempotent)
    gate.expire(now)                  -> list[Dropped]         # queued work whose deadline passed
    gate.cancel(request_id)           -> bool                  # removes a *queued* request
    gate.set_limit(limit, now)        -> Admitted              # run at most ``limit`` <= slots at once
    gate.set_class_caps(caps)                                  # per-class quotas from the control plane
    gate.set_classes(classes, tenant_shares)                   # a new policy's classes, between requests
    gate.snapshot()                   -> GateSnapshot

Every result carries request ids so an async wrapper can wake the right waiter: ``Start.request_id``
may run now; ``Admitted.started`` lists queued requests that may run now; ``Dropped`` entries (in
``dropped`` / ``evicted`` of every result) are requests that will never start. ``Reject`` and ``Dropped``
carry a ``reason`` (``deadline_passed``, ``cannot_meet_deadline``, ``class_cap``, ``tenant_share``, ``queue_full``;
``deadline_passed_in_queue``, ``evicted``), a detail, the rule ids and a retry hint; the typed
``AdmissionError`` for the caller is built from them at the edge (``.error``: ``BudgetExhausted`` for a
deadline, ``Overloaded`` otherwise), so a caller that only counts reasons (the simulator) builds none.

``offer`` runs ordered stages over the gate's priority-then-EDF queues: expire queued work; refuse a
request past its deadline; refuse one that cannot finish in time; refuse one whose class holds its cap
at this gate; start it when a slot is free; refuse it over its tenant's share (unless its tenant's own
less urgent queued work can make room); queue it when its class queue has room, or when less urgent
queued work can be displaced to make room; else refuse it (queue full).

``replica_gate(slots, classes, tenant_shares=...)`` builds the gate a replica of an
``@agentic_ray.deployment`` runs (budget-sized bounds between ``DEFAULT_QUEUE_BOUND`` and
``MAX_QUEUE_BOUND``, the tenants' share caps); the simulator builds its gated replicas the same way.

Discipline. ``slots`` requests execute at once. While ``set_limit`` holds a lower ``limit`` (the process
in front of the replica is saturated, see ``limits.DelayLimit``), work of classes that may be shed
starts only while fewer than ``limit`` run; never-shed work may still use every slot. Waiting work sits
in one bounded queue per QoS class. When a slot frees, the next request is taken from the class with the
lowest ``priority`` number, and within it the earliest deadline (FIFO among equal deadlines). Queued
work whose deadline has passed (``deadline <= now``) is dropped before it can start, and so, with
``refuse_infeasible``, is work whose time left is below a typical execution of its model here (the
median of the last 31 ``finish`` ``service_ms``) plus the answer's likely trip back to its caller (the
median of the last 31 trips to this gate, ``note_trip``): it would more likely than not finish late
even if it started now. Under overload EDF starts the requests nearest their deadline, so without this
the replica's time goes to work that ends late (the chaos suite's overload ladder over handles: goodput
at 4x capacity 39-46 -> 52-55 requests/s with the fastest execution as the bar; at 10x 14-22 -> 26-36
with it, 37-47 with the median and the trip, whose late critical executions fell from ~50 to ~20 per
4 s). A median, not the mean, so that a heavy tail does not drop work that a typical draw finishes.
Expiry runs on every ``offer``/``finish``/``expire``.

Bounds. A class's queue bound is ``QosClass.queue_bound`` when set; else, when the class has
``max_queue_wait_ms`` and a service-time estimate exists, Little's law (L = lambda W with the queue
drained at ``slots / service`` requests per ms): ``bound = max(1, floor(slots * max_queue_wait_ms /
ewma_service_ms))``; else, with ``budget_bounds``, the same with the class's budget as the wait (the
queue its budget can drain), at least ``default_queue_bound`` and at most ``max_budget_bound``; else
``default_queue_bound``. (``slots`` here is the current ``limit``.) A request whose class queue is full is rejected at
once with ``Overloaded(retry_after_s=...)``, the predicted time until the work ahead of it drains
(``(queued ahead + executing) / slots * service``), unless it can displace: priority orders who is shed,
whatever the shedding modes, so a request whose class queue is full evicts one queued request that is
less urgent (a larger priority number) and may be shed (not ``never``), the least important first
(highest priority number, then latest deadline), and is admitted over its class bound; the total queued
stays the same. This holds for every pair of levels; a ``Shedding.NEVER`` request may also evict a
``Shedding.FIRST`` request of any priority. The evicted request gets ``Dropped(reason="evicted")``.

Infeasible arrivals. With ``refuse_infeasible`` (default), a request whose class may be shed (not
``NEVER``) and is not the most urgent of the gate's classes (the lowest priority number), and whose
remaining budget is below the EWMA service time of its model, is refused with
``BudgetExhausted(reason="cannot_meet_deadline")``: it cannot finish in time even if started now. (The
most urgent class is spared: a mean inflated by rare slow requests says little about whether it can.)
A request already past its deadline is always refused (``reason="deadline_passed"``).

Streams. With ``streams`` (a ``streams.StreamEstimate`` of this replica; ``replica_gate`` makes one when
a class sets ``ttft_ms``), a stream request (one with ``prompt_tokens``) of a class with ``ttft_ms`` that
may be shed is refused with ``BudgetExhausted(reason="cannot_meet_ttft")`` when its predicted time to
first token here (the streams executing or queued ahead of it, then its prefill) misses
``min(ttft_ms, remaining budget)`` (``streams.ttft_refusal``). Never-shed streams are admitted.

Class caps. ``set_class_caps({class: cap})`` installs per-class quotas handed down by the control plane
(``control.NodeLease.replica_caps``: the allocator's share of the class's offered load that this replica
should hold). A request of a class that may be shed is refused with ``Overloaded(reason="class_cap")``
once its class holds ``cap`` requests here (running plus queued), even with a slot free: the quota
bounds what one replica takes of a class so the rest goes elsewhere or is shed early. Never-shed work is
never refused by a cap. A class without a cap (and every class after ``set_class_caps({})``) is not
capped; counting the class's running requests costs O(running) and only happens for a capped class.
Routers learn a replica's caps from its published stats (``RoutingStats.class_caps``), a stats period
or more after the gate: ``set_class_caps(caps, now=now, grace_s=g)`` publishes a lowered cap (and a new
one) at once but enforces the previous one until ``now + g``, so a request a router sent on the cap it
knew is not refused after a round trip (the chaos ladder at 2x: the control plane moves caps every few
tenths of a second, and half the gates' ``class_cap`` refusals were of such requests); a raise holds at
once.

Tenant share caps. With ``tenant_shares`` (tenant name -> share in (0, 1], from the policy's tenants), a
tenant may hold (executing plus queued) at most ``max(1, floor(share * occupancy))`` of the gate's
occupied positions, ``occupancy`` counting the new request, but only while the gate is contended: the
request would have to queue and another tenant has work queued. An idle or single-tenant gate is
work-conserving and caps nothing. Over its cap, a request whose class may be shed displaces its own
tenant's less urgent queued work if there is some (the tenant's share of the gate stays the same), else
it is refused with ``Overloaded(reason="tenant_share")``; never-shed work is never refused for its
tenant's share. This is
the cap of max-min fair sharing (Demers, Keshav & Shenker, "Analysis and Simulation of a Fair Queueing
Algorithm", SIGCOMM 1989) applied at admission rather than at dequeue.

Sources: the priority-then-EDF discipline and per-class bounded queues follow the tiered admission
of Netflix concurrency-limits' partitions and Google's "Handling Overload" (SRE book, ch. 21);
Little's law (Little, 1961).
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import statistics
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agentic_ray.errors import AdmissionError, BudgetExhausted, Overloaded
from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.estimators import EwmaServiceTime
from agentic_ray.scheduling.streams import StreamEstimate, streaming_classes, ttft_refusal
from agentic_ray.scheduling.types import Request

__all__ = [
    "DEFAULT_QUEUE_BOUND",
    "MAX_QUEUE_BOUND",
    "AdmissionGate",
    "admission_error",
    "replica_gate",
    "tenant_shares_of",
    "Admitted",
    "Dropped",
    "Enqueued",
    "GateSnapshot",
    "Reject",
    "Start",
]

_DEFAULT_RETRY_AFTER_S = 0.1
_ANY_TENANT = object()
DEFAULT_QUEUE_BOUND = 16  # a replica's queue bound per class until its service time is known
MAX_QUEUE_BOUND = 64  # the most a class's budget-sized queue bound grows to on a replica

_RECENT_EXECUTIONS = 31  # executions per model (and trips) whose median is the typical one

# The typed error of each refusal reason (built at the edge, when a caller asks for ``.error``).
_BUDGET_REASONS = frozenset({"deadline_passed", "cannot_meet_deadline", "deadline_passed_in_queue", "cannot_meet_ttft"})


def admission_error(
    reason: str, detail: str = "", rule_ids: tuple[str, ...] = (), retry_after_s: float | None = None
) -> AdmissionError:
    """The typed error of a refusal: ``BudgetExhausted`` for a deadline that passed or cannot be met,
    ``Overloaded`` otherwise (queue full, tenant share, evicted)."""
    cls = BudgetExhausted if reason in _BUDGET_REASONS else Overloaded
    return cls(detail, reason=reason, rule_ids=rule_ids, retry_after_s=retry_after_s)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A request that will never start here (expired in its queue, or evicted); hand ``error`` to its
    caller. ``reason`` is ``deadline_passed_in_queue`` or ``evicted``."""

    request_id: Any
    qos: str
    reason: str
    detail: str = ""
    rule_ids: tuple[str, ...] = ()
    retry_after_s: float | None = None

    @property
    def error(self) -> AdmissionError:
        """The typed error for its caller (``BudgetExhausted`` or ``Overloaded``), built on each access."""
        return admission_error(self.reason, self.detail, self.rule_ids, self.retry_after_s)


@dataclass(frozen=True, slots=True)
class Start:
    """``request_id`` holds a slot and may run now. Call ``finish`` when it is done."""

    request_id: Any
    dropped: tuple[Dropped, ...] = ()
    evicted: tuple[Dropped, ...] = ()  # always empty; present so every offer result has the same fields


@dataclass(frozen=True, slots=True)
class Enqueued:
    """``request_id`` waits in its class queue; a later ``finish`` result lists it in ``started``."""

    request_id: Any
    position: int
    dropped: tuple[Dropped, ...] = ()
    evicted: tuple[Dropped, ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """``request_id`` was refused for ``reason`` (``deadline_passed``, ``cannot_meet_deadline``,
    ``tenant_share``, ``queue_full``); raise ``error`` (``BudgetExhausted`` / ``Overloaded``) to its caller."""

    request_id: Any
    reason: str
    detail: str = ""
    rule_ids: tuple[str, ...] = ()
    retry_after_s: float | None = None
    dropped: tuple[Dropped, ...] = ()
    evicted: tuple[Dropped, ...] = ()

    @property
    def error(self) -> AdmissionError:
        """The typed error for the caller, built on each access."""
        return admission_error(self.reason, self.detail, self.rule_ids, self.retry_after_s)


class _Refusal(NamedTuple):
    """What a refusing stage of ``offer`` found."""

    reason: str
    detail: str
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """Result of ``finish``: queued requests that start now, and expired ones dropped on the way."""

    started: tuple[Start, ...] = ()
    dropped: tuple[Dropped, ...] = ()


@dataclass(frozen=True, slots=True)
class GateSnapshot:
    """The gate's state for metrics and for routers (``queued_by_priority`` feeds ``ReplicaView``)."""

    slots: int
    executing: int
    queued: int
    queued_by_class: Mapping[str, int]
    queued_by_priority: Mapping[int, int]
    queue_bounds: Mapping[str, int]
    ewma_service_ms: float | None
    service_ms_by_model: Mapping[str, float] = field(default_factory=dict)
    started_total: int = 0
    dropped_total: int = 0
    rejected_total: int = 0
    evicted_total: int = 0
    limit: int | None = None  # calls run at once now (None: ``slots``)
    cap_room: Mapping[str, int] = field(default_factory=dict)  # per capped class: cap minus what it holds
    class_caps: Mapping[str, int] = field(default_factory=dict)  # per capped class: its cap here

    @property
    def ongoing(self) -> int:
        """Executing plus queued, as Serve's queue-length probe reports it."""
        return self.executing + self.queued


class _Entry:
    __slots__ = ("live", "request", "seq")

    def __init__(self, request: Request, seq: int) -> None:
        self.request = request
        self.seq = seq
        self.live = True


class AdmissionGate:
    """A replica's tiered admission queue; see the module docstring for the discipline and the API."""

    def __init__(
        self,
        slots: int,
        classes: Mapping[str, QosClass],
        *,
        default_queue_bound: int = 64,
        service: EwmaServiceTime | None = None,
        refuse_infeasible: bool = True,
        tenant_shares: Mapping[str, float] | None = None,
        budget_bounds: bool = False,
        max_budget_bound: int = 1024,
        streams: StreamEstimate | None = None,
    ) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots: must be an integer >= 1, got {slots!r}")
        if (
            isinstance(default_queue_bound, bool)
            or not isinstance(default_queue_bound, int)
            or (default_queue_bound < 0)
        ):
            raise ValueError(f"default_queue_bound: must be an integer >= 0, got {default_queue_bound!r}")
        self.slots = slots
        self.limit = slots  # calls run at once now: ``set_limit`` lowers it below ``slots`` (host saturated)
        self.pace_s = 0.0  # least time between starts of work that may be shed (``set_limit``; 0: none)
        self._paced_at = -math.inf  # when work that may be shed last started while paced
        self.classes = dict(classes)
        self.top_priority = min((c.priority for c in self.classes.values()), default=0)
        self.default_queue_bound = default_queue_bound
        self.service = service if service is not None else EwmaServiceTime()
        self.refuse_infeasible = refuse_infeasible
        self.budget_bounds = budget_bounds
        self.max_budget_bound = max_budget_bound
        self.streams = streams  # this replica's learned prefill/decode rates (None: no stream budgets)
        self.tenant_shares: dict[str, float] = _checked_shares(tenant_shares)
        self.class_caps: dict[str, int] = {}  # per-class quotas from the control plane (``set_class_caps``)
        self._lowered: dict[str, tuple[int | None, float]] = {}  # class -> (cap still enforced, until when)
        # Positions (executing + queued) held per tenant, and queued per tenant (for the share caps).
        self._held_by_tenant: dict[str | None, int] = {}
        self._queued_by_tenant: dict[str | None, int] = {}
        self._executing: dict[Hashable, Request] = {}
        self._queued: dict[Hashable, _Entry] = {}
        # Per class: a heap of (deadline, seq, entry); entries removed out of order are marked dead.
        self._heaps: dict[str, list[tuple[float, int, _Entry]]] = {}
        self._count: dict[str, int] = {}
        self._class_priority: dict[str, int] = {}
        self._seq = itertools.count()
        # per model, the recent executions measured here and their median (``_typical_ms``)
        self._recent_ms: dict[str, collections.deque[float]] = {}
        self._typical_ms: dict[str, float] = {}
        self._trips_ms: collections.deque[float] = collections.deque(maxlen=_RECENT_EXECUTIONS)
        self._trip_ms = 0.0  # the median of the recent trips from the caller to this gate (``note_trip``)
        self.started_total = 0
        self.dropped_total = 0
        self.rejected_total = 0
        self.evicted_total = 0

    # ----------------------------------------------------------------- queries
    def queue_bound(self, qos: str, model: str | None = None) -> int:
        """The current bound of class ``qos`` (see the module docstring)."""
        cls = self.classes.get(qos)
        if cls is None:
            return self.default_queue_bound
        if cls.queue_bound is not None:
            return cls.queue_bound
        service = self.service.estimate(model)
        if cls.max_queue_wait_ms is not None:
            if service is not None and service > 0:
                return max(1, math.floor(self.limit * cls.max_queue_wait_ms / service))
            return self.default_queue_bound
        if service is not None and service > 0 and self.budget_bounds:
            # The queue the class's budget can drain: longer only holds work that will expire; shorter
            # refuses work that could still be served (and a refused closed-loop caller comes right back).
            fit = math.floor(self.limit * cls.budget_ms / service)
            return max(self.default_queue_bound, min(fit, self.max_budget_bound))
        return self.default_queue_bound

    def is_executing(self, request_id: Hashable) -> bool:
        """True while ``request_id`` holds a slot."""
        return request_id in self._executing

    def is_busy(self) -> bool:
        """True while any request executes or waits."""
        return bool(self._executing or self._queued)

    def is_queued(self, request_id: Hashable) -> bool:
        """True while ``request_id`` waits in a queue."""
        return request_id in self._queued

    def snapshot(self) -> GateSnapshot:
        """Counts per class and per priority, slots, bounds and the service estimate."""
        by_priority: dict[int, int] = {}
        for qos, n in self._count.items():
            if n:
                p = self._class_priority[qos]
                by_priority[p] = by_priority.get(p, 0) + n
        bounds = {name: self.queue_bound(name) for name in self.classes}
        cap_room = {qos: max(0, cap - self._held(qos)) for qos, cap in self.class_caps.items()}
        return GateSnapshot(
            slots=self.slots,
            executing=len(self._executing),
            queued=len(self._queued),
            queued_by_class={q: n for q, n in self._count.items() if n},
            queued_by_priority=by_priority,
            queue_bounds=bounds,
            ewma_service_ms=self.service.estimate(),
            service_ms_by_model=self.service.by_model(),
            started_total=self.started_total,
            dropped_total=self.dropped_total,
            rejected_total=self.rejected_total,
            evicted_total=self.evicted_total,
            limit=self.limit,
            cap_room=cap_room,
            class_caps=dict(self.class_caps),
        )

    # ----------------------------------------------------------------- settings
    def set_class_caps(self, caps: Mapping[str, int], *, now: float | None = None, grace_s: float = 0.0) -> None:
        """Install per-class caps on running plus queued requests (replacing the previous ones; ``{}``
        lifts them). Lowering a cap stops nothing that runs or waits: it only refuses new arrivals. With
        ``now`` and ``grace_s`` > 0 a cap lowered (or a class newly capped) is published at once and
        enforced from ``now + grace_s`` on, the previous cap until then (module docstring). ``ValueError``
        names a cap that is not an int >= 0, and nothing changes."""
        checked: dict[str, int] = {}
        for qos, cap in caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise ValueError(f"class_caps.{qos}: must be an integer >= 0, got {cap!r}")
            checked[str(qos)] = cap
        lowered: dict[str, tuple[int | None, float]] = {}
        if now is not None and grace_s > 0:
            for qos, cap in checked.items():
                before = self._enforced(qos, now)
                if before is None or before > cap:
                    lowered[qos] = (before, now + grace_s)
        self.class_caps, self._lowered = checked, lowered

    def _enforced(self, qos: str, now: float) -> int | None:
        """The cap on ``qos`` enforced at ``now`` (None: uncapped)."""
        held = self._lowered.get(qos)
        if held is not None and now < held[1]:
            return held[0]
        return self.class_caps.get(qos)

    def set_classes(self, classes: Mapping[str, QosClass], tenant_shares: Mapping[str, float] | None = None) -> None:
        """Adopt a new policy's classes and tenant shares between requests. Work already running or
        queued stays where it is; queued classes take their new priority for what starts next."""
        shares = _checked_shares(tenant_shares)
        self.classes = dict(classes)
        self.tenant_shares = shares
        for qos in self._class_priority:
            cls = self.classes.get(qos)
            if cls is not None:
                self._class_priority[qos] = cls.priority

    # ----------------------------------------------------------------- actions
    def offer(self, request: Request, now: float) -> Start | Enqueued | Reject:
        """Admit, queue or refuse ``request``. A request id already in the gate is a ``ValueError``.

        Ordered stages: expire queued work; refuse a request whose deadline passed or that cannot finish
        in time; refuse it when its class holds its cap here (``set_class_caps``); start it when a slot is
        free; refuse it over its tenant's share; queue it when its class queue has room (a never-shed
        request makes room by evicting); refuse it (queue full)."""
        rid = request.id
        if rid in self._executing or rid in self._queued:
            raise ValueError(f"request id {rid!r} is already in the gate")
        dropped = tuple(self._expire(now))
        shedding = self._shedding(request)
        refusal = self._past_deadline(request, now) or self._infeasible(request, now, shedding)
        if refusal is None and self.streams is not None and request.prompt_tokens is not None:
            refusal = self._ttft_miss(request, now, shedding)
        if refusal is None and self.class_caps:
            refusal = self._over_class_cap(request, shedding, now)
        if refusal is not None:
            return self._reject(request, refusal, dropped)
        cap = self._limit_for(shedding)
        # Queued work waits only while its own cap is reached (``_start_queued`` runs after every change),
        # so a never-shed arrival under ``slots`` may start past work held back by ``limit``.
        never = shedding is Shedding.NEVER
        if len(self._executing) < cap and (not self._queued or cap > self.limit) and self._pace_allows(never, now):
            self._executing[rid] = request
            self._hold(request.tenant, 1)
            self.started_total += 1
            return Start(rid, dropped)
        refusal = self._over_tenant_share(request, shedding)
        if refusal is not None:
            return self._reject(request, refusal, dropped)
        evicted: tuple[Dropped, ...] = ()
        if self.tenant_shares and shedding is not Shedding.NEVER and self._over_share(request.tenant):
            # over its share (the stage above found the tenant's own less urgent work to displace)
            evicted = (self._evict(self._displacement_victim(request, shedding, request.tenant), request),)  # type: ignore[arg-type]
        elif self._count.get(request.qos, 0) >= self.queue_bound(request.qos, request.model):
            victim = self._displacement_victim(request, shedding)
            if victim is None:
                detail = f"queue of class {request.qos!r} is full"
                return self._reject(request, _Refusal("queue_full", detail, self._retry_after_s(request)), dropped)
            evicted = (self._evict(victim, request),)
        self._push(request)
        return Enqueued(rid, self._position(request), dropped, evicted)

    # -- the refusing stages of ``offer``: each returns a ``_Refusal`` or None ------------------------
    def _past_deadline(self, request: Request, now: float) -> _Refusal | None:
        if request.remaining_ms(now) <= 0:
            return _Refusal("deadline_passed", "deadline passed before admission")
        return None

    def _infeasible(self, request: Request, now: float, shedding: Shedding) -> _Refusal | None:
        """A class that may be shed and is not the most urgent one, whose remaining budget is below the
        service time of its model."""
        if not self.refuse_infeasible or shedding is Shedding.NEVER or self._priority(request) <= self.top_priority:
            return None
        service = self.service.estimate(request.model)
        remaining_ms = request.remaining_ms(now)
        if service is not None and remaining_ms < service:
            return _Refusal("cannot_meet_deadline", f"{remaining_ms:.1f} ms left < {service:.1f} ms service time")
        return None

    def _ttft_miss(self, request: Request, now: float, shedding: Shedding) -> _Refusal | None:
        """A stream of a class that may be shed whose predicted time to first token here misses."""
        if shedding is Shedding.NEVER or self.streams is None:
            return None
        ahead = self._work_ahead(self._priority(request))  # executing, and queued no less urgent
        qos = self.classes.get(request.qos)
        miss = ttft_refusal(self.streams, request, qos, now, ahead, self._limit_for(shedding))
        return None if miss is None else _Refusal("cannot_meet_ttft", miss[0], miss[1])

    def _over_class_cap(self, request: Request, shedding: Shedding, now: float) -> _Refusal | None:
        """A class that may be shed whose running plus queued requests here reached its cap."""
        qos = request.qos
        if shedding is Shedding.NEVER or qos not in self.class_caps:
            return None
        cap = self._enforced(qos, now)
        if cap is None or self._held(qos) < cap:
            return None
        detail = f"class {qos!r} holds its cap of {cap} at this replica"
        return _Refusal("class_cap", detail, self._retry_after_s(request))

    def _held(self, qos: str) -> int:
        """Requests of class ``qos`` running or queued here (what its cap counts)."""
        return self._count.get(qos, 0) + sum(1 for r in self._executing.values() if r.qos == qos)

    def _over_tenant_share(self, request: Request, shedding: Shedding) -> _Refusal | None:
        if not self.tenant_shares or shedding is Shedding.NEVER or not self._over_share(request.tenant):
            return None
        if self._displacement_victim(request, shedding, request.tenant) is not None:
            return None  # the tenant's own less urgent queued work makes room (displaced when queued)
        detail = f"tenant {request.tenant!r} holds its share of this replica while others wait"
        return _Refusal("tenant_share", detail, self._retry_after_s(request))

    def finish(self, request_id: Hashable, now: float, service_ms: float | None = None) -> Admitted:
        """Free ``request_id``'s slot and start queued work. Idempotent: a second call returns an empty
        ``Admitted``. ``service_ms`` (measured execution time) feeds the EWMA service estimate."""
        request = self._executing.pop(request_id, None)
        if request is None:
            return Admitted()
        self._hold(request.tenant, -1)
        if service_ms is not None:
            self.service.observe(service_ms, now, request.model)
            if service_ms > 0:
                self._observe_execution(request.model, service_ms)
        dropped = self._expire(now)
        started = self._start_queued(now)
        return Admitted(tuple(started), tuple(dropped))

    def _observe_execution(self, model: str, service_ms: float) -> None:
        recent = self._recent_ms.get(model)
        if recent is None:
            recent = self._recent_ms[model] = collections.deque(maxlen=_RECENT_EXECUTIONS)
        recent.append(service_ms)
        self._typical_ms[model] = statistics.median_low(recent)

    def note_trip(self, trip_ms: float) -> None:
        """A call's trip from its caller's decision to this gate (ms). Their recent median stands for the
        answer's trip back when the gate judges whether queued work can still finish in time."""
        if trip_ms == trip_ms and trip_ms >= 0.0:  # not NaN; a negative trip is clock skew: ignored
            self._trips_ms.append(trip_ms)
            self._trip_ms = statistics.median_low(self._trips_ms)

    def set_limit(self, limit: int, now: float, pace_s: float = 0.0) -> Admitted:
        """Run at most ``limit`` calls at once (1 <= limit <= ``slots``), and start work that may be shed
        at most once per ``pace_s`` seconds (0: unpaced; ``limits.DelayLimit`` paces below its floor).
        Raising either starts queued work (returned like ``finish``'s), and so does calling it again
        once the pace allows the next start; lowering them stops nothing that runs, it only starts less.
        ``ValueError`` names a bad value, and nothing changes."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= self.slots:
            raise ValueError(f"limit: must be an integer in [1, {self.slots}], got {limit!r}")
        if not (math.isfinite(pace_s) and pace_s >= 0):
            raise ValueError(f"pace_s: must be a finite number >= 0, got {pace_s!r}")
        self.limit, self.pace_s = limit, pace_s
        dropped = self._expire(now)
        return Admitted(tuple(self._start_queued(now)), tuple(dropped))

    def _pace_allows(self, never: bool, now: float) -> bool:
        """True when work (``never``: of a never-shed class, which is not paced) may start now under the
        pace; a start it allows is counted."""
        if self.pace_s <= 0 or never:
            return True
        if now - self._paced_at < self.pace_s:
            return False
        self._paced_at = now
        return True

    def expire(self, now: float) -> list[Dropped]:
        """Drop queued requests whose deadline has passed (``deadline <= now``); they never start."""
        dropped = self._expire(now)
        # Expiry never frees a slot, but a free slot with queued work cannot persist; keep it so.
        return dropped

    def cancel(self, request_id: Hashable) -> bool:
        """Remove a queued request (its caller gave up). ``False`` when it is not queued (already
        started: call ``finish``; unknown; or already removed)."""
        entry = self._queued.pop(request_id, None)
        if entry is None:
            return False
        entry.live = False
        self._count[entry.request.qos] -= 1
        self._hold(entry.request.tenant, -1, queued=-1)
        return True

    # ----------------------------------------------------------------- internals
    def _shedding(self, request: Request) -> Shedding:
        cls = self.classes.get(request.qos)
        return cls.shedding if cls is not None else request.shedding

    def _priority(self, request: Request) -> int:
        cls = self.classes.get(request.qos)
        return cls.priority if cls is not None else request.priority

    def _push(self, request: Request) -> None:
        qos = request.qos
        entry = _Entry(request, next(self._seq))
        heap = self._heaps.get(qos)
        if heap is None:
            heap = self._heaps[qos] = []
            self._class_priority[qos] = self._priority(request)
        heapq.heappush(heap, (request.deadline, entry.seq, entry))
        self._queued[request.id] = entry
        self._count[qos] = self._count.get(qos, 0) + 1
        self._hold(request.tenant, 1, queued=1)

    def _classes_by_priority(self) -> list[str]:
        return sorted(self._heaps, key=self._class_priority.__getitem__)

    def _pop_front(self, heap: list[tuple[float, int, _Entry]]) -> _Entry | None:
        while heap:
            entry = heap[0][2]
            if entry.live:
                return entry
            heapq.heappop(heap)
        return None

    def _limit_for(self, shedding: Shedding) -> int:
        """Calls that may run at once when a call of this shedding mode starts: never-shed work may use
        every slot, other work only ``limit`` (lowered while the host is saturated)."""
        return self.slots if shedding is Shedding.NEVER else self.limit

    def _start_queued(self, now: float) -> list[Start]:
        started: list[Start] = []
        if len(self._executing) >= self.slots or not self._queued:
            return started
        for qos in self._classes_by_priority():
            heap = self._heaps[qos]
            cls = self.classes.get(qos)
            never = cls is not None and cls.shedding is Shedding.NEVER
            cap = self.slots if never else self.limit
            while len(self._executing) < cap:
                entry = self._pop_front(heap)
                if entry is None or not self._pace_allows(never, now):
                    break
                heapq.heappop(heap)
                entry.live = False
                rid = entry.request.id
                del self._queued[rid]
                self._count[qos] -= 1
                self._executing[rid] = entry.request
                self._queued_by_tenant[entry.request.tenant] -= 1
                self.started_total += 1
                started.append(Start(rid))
            if len(self._executing) >= self.slots:
                break
        return started

    def _expire(self, now: float) -> list[Dropped]:
        dropped: list[Dropped] = []
        if not self._queued:
            return dropped
        typical = self._typical_ms if self.refuse_infeasible else {}
        for qos, heap in self._heaps.items():
            while True:
                entry = self._pop_front(heap)
                if entry is None:
                    break
                # dropped once a typical execution here (the median) and the answer's trip back to its
                # caller (the median trip here) would end after its deadline; a model not yet executed
                # here has no typical execution: only its deadline counts
                typical_ms = typical.get(entry.request.model)
                need_ms = 0.0 if typical_ms is None else typical_ms + self._trip_ms
                if entry.request.deadline > now + need_ms / 1000.0:
                    break
                heapq.heappop(heap)
                entry.live = False
                request = entry.request
                del self._queued[request.id]
                self._count[qos] -= 1
                self._hold(request.tenant, -1, queued=-1)
                self.dropped_total += 1
                late_ms = (now - request.deadline) * 1000.0
                if late_ms >= 0:
                    detail = f"deadline passed {late_ms:.1f} ms ago while queued"
                else:
                    medians = f"{typical[request.model]:.1f} + {self._trip_ms:.1f} ms"
                    detail = (f"{-late_ms:.1f} ms left while queued, less than a typical execution here "
                              f"and the trip back (medians {medians})")  # fmt: skip
                dropped.append(Dropped(request.id, qos, "deadline_passed_in_queue", detail, request.rule_ids))
        return dropped

    def _hold(self, tenant: str | None, held: int, queued: int = 0) -> None:
        self._held_by_tenant[tenant] = self._held_by_tenant.get(tenant, 0) + held
        if queued:
            self._queued_by_tenant[tenant] = self._queued_by_tenant.get(tenant, 0) + queued

    def _over_share(self, tenant: str | None) -> bool:
        """True when one more request of ``tenant`` would pass its share while another tenant waits."""
        share = self.tenant_shares.get(tenant) if tenant is not None else None
        if share is None:
            return False
        others_waiting = len(self._queued) - self._queued_by_tenant.get(tenant, 0)
        if others_waiting <= 0:
            return False
        occupancy = len(self._executing) + len(self._queued) + 1
        return self._held_by_tenant.get(tenant, 0) + 1 > max(1, math.floor(share * occupancy))

    def _displacement_victim(self, request: Request, shedding: Shedding, tenant: Any = _ANY_TENANT) -> _Entry | None:
        """The queued request ``request`` displaces when its class queue is full (or, with ``tenant``,
        when its tenant is over its share: among that tenant's own queued work): the least important
        queued request (highest priority number, then latest deadline, then latest queued) among those
        that may be shed and are less urgent than it (a larger priority number), or, for a never-shed
        request, of a ``first`` class whatever its priority. None: nothing may be displaced."""
        prio = self._priority(request)
        never = shedding is Shedding.NEVER
        count = self._count
        class_priority = self._class_priority
        # the least urgent class first: a victim there beats any in a more urgent class
        for qos in sorted(self._heaps, key=class_priority.__getitem__, reverse=True):
            q = class_priority[qos]
            if q <= prio and not never:
                break
            if not count.get(qos):
                continue
            best: tuple[float, int] | None = None
            victim: _Entry | None = None
            for _deadline, seq, entry in self._heaps[qos]:
                if not entry.live:
                    continue
                mode = self._shedding(entry.request)
                if mode is Shedding.NEVER or (q <= prio and mode is not Shedding.FIRST):
                    continue
                if tenant is not _ANY_TENANT and entry.request.tenant != tenant:
                    continue
                key = (entry.request.deadline, seq)
                if best is None or key > best:
                    best, victim = key, entry
            if victim is not None:
                return victim
        return None

    def _evict(self, victim: _Entry, admitted: Request) -> Dropped:
        request = victim.request
        self.cancel(request.id)
        self.evicted_total += 1
        detail = f"evicted to admit more urgent class {admitted.qos!r}"
        return Dropped(request.id, request.qos, "evicted", detail, request.rule_ids, self._retry_after_s(request))

    def _work_ahead(self, priority: int) -> int:
        ahead = len(self._executing)
        for qos, n in self._count.items():
            if n and self._class_priority[qos] <= priority:
                ahead += n
        return ahead

    def _position(self, request: Request) -> int:
        """0-based place in the start order (work of higher or equal priority with earlier deadline)."""
        p = self._priority(request)
        deadline = request.deadline
        pos = 0
        for qos, n in self._count.items():  # whole classes ahead by priority; equal ones entry by entry
            if not n:
                continue
            q = self._class_priority[qos]
            if q < p:
                pos += n
            elif q == p:
                for d, _seq, entry in self._heaps[qos]:
                    if entry.live and d <= deadline and entry.request is not request:
                        pos += 1
        return pos

    def _retry_after_s(self, request: Request) -> float:
        service = self.service.estimate(request.model)
        if service is None:
            return _DEFAULT_RETRY_AFTER_S
        return self._work_ahead(self._priority(request)) / self.limit * service / 1000.0

    def _reject(self, request: Request, refusal: _Refusal, dropped: tuple[Dropped, ...]) -> Reject:
        self.rejected_total += 1
        reason, detail, retry = refusal
        return Reject(request.id, reason, detail, request.rule_ids, retry, dropped)


def _checked_shares(tenant_shares: Mapping[str, float | None] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for tenant, share in (tenant_shares or {}).items():
        if share is None:
            continue
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ValueError(f"tenant_shares.{tenant}: must be a number in (0, 1], got {share!r}")
        out[tenant] = float(share)
    return out


def tenant_shares_of(tenants: Mapping[str, Any]) -> dict[str, float]:
    """Tenant name -> share of the tenants that have one (a policy's ``tenants``: objects with ``share``)."""
    return {name: t.share for name, t in tenants.items() if getattr(t, "share", None) is not None}


def replica_gate(
    slots: int,
    classes: Mapping[str, QosClass],
    *,
    tenant_shares: Mapping[str, float] | None = None,
    default_queue_bound: int = DEFAULT_QUEUE_BOUND,
    max_queue_bound: int = MAX_QUEUE_BOUND,
) -> AdmissionGate:
    """The gate of one replica of an ``@agentic_ray.deployment``, and of a simulated replica: budget-sized
    class queues (at least ``default_queue_bound``, at most ``max_queue_bound``), the tenants' share caps,
    and stream estimates when a class sets ``ttft_ms``."""
    return AdmissionGate(
        slots,
        classes,
        default_queue_bound=default_queue_bound,
        tenant_shares=tenant_shares,
        budget_bounds=True,
        max_budget_bound=max_queue_bound,
        streams=StreamEstimate() if streaming_classes(classes) else None,
    )
