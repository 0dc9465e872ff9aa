"""Adaptive throttling: refuse locally the share of requests the backend would refuse anyway.

From the Google SRE book, "Handling Overload" (ch. 21), "Client-Side Throttling": a caller keeps, over a
recent window, how many requests it attempted (``requests``) and how many the backend accepted
(``accepts``). While the backend accepts nearly everything the two are equal; when it starts refusing,
the caller keeps sending until ``requests`` reaches ``k`` times ``accepts``, and beyond that refuses each
new request itself with probability::

    max(0, (requests - k * accepts) / (requests + 1))

so about ``k`` times what the backend accepts still reaches it (``k`` = 2 in the book: half of what
reaches the backend is still refused there, which keeps the estimate fresh, and the backend sees twice
the load it can take at most). A local refusal costs almost nothing, where a refusal by the backend costs
a trip through everything in front of it: for HTTP, Serve's proxy path, about as dear as a request that
is served. When the backend recovers, its accepts rise and the probability falls back to 0 within one
window. Requests refused locally count as attempted (the book's definition), so the estimate does not
collapse while most requests are refused.

One change from the book: a request that reached the backend counts when its outcome is known
(``outcome``), not when it is sent. The book's window (two minutes) is long next to an RPC; here the
window is seconds and an answer may take as long (work that may wait seconds in a queue), so counting
requests at sending and accepts at answering would refuse work at the start of every slow stream of
requests, before any answer could come back (at the first request: probability 1/2).

Criticality. The same chapter has a backend refuse requests of a criticality only while it refuses all
of every lower criticality. ``refusal_probability`` applies that one stage earlier, per class: while the
backend refuses most of a class anyway (it accepted less than ``1/k`` of the class's requests that
reached it: ``miss_ratio`` over those only, refused or answered after the deadline), a request of the
class is refused locally with the larger of its own probability and the ``miss_ratio`` of each more
urgent class. Less urgent work the backend is turning away anyway is then turned away before it adds
to what delays the critical work, in proportion to how much critical work misses; as critical work
recovers, the share falls back to the class's own. While the backend accepts a class, its requests are
not refused for another class's misses: in a closed loop, a client refused at once comes straight back,
so a refusal adds load instead of removing it (measured: 120 closed-loop HTTP clients without that
condition latched at 0 % critical attainment, the proxy answering ~1,000 refusals a second).

Never-shed classes are never refused here. Tried: refusing one by the book's rule on its own counts while
the backend misses most of it. Where misses come from too much of the class (the handle ladder at 10x
capacity: critical alone is twice the capacity) it held goodput at 40.0 and 21.8 requests/s against 1.5
and 3.8 (quick runs on a host about half as fast as the figures above); where they come from a slow
host (the noisy neighbour), they do not fall as fewer requests reach the backend, so the refusals fed
themselves (82 critical requests refused in one run, critical attainment 49.0 and 17.7 % against 38.6
and 51.6 %). Refusing critical work for a slow host is what never-shed forbids, so it was left out.

``AdaptiveThrottle`` keeps the two counts in ``buckets`` buckets covering ``window_s`` (a sliding window
advanced by ``now``). ``ClassThrottles`` keeps one per backend (a route, a deployment) and class, and
applies ``refusal_probability`` across a backend's classes: the proxy's front door (``serve._door``) and
``serve.call`` (handle calls) each keep one. Pure: time comes in as ``now``, randomness as a seeded
``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping

from agentic_ray.policies.types import QosClass, Shedding

__all__ = ["MIN_REQUESTS", "AdaptiveThrottle", "ClassThrottles", "refusal_probability"]

MIN_REQUESTS = 5  # requests of a more urgent class in the window before its misses count


class AdaptiveThrottle:
    """Requests and accepts over a sliding window, and the refusal probability they give."""

    def __init__(self, k: float = 2.0, window_s: float = 2.0, buckets: int = 10) -> None:
        if not (math.isfinite(k) and k >= 1.0):
            raise ValueError(f"k: must be a finite number >= 1, got {k!r}")
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s: must be a finite number > 0, got {window_s!r}")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets: must be an integer >= 1, got {buckets!r}")
        self.k = k
        self.width = window_s / buckets
        self._requests = [0] * buckets
        self._reached = [0] * buckets
        self._accepts = [0] * buckets
        self._slot = 0  # absolute bucket number of the newest bucket
        self.requests = 0  # totals over the window: attempted (refused locally or not),
        self.reached = 0  # reached the backend and ended,
        self.accepts = 0  # and of those, accepted

    def _advance(self, now: float) -> int:
        """Move the window to ``now``; the index of ``now``'s bucket."""
        slot = math.floor(now / self.width)
        n = len(self._requests)
        if slot > self._slot:
            for s in range(max(self._slot + 1, slot - n + 1), slot + 1):
                i = s % n
                self.requests -= self._requests[i]
                self.reached -= self._reached[i]
                self.accepts -= self._accepts[i]
                self._requests[i] = self._reached[i] = self._accepts[i] = 0
            self._slot = slot
        return self._slot % n

    def outcome(self, now: float, accepted: bool) -> None:
        """A request that reached the backend ended: ``accepted`` when the backend answered it (did not
        refuse it for overload or time)."""
        i = self._count(now)
        self._reached[i] += 1
        self.reached += 1
        if accepted:
            self._accepts[i] += 1
            self.accepts += 1

    def _count(self, now: float) -> int:
        """Count an attempted request at ``now``; the index of its bucket."""
        i = self._advance(now)
        self._requests[i] += 1
        self.requests += 1
        return i

    def probability(self, now: float) -> float:
        """The probability of refusing the next request locally (module docstring)."""
        self._advance(now)
        return max(0.0, (self.requests - self.k * self.accepts) / (self.requests + 1))

    def miss_ratio(self, now: float, min_requests: int = MIN_REQUESTS) -> float:
        """The share of the window's requests that reached the backend and were not accepted (0 with
        fewer than ``min_requests`` of them)."""
        self._advance(now)
        if self.reached < min_requests:
            return 0.0
        return 1.0 - self.accepts / self.reached

    def refuse(self, now: float, rng: random.Random, p: float | None = None) -> bool:
        """Whether to refuse a new request locally, drawn from ``rng`` against ``p`` (default: this
        throttle's ``probability``); a refused one is counted as attempted, one let through is counted
        by its ``outcome``."""
        if p is None:
            p = self.probability(now)
        if p > 0.0 and rng.random() < p:
            self._count(now)
            return True
        return False


