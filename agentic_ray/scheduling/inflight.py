"""An in-flight limit with a bounded priority queue: the front door's admission when the proxy is the bottleneck.

Why. On a small host Serve's HTTP proxy saturates before the replicas do: each request costs it several
milliseconds of CPU, and every request it has let in shares its event loop first come, first served,
before any policy applies. With 60 closed-loop clients on two slow cores the proxy carried every one of
them at once and critical requests (budget 100 ms) missed in the proxy's queues (critical attainment
75.7-99.3 % in four runs). Holding all but a few at the door, in priority order, costs the proxy almost
nothing per held request (a future and a timer), keeps its loop short, and lets the most urgent waiting
request in first whenever one ends.

What. ``InflightQueue`` admits a request while fewer than ``limit`` requests of its priority or a more
urgent one are in (a concurrency limit in the manner of Netflix's ``concurrency-limits`` and Envoy's
adaptive concurrency filter, with a priority queue in front of it instead of an immediate refusal; SRE
book ch. 21: reject the least important work first). Counting only the same or more urgent work means less
urgent work already in never holds a more urgent arrival back (the router behind the door serves the more
urgent first anyway), while the least urgent class sees the whole count: in all, at most ``limit`` per
priority level are in. The rest wait, ordered by class priority (lower first), then deadline, then
arrival.

Within a priority, the order adapts to overload (Maurer, "Fail at Scale", ACM Queue 13(8), 2015: adaptive
LIFO). While fewer of a priority wait than ``limit`` (less than one round of what is let in), the earliest
deadline goes first (EDF, best while every waiter can still make it). Once more wait, the queue is
standing: serving its oldest makes every answer as late as the queue is long, and under sustained overload
the same capacity serves the same number either way. So the latest deadline goes first: answers stay
fresh, and the oldest waiters, which would be served late, expire or are refused. Waiting is bounded by
``max_waiting``: an arrival into a full queue refuses the least valuable waiter of the lowest priority
waiting (the latest deadline, or while that priority is standing the earliest), or itself when it is less
urgent than every waiter, or of that priority and not standing with the latest deadline. ``admit_now``
counts a request let in past the limit and the queue (the door lets a class that is never shed in so when
the queue has no room for it). A waiter leaves when its caller gives up (``leave``: its deadline passed).
``release`` ends an admitted request and admits the most urgent waiters that fit; a waiter that ``ready``
says may not go in yet (the door: its class has no room at any replica, so the router would refuse it)
holds back the rest of its priority but not less urgent work. ``set_limit`` resizes (the deployment's
replicas changed). With ``lifo`` False (or a set of priorities that keep it), a standing queue stays
earliest deadline first: for a queue that admits only what a ``WaitForecast`` says will make its deadline.

How long a waiter that may be refused waits is bounded the way Maurer's article pairs with adaptive LIFO
(controlled delay, after Nichols and Jacobson's CoDel, ACM Queue 10(5), 2012): ``ControlledDelay`` allows
``interval_s`` while the queue has been empty within the last ``interval_s``, and only ``target_s`` once
it has stood longer. A burst waits to be absorbed; a queue that stands under sustained overload refuses
its waiters after milliseconds instead of after their whole budget, so a refusal is quick and the waiter
let in is a fresh one.

Pure: no clock, no asyncio; tickets are the caller's opaque objects (the door uses futures).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ControlledDelay", "InflightQueue", "WaitForecast"]

T = TypeVar("T", bound=Hashable)


class InflightQueue(Generic[T]):
    """At most ``limit`` admitted at once per priority and above, the rest waiting by (priority, deadline,
    arrival), at most ``max_waiting`` of them (module docstring)."""

    def __init__(self, limit: int, max_waiting: int, *, lifo: bool | frozenset[int] = True) -> None:
        self.limit, self.max_waiting = _sizes(limit, max_waiting)
        # which priorities serve a standing queue latest deadline first: True all, False none (earliest
        # deadline first always, for a queue that admits only what a ``WaitForecast`` says fits), or a set
        self.lifo = lifo
        # whether a waiter may go in now (its class has room downstream); one that may not holds back
        # the rest of its priority, not the less urgent ones. None: every waiter may
        self.ready: Callable[[T], bool] | None = None
        self._admitted: dict[int, int] = {}  # priority -> how many of it are in
        self._seq = 0
        self._waiting: list[tuple[int, float, int, T]] = []  # sorted: most urgent first
        self._entries: dict[T, tuple[int, float, int, T]] = {}

    @property
    def inflight(self) -> int:
        """How many are in, of every priority."""
        return sum(self._admitted.values())

    def inflight_upto(self, priority: int) -> int:
        """How many are in of ``priority`` or a more urgent one (lower number): what ``limit`` bounds for it."""
        return sum(n for p, n in self._admitted.items() if p <= priority)

    @property
    def waiting(self) -> int:
        """How many wait."""
        return len(self._waiting)

    def position(self, ticket: T) -> int | None:
        """How many waiters are ahead of waiting ``ticket`` in the queue's order (more urgent priorities,
        then earlier deadlines of its own); None when it is not waiting."""
        entry = self._entries.get(ticket)
        return None if entry is None else bisect.bisect_left(self._waiting, _key(entry), key=_key)

    def arrive(self, ticket: T, priority: int, deadline: float) -> tuple[bool, list[T]]:
        """A request arrives: ``(admitted now, tickets refused)``. Refused are the waiter it displaced, or
        ``ticket`` itself when the queue is full of more urgent work; otherwise ``ticket`` waits (admitted
        False, nothing refused) until ``release`` admits it or ``leave`` removes it."""
        if self.inflight_upto(priority) < self.limit and not (self._waiting and self._waiting[0][0] <= priority):
            self._count(priority, 1)
            return True, []
        self._seq += 1
        entry = (priority, deadline, self._seq, ticket)
        refused: list[T] = []
        if len(self._waiting) >= self.max_waiting:
            if not self._waiting:
                return False, [ticket]
            lowest = self._waiting[-1][0]
            start = self._block_start(lowest)
            standing = self._lifo(lowest) and len(self._waiting) - start > self.limit
            if priority > lowest or (priority == lowest and not standing and _key(entry) >= _key(self._waiting[-1])):
                return False, [ticket]
            victim = self._waiting[start] if standing else self._waiting[-1]
            self._remove(victim)
            refused.append(victim[3])
        bisect.insort(self._waiting, entry, key=_key)
        self._entries[ticket] = entry
        return False, refused

    def admit_now(self, priority: int) -> None:
        """Count one of ``priority`` admitted at once, past the limit and the queue (a class that is never
        shed, for which the queue had no room)."""
        self._count(priority, 1)

    def leave(self, ticket: T) -> bool:
        """A waiter gives up (deadline, caller gone): True when it was waiting (removed), False when it
        was not (already admitted or refused)."""
        entry = self._entries.get(ticket)
        if entry is None:
            return False
        self._remove(entry)
        return True

    def release(self, priority: int, alive: Callable[[T], bool] = lambda _: True) -> list[T]:
        """An admitted request of ``priority`` ended: the waiters admitted in its place, most urgent first
        (a waiter for which ``alive`` is False is dropped instead)."""
        self._count(priority, -1)
        return self._admit(alive)

    def set_limit(self, limit: int, max_waiting: int, alive: Callable[[T], bool] = lambda _: True) -> list[T]:
        """Resize; the waiters a larger limit admits at once. A smaller limit admits nothing more until
        enough admitted requests end."""
        self.limit, self.max_waiting = _sizes(limit, max_waiting)
        return self._admit(alive)

    def _admit(self, alive: Callable[[T], bool]) -> list[T]:
        admitted: list[T] = []
        start, ready = 0, self.ready  # start: the first waiter of the most urgent priority not held back
        # that priority's count covers every less urgent one's too: when it does not fit, none does
        while start < len(self._waiting) and self.inflight_upto(self._waiting[start][0]) < self.limit:
            priority = self._waiting[start][0]
            end = self._block_start(priority + 1)
            standing = self._lifo(priority) and end - start > self.limit
            index = end - 1 if standing else start  # standing: latest deadline first
            ticket = self._waiting[index][3]
            if ready is not None and alive(ticket) and not ready(ticket):
                start = end  # no room for it now: its priority waits, a less urgent one may go in
                continue
            entry = self._waiting.pop(index)
            del self._entries[ticket]
            if alive(ticket):
                self._count(entry[0], 1)
                admitted.append(ticket)
        return admitted

    def _lifo(self, priority: int) -> bool:
        lifo = self.lifo
        return lifo if isinstance(lifo, bool) else priority in lifo

    def _count(self, priority: int, delta: int) -> None:
        n = self._admitted.get(priority, 0) + delta
        if n > 0:
            self._admitted[priority] = n
        else:
            self._admitted.pop(priority, None)

    def _block_start(self, priority: int) -> int:
        """Index of the first waiter of ``priority`` or a less urgent one."""
        return bisect.bisect_left(self._waiting, (priority, -math.inf, -1), key=_key)

    def _remove(self, entry: tuple[int, float, int, T]) -> None:
        i = bisect.bisect_left(self._waiting, _key(entry), key=_key)
        del self._waiting[i]
        del self._entries[entry[3]]


def _sizes(limit: int, max_waiting: int) -> tuple[int, int]:
    """``(limit, max_waiting)``, or ValueError naming both when ``limit < 1`` or ``max_waiting < 0``."""
    if limit < 1 or max_waiting < 0:
        raise ValueError(f"limit must be >= 1 and max_waiting >= 0, got {limit} and {max_waiting}")
    return limit, max_waiting


def _key(entry: tuple[int, float, int, object]) -> tuple[int, float, int]:
    return entry[0], entry[1], entry[2]


class ControlledDelay:
    """The longest a waiter that may be refused should wait (module docstring): ``interval_s`` while the
    queue has been empty within the last ``interval_s``, else ``target_s``. Tell it the queue's length
    before each arrival and after each departure (``observe``); times are the caller's clock, seconds."""

    def __init__(self, target_s: float = 0.005, interval_s: float = 0.1) -> None:
        if not 0 <= target_s <= interval_s:
            raise ValueError(f"need 0 <= target_s <= interval_s, got {target_s} and {interval_s}")
        self.target_s, self.interval_s = target_s, interval_s
        self._empty_at = -math.inf

    def observe(self, waiting: int, now: float) -> None:
        """The queue holds ``waiting`` at ``now`` (before an arrival joins it, after a waiter leaves it)."""
        if waiting == 0:
            self._empty_at = now

    def standing(self, now: float) -> bool:
        """The queue has not been empty for ``interval_s`` or longer (never, when ``interval_s`` is infinite)."""
        return self.interval_s < math.inf and now - self._empty_at >= self.interval_s

    def max_wait_s(self, now: float) -> float:
        """How long a waiter joining at ``now`` may wait."""
        return self.target_s if self.standing(now) else self.interval_s


