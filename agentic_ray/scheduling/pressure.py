"""Shedding by host pressure: while the path to a replica is slow, less urgent work is refused at the router.

When the host is saturated (a noisy neighbour on a small machine, a caller's busy event loop), every
request pays for its trip to a replica before any gate sees it: the caller's router, the RPC, the
replica's event loop all serve first come, first served, and their delay lands on critical work as on
any other. The replica's gate cannot help with time spent before it, and running fewer calls at once
there (``limits.DelayLimit``) keeps less urgent work waiting at the gate, but that work has still made
the trip and cost its CPU. Refusing it at the caller's router costs a fraction of that trip, so the
less urgent work stops competing for the CPU the critical work's trip needs. This is the reasoning of
Google's client-side throttling and of refusing early and cheaply under overload (SRE book, ch. 21),
with the delay signal of CoDel (Nichols & Jacobson, "Controlling Queue Delay", ACM Queue 2012): react
to the sojourn time of the queue, not to its length.

Signal. Each replica publishes ``RoutingStats.delay_ms``: the larger of the mean lateness of a timer
on its event loop and the mean time its calls took from the router's decision to its gate (the
``DelayLimit``'s window signal; ``ReplicaView.delay_ms``).

A router's own view (``TripDelay``). A replica starved of CPU publishes late or not at all, so its
published delay lags by a stats period or more, while bursts saturate a small host in less. The router
also measures each request's round trip from its routing decision to the replica's acceptance (Serve's
rejection protocol answers once the replica's event loop has taken the request): that trip above the
least trip seen to that replica (the path's floor: the standing delay, as CoDel reads a queue's sojourn
time against its minimum), smoothed (EWMA, ``alpha``) and decaying to zero with time (``tau_s``) when
no new trip arrives, so that a router that refuses everything does not keep a stale high value. The
delay a decision sees is the larger of the published one and this. The whole round trip counts, not
half of it as a one-way figure would: on the chaos suite's noisy neighbour (a busy process on one of
two cores) the round trip kept critical attainment at 96.7-98.7 % over handles, half of it at
85.6-87.6 %, the published delay alone at 83.0-86.3 % (two runs each).

Rule (``under_pressure``). The classes' distinct priority levels ``p_0 < p_1 < ... < p_k`` are ranked
from the least urgent: level ``p_k`` sheds once a replica's delay exceeds ``target_ms``, ``p_(k-1)``
above ``2 * target_ms``, ... , ``p_1`` above ``2^(k-1) * target_ms``; the most urgent level ``p_0`` and
never-shed classes are never refused here. So the least critical work goes first, and more of it as
the delay grows. A replica over its threshold is not a candidate for the request; when that leaves
none of the healthy replicas the request may use, the router refuses it with
``Overloaded(reason="host_saturated")``, ``retry_after_s`` one stats period (the next report may
clear it). Pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from agentic_ray.policies.types import Shedding
from agentic_ray.scheduling.types import ReplicaView, Request, Shed

__all__ = ["PressureRule", "TripDelay", "under_pressure"]

_RETRY_AFTER_S = 0.25  # about one stats period: the next report may lift it


class PressureRule:
    """The delay above which each priority level sheds at the router (module docstring).

    ``target_ms``: the least urgent level's threshold (the replicas' ``delay_target_ms``);
    ``priorities``: the policy's class priorities (any iterable of ints)."""

    __slots__ = ("target_ms", "thresholds")

    def __init__(self, target_ms: float, priorities: Iterable[int]) -> None:
        if not target_ms > 0:
            raise ValueError(f"target_ms: must be > 0, got {target_ms!r}")
        self.target_ms = float(target_ms)
        self.thresholds: dict[int, float] = {}
        self.set_priorities(priorities)

    def set_priorities(self, priorities: Iterable[int]) -> None:
        """Recompute the thresholds for a new policy's class priorities."""
        levels = sorted(set(priorities))
        k = len(levels) - 1
        # level i (0 = most urgent) sheds above target * 2^(k - i); the most urgent never
        self.thresholds = {p: self.target_ms * 2 ** (k - i) for i, p in enumerate(levels) if i > 0}

    def threshold_ms(self, request: Request) -> float | None:
        """The delay above which ``request`` is refused here (None: never)."""
        return self.threshold_for(request.priority, request.shedding)

    def threshold_for(self, priority: int, shedding: Shedding) -> float | None:
        """The delay above which work of ``priority`` and ``shedding`` is refused (None: never)."""
        if shedding is Shedding.NEVER:
            return None
        return self.thresholds.get(priority)