def refusal_probability(own: AdaptiveThrottle, more_urgent: Iterable[AdaptiveThrottle], now: float) -> float:
    """The probability of refusing a request of ``own``'s class locally: its own ``probability``, or,
    while the backend misses at least ``1 - 1/k`` of the class, the ``miss_ratio`` of a more urgent
    class when larger (module docstring)."""
    p = own.probability(now)
    if own.miss_ratio(now) < 1.0 - 1.0 / own.k:
        return p
    for t in more_urgent:
        m = t.miss_ratio(now)
        if m > p:
            p = m
    return p


class ClassThrottles:
    """An ``AdaptiveThrottle`` per backend (any hashable key: a route, a deployment) and class.

    ``admit`` decides for one request of a class (never-shed classes always pass, and so does every
    request while the class's window holds fewer than ``MIN_REQUESTS``: the book's formula refuses half
    of the next requests after a single refusal) with ``refusal_probability`` over the backend's more
    urgent classes; ``outcome`` counts the answer of one
    that passed. ``bind`` names the backend's current owner (its router): a new owner starts with fresh
    counts, as the old counts described another backend. Not thread-safe: one event loop's caller (a
    lost update from another thread only perturbs the estimate)."""

    def __init__(self, k: float = 2.0, window_s: float = 2.0, seed: int = 0) -> None:
        AdaptiveThrottle(k, window_s)  # validates k and window_s here, not at the first request
        self.k, self.window_s = k, window_s
        self.rng = random.Random(seed)
        self.throttles: dict[tuple[object, str], AdaptiveThrottle] = {}
        self.refused: dict[tuple[object, str], int] = {}  # refused by ``admit``, per backend and class
        self._owners: dict[object, int] = {}  # key -> id() of its owner (no reference kept: owners may go away)
        self._urgent: dict[object, tuple[Mapping[str, QosClass], dict[str, list[str]]]] = {}

    def bind(self, key: object, owner: object) -> None:
        """``owner`` now serves ``key``; a different owner than before drops ``key``'s counts."""
        if self._owners.get(key) == id(owner):
            return
        self._owners[key] = id(owner)
        for k in [k for k in self.throttles if k[0] == key]:
            del self.throttles[k]

    def throttle(self, key: object, qos: str) -> AdaptiveThrottle:
        """``key``'s throttle of class ``qos`` (created empty)."""
        throttle = self.throttles.get((key, qos))
        if throttle is None:
            throttle = self.throttles[(key, qos)] = AdaptiveThrottle(self.k, self.window_s)
        return throttle

    def admit(self, key: object, classes: Mapping[str, QosClass], qos: QosClass, now: float) -> float | None:
        """None to let a request of ``qos`` through to ``key`` (its answer then goes to ``outcome``); the
        refusal probability when it is refused here (counted as attempted and in ``refused``)."""
        if qos.shedding is Shedding.NEVER:
            return None
        own = self.throttle(key, qos.name)
        own._advance(now)
        if own.requests < MIN_REQUESTS:  # one refused call of a quiet caller is no evidence of overload
            return None
        urgent = [self.throttle(key, n) for n in self._more_urgent(key, classes, qos)]
        p = refusal_probability(own, urgent, now)
        if not own.refuse(now, self.rng, p):
            return None
        self.refused[(key, qos.name)] = self.refused.get((key, qos.name), 0) + 1
        return p

    def outcome(self, key: object, qos: str, now: float, accepted: bool) -> None:
        """A request of ``qos`` that ``admit`` let through to ``key`` ended (``AdaptiveThrottle.outcome``)."""
        self.throttle(key, qos).outcome(now, accepted)

    def stats(self, now: float) -> dict[object, dict[str, dict[str, float]]]:
        """Per key and class: requests and accepts in the window, the refusal probability now (the class's
        own), and the total refused by ``admit``."""
        out: dict[object, dict[str, dict[str, float]]] = {}
        for (key, qos), t in list(self.throttles.items()):
            out.setdefault(key, {})[qos] = {
                "requests": t.requests, "accepts": t.accepts, "probability": round(t.probability(now), 4),
                "refused_total": self.refused.get((key, qos), 0),
            }  # fmt: skip
        return out

    def _more_urgent(self, key: object, classes: Mapping[str, QosClass], qos: QosClass) -> list[str]:
        """The names of ``classes`` more urgent than ``qos`` (kept per key until ``classes`` changes)."""
        cached = self._urgent.get(key)
        if cached is None or cached[0] is not classes:
            cached = self._urgent[key] = (classes, {})
        names = cached[1].get(qos.name)
        if names is None:
            names = cached[1][qos.name] = [n for n, c in classes.items() if c.priority < qos.priority]
        return names
