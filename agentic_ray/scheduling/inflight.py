"""An in-flight limit with a bounded priority queue: the front door's admission when the proxy is the bottleneck.

Why. On a small host Serve's HTTP proxy saturates before the replicas do: each request costs it several
milliseconds of CPU, and every request it has let in shares its event loop first come, first served,
before any policy applies. With 60 closed-loop clients on two slow cores the proxy carried every one of
them at once and critical requests (budget 100 ms) missed in the proxy's queues (critical attainment
75.7-99.3 % in four runs). Holding all but a few at the door, in priority order, costs the proxy almost
nothing per held request (a future and a timer), keeps its loop short, and lets the most urgent waiting
request in first whenever one ends.

What. ``InflightQueue`` admits at most ``limit`` requests at once; the rest wait, ordered by class
priority (lower first), then deadline, then arrival (a concurrency limit in the manner of Netflix's
``concurrency-limits`` and Envoy's adaptive concurrency filter, with a priority queue in front of it
instead of an immediate refusal; SRE book ch. 21: reject the least important work first). Waiting is
bounded by ``max_waiting``: an arrival into a full queue refuses the least urgent waiter (latest deadline
of the lowest priority), or itself when none waiting is less urgent. ``admit_now`` counts a request
let in past the limit and the queue (the door's classes that are never shed: never held, but counted, so
that less urgent work waits while they fill the limit). A waiter leaves
when its caller gives up (``leave``: its deadline passed). ``release`` ends an admitted request and
admits the most urgent waiters that fit. ``set_limit`` resizes (the deployment's replicas changed).

Pure: no clock, no asyncio; tickets are the caller's opaque objects (the door uses futures).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["InflightQueue"]

T = TypeVar("T", bound=Hashable)


class InflightQueue(Generic[T]):
    """At most ``limit`` admitted at once, the rest waiting by (priority, deadline, arrival), at most
    ``max_waiting`` of them (module docstring)."""

    def __init__(self, limit: int, max_waiting: int) -> None:
        self.limit, self.max_waiting = _sizes(limit, max_waiting)
        self.inflight = 0
        self._seq = 0
        self._waiting: list[tuple[int, float, int, T]] = []  # sorted: most urgent first
        self._entries: dict[T, tuple[int, float, int, T]] = {}

    @property
    def waiting(self) -> int:
        """How many wait."""
        return len(self._waiting)

    def arrive(self, ticket: T, priority: int, deadline: float) -> tuple[bool, list[T]]:
        """A request arrives: ``(admitted now, tickets refused)``. Refused are the waiter it displaced, or
        ``ticket`` itself when the queue is full of more urgent work; otherwise ``ticket`` waits (admitted
        False, nothing refused) until ``release`` admits it or ``leave`` removes it."""
        if self.inflight < self.limit and not self._waiting:
            self.inflight += 1
            return True, []
        self._seq += 1
        entry = (priority, deadline, self._seq, ticket)
        refused: list[T] = []
        if len(self._waiting) >= self.max_waiting:
            if not self._waiting or _key(entry) >= _key(self._waiting[-1]):
                return False, [ticket]
            victim = self._waiting[-1]
            self._remove(victim)
            refused.append(victim[3])
        bisect.insort(self._waiting, entry, key=_key)
        self._entries[ticket] = entry
        return False, refused

    def admit_now(self) -> None:
        """Count one admitted at once, past the limit and the queue (a class that is never shed)."""
        self.inflight += 1

    def leave(self, ticket: T) -> bool:
        """A waiter gives up (deadline, caller gone): True when it was waiting (removed), False when it
        was not (already admitted or refused)."""
        entry = self._entries.get(ticket)
        if entry is None:
            return False
        self._remove(entry)
        return True

    def release(self, alive: Callable[[T], bool] = lambda _: True) -> list[T]:
        """An admitted request ended: the waiters admitted in its place, most urgent first (a waiter for
        which ``alive`` is False is dropped instead)."""
        self.inflight = max(0, self.inflight - 1)
        return self._admit(alive)

    def set_limit(self, limit: int, max_waiting: int, alive: Callable[[T], bool] = lambda _: True) -> list[T]:
        """Resize; the waiters a larger limit admits at once. A smaller limit admits nothing more until
        enough admitted requests end."""
        self.limit, self.max_waiting = _sizes(limit, max_waiting)
        return self._admit(alive)

    def _admit(self, alive: Callable[[T], bool]) -> list[T]:
        admitted: list[T] = []
        while self._waiting and self.inflight < self.limit:
            entry = self._waiting.pop(0)
            del self._entries[entry[3]]
            if alive(entry[3]):
                self.inflight += 1
                admitted.append(entry[3])
        return admitted

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