class TripDelay:
    """Per replica, the delay a router measured on its own path to it (module docstring).

    ``observe(rid, trip_ms, now)`` takes one round trip (decision to acceptance, ms); ``delay_ms(rid,
    now)`` is the smoothed trip above the replica's floor, decayed by
    ``exp(-(now - last) / tau_s)`` since its last trip; ``forget(rid)`` drops a replica that is gone."""

    __slots__ = ("_at", "_floor", "_value", "alpha", "tau_s")

    def __init__(self, alpha: float = 0.25, tau_s: float = 0.5) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha: must be in (0, 1], got {alpha!r}")
        if not tau_s > 0:
            raise ValueError(f"tau_s: must be > 0, got {tau_s!r}")
        self.alpha = float(alpha)
        self.tau_s = float(tau_s)
        self._floor: dict[str, float] = {}
        self._value: dict[str, float] = {}
        self._at: dict[str, float] = {}

    def observe(self, replica_id: str, trip_ms: float, now: float) -> float:
        """Take one trip to ``replica_id``; its delay now (ms)."""
        if not trip_ms >= 0.0:  # NaN or a clock step back: no sample
            return self.delay_ms(replica_id, now)
        floor = self._floor.get(replica_id)
        if floor is None or trip_ms < floor:
            floor = self._floor[replica_id] = trip_ms
        current = self.delay_ms(replica_id, now)
        value = current + self.alpha * ((trip_ms - floor) - current)
        self._value[replica_id] = value
        self._at[replica_id] = now
        return value

    def delay_ms(self, replica_id: str, now: float) -> float:
        """The smoothed delay above the floor, decayed since the last trip (0.0 for an unknown replica)."""
        value = self._value.get(replica_id)
        if value is None:
            return 0.0
        age = now - self._at[replica_id]
        return value * math.exp(-age / self.tau_s) if age > 0 else value

    def forget(self, replica_id: str) -> None:
        """Drop what is known of ``replica_id``."""
        self._floor.pop(replica_id, None)
        self._value.pop(replica_id, None)
        self._at.pop(replica_id, None)


def under_pressure(
    request: Request,
    replicas: list[ReplicaView],
    rule: PressureRule | None,
    delay_of: Callable[[ReplicaView], float] | None = None,
) -> tuple[list[ReplicaView], Shed | None]:
    """The replicas whose delay is within ``request``'s threshold (all of them when it has none), and
    ``Shed("host_saturated")`` when that leaves none of the healthy replicas it may use. A replica's delay
    is its view's ``delay_ms``, or ``delay_of(view)`` when given."""
    if rule is None:
        return replicas, None
    limit = rule.threshold_ms(request)
    if limit is None:
        return replicas, None
    if delay_of is None:
        calm = [r for r in replicas if r.delay_ms <= limit]
    else:
        calm = [r for r in replicas if delay_of(r) <= limit]
    if len(calm) == len(replicas):
        return replicas, None
    allows = request.allows
    if any(r.healthy and (allows is None or allows(r.attrs)) for r in calm):
        return calm, None
    if not any(r.healthy and (allows is None or allows(r.attrs)) for r in replicas):
        return replicas, None  # nothing eligible: the router's own decision names why
    return replicas, Shed("host_saturated", _RETRY_AFTER_S, request.rule_ids)
