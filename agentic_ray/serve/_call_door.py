"""The calling process's door for handle calls: at most a few calls per replica slot in Serve's path at once.

Why. Serve's router in a calling process queues the calls it cannot place yet first come, first served
(``RequestRouter._pending_requests_to_route``), and works on at most two per replica at a time (its
routing tasks). When calls of a class that is never shed arrive faster than the replicas serve them
(the chaos suite's overload ladder at 10x capacity: critical calls alone are twice it), that queue
stands: every call waits behind the ones before it, which expire one by one, and the call let through
next is the oldest, already too late to finish in budget. On a slow host this latched: in the quick
ladder's 10x step critical calls expired in the caller's router (``deadline_passed``, and
``deadline_exceeded`` for calls it never decided) while the replicas had room, and goodput fell to
0.5-16 requests/s against ~45 where it held.

What. The proxy's door (``serve._door``) holds HTTP requests so; this is the same admission for handle
calls, in ``serve.call``: per deployment and event loop of this process, a call goes into Serve's path
while fewer than ``AGENTIC_CALL_INFLIGHT_PER_SLOT`` (default ``3``; ``0`` turns it off) times the
deployment's replica slots (``door_slots``, which its router in this process sums from what the replicas
publish; at least ``MIN_INFLIGHT``) of its class's priority or a more urgent one are in it
(``scheduling.inflight.InflightQueue``). The rest wait here, where a waiting call costs a future, and
go in by priority, then deadline; once a priority's queue stands (more waiters than the limit) its
latest deadline goes first (adaptive LIFO), so the calls let in are fresh ones. A waiter whose deadline
comes closer than the time a call takes once in (``path_s``, smoothed) gives up here with
``BudgetExhausted(reason="deadline_exceeded")`` instead of being sent to miss; a waiter displaced from a
full queue (``WAITING_PER_INFLIGHT`` times the limit) by more urgent work is refused with
``Overloaded(reason="caller_queue_full")``, except that a class that is never shed goes in past the
limit instead. A call of a class that may be shed is refused at once when it cannot go in, with
``Overloaded(reason="caller_queue_delay")``: by default it does not wait at all. With
``AGENTIC_CALL_QUEUE_INTERVAL_MS`` set it waits at most that long while the queue has been empty within
that interval, and ``TARGET_S`` (5 ms) once it has stood longer (controlled delay,
``scheduling.inflight.ControlledDelay``; Maurer's pairing with adaptive LIFO). The proxy's door holds
HTTP requests instead, because closed-loop HTTP clients come straight back after a refusal; a handle
call's caller is the program itself, and a refusal that waited is a slow one. ``serve.call`` puts a call
let in after waiting to the router's early refusal again (the room it was judged on may be gone).
Before the deployment's router in this process has seen its replicas, calls pass.

Measured (the chaos suite's quick runs, noisy neighbour then the handle ladder at 2x / 4x / 10x, on a
host where a 10M-iteration ``python3 -c`` loop took 0.56 s; alternating order). On (waiters that may be shed bounded at
100 ms) against ``AGENTIC_CALL_INFLIGHT_PER_SLOT=0``, three pairs: requests/s in budget at 10x 57.0 /
56.2 / 56.2 against 28.2 / 38.5 / 32.0, critical attainment there 0.44-0.47 against 0.23-0.27 (at most
0.5 fits: critical demand alone is twice capacity), at 4x 0.85-0.88 against 0.79-0.84; 2x and 4x
goodput equal (57.5-58.0 against 56.8-58.5); noisy neighbour 402 / 430 / 528 requests in budget against
340 / 454 / 458, critical 0.889 / 1.0 / 0.994 against 0.876 / 0.889 / 0.987. But refusals then took 100 ms
at the 99th percentile (the bound) against 5.6-154 ms. Then the bound, alternating 0 / 20 / 100 / 100 /
20 / 0 ms: refusal p99 at 2x / 4x / 10x 5.36 / 3.04 / 1.06 and 2.65 / 1.05 / 0.80 ms at 0, 22.8 / 23.6 /
20.6 and 27.2 / 23.7 / 21.0 at 20, 102 / 103 / 101 and 104 / 102 / 101 at 100, for the same goodput (10x
55.5 / 55.0, 55.5 / 53.5, 56.8 / 55.5) and noisy neighbour (critical 1.0 / 0.994, 1.0 / 0.980, 0.994 /
0.928). Hence no wait by default. Before this, the 10x step latched on that host (0.5-48.5 requests/s in
eighteen runs): Serve's router queued the critical calls first come, first served and let the oldest
through, already too late.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import weakref
from typing import Any

from agentic_ray.errors import AdmissionError, BudgetExhausted, Overloaded
from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.inflight import ControlledDelay, InflightQueue
from agentic_ray.serve._meta import env_number

__all__ = ["ENV", "Entered", "enter", "stats"]

ENV = "AGENTIC_CALL_INFLIGHT_PER_SLOT"  # in-flight limit per replica slot of the deployment; 0: none
DEFAULT_PER_SLOT = 3.0
MIN_INFLIGHT = 8  # as the proxy's door: a replica of one slot and short calls needs more than 3 in flight
WAITING_PER_INFLIGHT = 8  # calls held at most, per unit of the in-flight limit
PATH_ALPHA = 0.1  # smoothing of the time a call takes once in
RETRY_AFTER_S = 1.0
INTERVAL_ENV = "AGENTIC_CALL_QUEUE_INTERVAL_MS"  # how long a waiter that may be shed waits in a burst
TARGET_S = 0.005  # a waiter that may be shed waits this long at most once the queue stands...
INTERVAL_S = env_number(os.environ.get(INTERVAL_ENV), 0.0) / 1000.0  # ...longer than this; this long before


class _Door:
    """One deployment's limit on one event loop: the queue, and how long a call takes once in."""

    __slots__ = ("delay", "delayed", "expired", "full", "path_s", "queue")

    def __init__(self, limit: int) -> None:
        self.queue: InflightQueue[asyncio.Future] = InflightQueue(limit, WAITING_PER_INFLIGHT * limit)
        self.delay = ControlledDelay(min(TARGET_S, INTERVAL_S), INTERVAL_S)
        self.path_s: float | None = None
        self.expired = 0
        self.full = 0
        self.delayed = 0