class WaitForecast:
    """How long a waiter at an ``InflightQueue`` will wait, from where it stands, so a request that would
    wait past its deadline is refused when it arrives instead of after waiting (module docstring of
    ``serve._door``: a refusal's latency).

    The queue drains at ``limit / path_s`` requests a second (Little's law: ``limit`` in flight, each taking
    ``path_s`` once let in), or at the rate requests were let in lately when that is more (the queue's
    per-priority counting lets more urgent work in past what less urgent work fills, so more than ``limit`` may
    be in: measured, one proxy's door let ~290 a second in where ``limit / path_s`` said ~150, and sheddable
    requests were refused that would have been served). Work of a more urgent priority that comes later still
    goes ahead, so a waiter of priority ``p`` sees only what the more urgent classes leave of that rate (the
    effective service rate of a lower class under priority scheduling; Kleinrock, Queueing Systems vol. 2, 1976,
    sec. 3.6), at least ``MIN_SHARE`` of it: ``wait = (ahead + 1) / max(rate - urgent let in, MIN_SHARE x
    rate)``, ``ahead`` the waiters in front of it in earliest-deadline order (an ``InflightQueue``
    with ``lifo=False``). The more urgent work counted is what was let in (``let_in``: it took the rate),
    not what arrived: with closed-loop clients a refused request comes straight back as a new arrival,
    and counting arrivals made every refusal forecast the next (measured: 120 closed-loop clients on one
    proxy fell from ~290 to 8.5 requests/s in budget). Rates are per priority, exponentially decayed
    counts over ``tau_s`` (events a second). Admission by predicted completion time at the door of a
    server is the approach of Elnikety et al., "A method for transparent admission control and request
    scheduling in e-commerce web sites", WWW 2004. Pure: the caller passes ``now`` (seconds, its clock)."""

    MIN_SHARE = 0.05

    def __init__(self, tau_s: float = 1.0) -> None:
        if not tau_s > 0:
            raise ValueError(f"tau_s: must be > 0, got {tau_s!r}")
        self.tau_s = tau_s
        self._rates: dict[int, tuple[float, float]] = {}  # priority -> (decayed rate, when)

    def let_in(self, priority: int, now: float) -> None:
        """A request of ``priority`` was let in at ``now`` (at once or after waiting)."""
        rate = self.rate(priority, now) + 1.0 / self.tau_s
        self._rates[priority] = (rate, now)

    def rate(self, priority: int, now: float) -> float:
        """Requests of ``priority`` let in a second, decayed to ``now``."""
        value, at = self._rates.get(priority, (0.0, now))
        return value * math.exp(-max(0.0, now - at) / self.tau_s)

    def urgent_rate(self, priority: int, now: float) -> float:
        """Requests let in a second of every priority more urgent than ``priority`` (a lower number)."""
        return sum(self.rate(p, now) for p in list(self._rates) if p < priority)

    def wait_s(self, ahead: int, priority: int, limit: int, path_s: float, now: float) -> float:
        """The forecast wait of a waiter of ``priority`` with ``ahead`` in front of it, at a limit of
        ``limit`` in flight each taking ``path_s`` (0 when ``path_s`` is not positive: nothing measured to
        forecast from)."""
        if not path_s > 0:
            return 0.0
        service = max(limit / path_s, sum(self.rate(p, now) for p in list(self._rates)))
        spare = max(service - self.urgent_rate(priority, now), self.MIN_SHARE * service)
        return (ahead + 1) / spare