# per event loop, per deployment id: a loop that ends takes its doors with it
_doors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, _Door]] = weakref.WeakKeyDictionary()


class Entered:
    """A call let into Serve's path: ``done(accepted)`` when it ended (``accepted``: it answered, so its time
    counts toward ``path_s``)."""

    __slots__ = ("_door", "_priority", "_started", "waited")

    def __init__(self, door: _Door, priority: int, waited: bool = False) -> None:
        self._door, self._priority, self._started = door, priority, time.time()
        self.waited = waited  # it waited here: what its caller judged on arrival may have changed

    def done(self, accepted: bool) -> None:
        door = self._door
        if accepted:
            took = time.time() - self._started
            door.path_s = took if door.path_s is None else door.path_s + PATH_ALPHA * (took - door.path_s)
        for ticket in door.queue.release(self._priority, _waiting):
            ticket.set_result(True)
        door.delay.observe(door.queue.waiting, time.time())


def per_slot() -> float:
    """The in-flight limit per replica slot from ``ENV`` (a number >= 0; ``inf`` or 0: off)."""
    return env_number(os.environ.get(ENV), DEFAULT_PER_SLOT)


async def enter(key: Any, router: Any, qos: QosClass, deadline: float) -> Entered | None:
    """Wait for room in Serve's path for a call of ``qos`` to the deployment ``key`` (routed by ``router``,
    this process's agentic router of it): an ``Entered`` to finish with ``done``; None when no limit applies
    (off, no replica known yet). Raises ``BudgetExhausted`` (``deadline_exceeded``) when too little of its
    budget is left to go in, ``Overloaded`` (``caller_queue_full``) when more urgent calls displaced it."""
    share = per_slot()
    slots = getattr(router, "door_slots", 0)
    if not 0 < share < math.inf or not slots:
        return None
    loop = asyncio.get_running_loop()
    door = _door_of(loop, key, max(MIN_INFLIGHT, math.ceil(share * slots)))
    never = qos.shedding is Shedding.NEVER
    ticket = loop.create_future()
    now = time.time()
    door.delay.observe(door.queue.waiting, now)
    admitted, refused = door.queue.arrive(ticket, qos.priority, deadline)
    for other in refused:
        if other is not ticket and not other.done():
            other.set_result(False)
    if admitted:
        return Entered(door, qos.priority)
    if refused and refused[-1] is ticket:
        if never:
            door.queue.admit_now(qos.priority)
            return Entered(door, qos.priority)
        door.full += 1
        raise _full(qos.name)
    left_s = max(0.0, deadline - (door.path_s or 0.0) - now)
    bound_s = left_s if never else min(left_s, door.delay.max_wait_s(now))
    if bound_s <= 0:  # no wait at all (by default, a call that may be shed): no future to await and cancel
        raise _gave_up(door, ticket, qos.name, now, bound_s < left_s)
    try:
        granted = await asyncio.wait_for(ticket, bound_s)
    except asyncio.TimeoutError:
        raise _gave_up(door, ticket, qos.name, now, bound_s < left_s) from None
    except BaseException:  # the caller went away while it waited
        if not door.queue.leave(ticket) and ticket.done() and not ticket.cancelled() and ticket.result():
            Entered(door, qos.priority).done(False)
        raise
    if not granted:
        if never:  # displaced from a full queue by more urgent work: in past the limit
            door.queue.admit_now(qos.priority)
            return Entered(door, qos.priority)
        door.full += 1
        raise _full(qos.name)
    entered = Entered(door, qos.priority, waited=True)
    if time.time() > deadline - (door.path_s or 0.0):  # calls got slower while it waited
        entered.done(False)
        door.expired += 1
        raise _expired(qos.name, door.path_s)
    return entered


def _gave_up(door: _Door, ticket: asyncio.Future, qos: str, since: float, delayed: bool) -> AdmissionError:
    """A waiter leaves the queue at its bound, counted: refused (``delayed``: controlled delay) or out of time."""
    door.queue.leave(ticket)
    door.delay.observe(door.queue.waiting, time.time())
    if delayed:
        door.delayed += 1
        return _delayed(qos, time.time() - since)
    door.expired += 1
    return _expired(qos, door.path_s)


def _door_of(loop: asyncio.AbstractEventLoop, key: Any, limit: int) -> _Door:
    """The door of ``key`` on ``loop``, sized to ``limit`` now (a larger limit lets waiters in at once)."""
    doors = _doors.setdefault(loop, {})
    door = doors.get(key)
    if door is None:
        door = doors[key] = _Door(limit)
    elif door.queue.limit != limit:
        for ticket in door.queue.set_limit(limit, WAITING_PER_INFLIGHT * limit, _waiting):
            ticket.set_result(True)
    return door


def _waiting(ticket: asyncio.Future) -> bool:
    return not ticket.done()


def _full(qos: str) -> Overloaded:
    return Overloaded(f"the deployment is at this process's in-flight limit and its queue here is full of more "
                      f"urgent work than {qos}", reason="caller_queue_full", retry_after_s=RETRY_AFTER_S)  # fmt: skip


def _delayed(qos: str, waited_s: float) -> Overloaded:
    if INTERVAL_S <= 0:
        detail = f"the deployment is at this process's in-flight limit for {qos} calls; refused at once"
    else:
        detail = (f"the deployment is at this process's in-flight limit and its queue here has stood for a while; "
                  f"{qos} refused after waiting {waited_s * 1000.0:.0f} ms (controlled delay)")  # fmt: skip
    return Overloaded(detail, reason="caller_queue_delay", retry_after_s=RETRY_AFTER_S)


def _expired(qos: str, path_s: float | None) -> BudgetExhausted:
    took = f"{path_s * 1000.0:.0f} ms" if path_s is not None else "its time"
    detail = (f"held in the calling process at the deployment's in-flight limit until less of its budget was "
              f"left than a {qos} call takes once in ({took})")  # fmt: skip
    return BudgetExhausted(detail, reason="deadline_exceeded")


def stats() -> dict[str, dict[str, float]]:
    """Per deployment (``"app/name"``), over this process's event loops: the limit, calls in and waiting,
    and the totals given up (``expired_total``) and refused for a full queue (``full_total``)."""
    out: dict[str, dict[str, float]] = {}
    for doors in list(_doors.values()):
        for key, door in list(doors.items()):
            name = f"{getattr(key, 'app_name', '')}/{getattr(key, 'name', key)}"
            row = out.setdefault(name, {"limit": 0, "inflight": 0, "waiting": 0, "expired_total": 0, "full_total": 0,
                                        "delayed_total": 0})  # fmt: skip
            row["limit"] = door.queue.limit
            row["inflight"] += door.queue.inflight
            row["waiting"] += door.queue.waiting
            row["expired_total"] += door.expired
            row["full_total"] += door.full
            row["delayed_total"] += door.delayed
    return out
