"""Account for every request of a fault-injection run: ok, typed error, untyped error, hung or lost.

A reliability claim ("nothing is lost when a replica dies") needs every request followed to its end,
not a latency distribution of the ones that came back. A ``Ledger`` holds one entry per request, opened
when it is sent (with its class and deadline) and closed when its caller gets an answer, and sorts each
into exactly one outcome when the run is judged (``Ledger.tally``):

- ``ok``: a result within ``deadline + grace``;
- ``typed_error``: an error of agentic-ray's tree (``AgenticRayError``: ``Overloaded``,
  ``BudgetExhausted``, ``CircuitOpen``, ...) or, over HTTP, an answer with the front door's JSON error
  body (a 4xx/5xx status the server chose), within ``deadline + grace``;
- ``untyped_error``: any other error within ``deadline + grace`` (a Ray ``ActorDiedError`` of a killed
  replica reaching the caller, a connection reset): the caller got an answer, but not one it can act on;
- ``hung``: an answer of any kind later than ``deadline + grace`` (a caller that waits past its
  deadline is as badly served as one that never hears back);
- ``lost``: no answer at all when the run is judged (``now``), although ``deadline + grace`` has passed.

Entries whose ``deadline + grace`` has not passed and which have no answer yet are ``open`` (not judged).

Besides the outcome, a closed entry keeps its latency (``answered - sent``) and whether it met its
budget (ok and ``answered <= deadline``), so per-class attainment and p99 come from the same records
(``Ledger.attainment``, ``Ledger.percentile``). Times are seconds on one clock chosen by the caller
(wall clock when deadlines cross processes); nothing here reads a clock.

A long run (the chaos suite's soak: 25k requests in 10 minutes, ~7 MiB of entries) calls
``Ledger.settle()`` from time to time: answered entries, whose outcome can no longer change, are folded
into counts per (class, outcome, detail, in budget) and dropped, so the ledger's memory stays flat.
``tally()``, ``attainment(qos)`` (no time window) and ``len`` count settled requests too; ``select``,
``percentile`` and windowed attainment see only the entries not yet settled.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

__all__ = ["OUTCOMES", "Entry", "Ledger", "Tally"]

OUTCOMES = ("ok", "typed_error", "untyped_error", "hung", "lost", "open")


@dataclass(slots=True)
class Entry:
    """One request: its class, when it was sent, its deadline; when it was answered and how
    (``kind``: ``"ok"``, ``"typed"`` or ``"untyped"``; None while unanswered) and a free ``detail``
    (the error's reason or type, an HTTP status)."""

    qos: str
    sent: float
    deadline: float
    answered: float | None = None
    kind: str | None = None
    detail: str = ""

    def outcome(self, now: float, grace_s: float) -> str:
        """This entry's outcome at ``now`` (one of ``OUTCOMES``)."""
        limit = self.deadline + grace_s
        if self.answered is None:
            return "lost" if now > limit else "open"
        if self.answered > limit:
            return "hung"
        return {"ok": "ok", "typed": "typed_error"}.get(self.kind or "", "untyped_error")

    @property
    def latency_s(self) -> float | None:
        return None if self.answered is None else self.answered - self.sent

    @property
    def in_budget(self) -> bool:
        """An ok answer no later than its deadline."""
        return self.kind == "ok" and self.answered is not None and self.answered <= self.deadline


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts per outcome (``OUTCOMES``) and in total; ``details`` counts the errors by detail."""

    requests: int
    ok: int
    typed_error: int
    untyped_error: int
    hung: int
    lost: int
    open: int
    details: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "typed_errors": self.typed_error,
            "untyped_errors": self.untyped_error,
            "hung": self.hung,
            "lost": self.lost,
            "open": self.open,
            "error_details": dict(sorted(self.details.items())),
        }


class Ledger:
    """Every request of a run, by key (see the module docstring). ``grace_s``: how long after its
    deadline a request may still end (typed error or result) without counting as hung."""

    def __init__(self, grace_s: float = 1.0) -> None:
        if not (math.isfinite(grace_s) and grace_s >= 0):
            raise ValueError(f"grace_s: must be a finite number >= 0, got {grace_s!r}")
        self.grace_s = grace_s
        self.entries: dict[Hashable, Entry] = {}
        # answered entries folded by ``settle``: (qos, outcome, detail, in budget) -> count
        self.settled: Counter[tuple[str, str, str, bool]] = Counter()
        self._settled_keys = 0

    def __len__(self) -> int:
        return len(self.entries) + self._settled_keys

    def settle(self) -> int:
        """Fold every answered entry into ``settled`` counts and drop it (its outcome is final: it depends
        only on when it was answered). Returns how many were folded. A key folded here may not be sent
        again (its late second answer is ignored, as in ``answered``)."""
        done = [k for k, e in self.entries.items() if e.answered is not None]
        for key in done:
            e = self.entries.pop(key)
            outcome = e.outcome(e.answered, self.grace_s)  # type: ignore[arg-type]
            self.settled[(e.qos, outcome, e.detail or "", e.in_budget)] += 1
        self._settled_keys += len(done)
        return len(done)

    def sent(self, key: Hashable, qos: str, at: float, deadline: float) -> None:
        """Open an entry. A key already in the ledger is a ``ValueError``."""
        if key in self.entries:
            raise ValueError(f"key: {key!r} is already in the ledger")
        if not deadline >= at:
            raise ValueError(f"deadline: must be >= the send time {at!r}, got {deadline!r}")
        self.entries[key] = Entry(qos, at, deadline)

    def answered(self, key: Hashable, at: float, kind: str, detail: str = "") -> None:
        """Close ``key``'s entry with an answer of ``kind`` (``ok``/``typed``/``untyped``); the first
        answer counts (a second one is ignored: an at-least-once retry's late echo)."""
        if kind not in ("ok", "typed", "untyped"):
            raise ValueError(f"kind: must be 'ok', 'typed' or 'untyped', got {kind!r}")
        entry = self.entries.get(key)
        if entry is None and self._settled_keys:
            return  # settled: answered before
        if entry is None:
            raise KeyError(key)
        if entry.answered is None:
            entry.answered, entry.kind, entry.detail = at, kind, detail

    def select(self, qos: str | None = None, sent_from: float = -math.inf, sent_to: float = math.inf) -> list[Entry]:
        """Entries of class ``qos`` (None: all) sent in ``[sent_from, sent_to)``."""
        return [e for e in self.entries.values() if (qos is None or e.qos == qos) and sent_from <= e.sent < sent_to]

    def tally(self, now: float, entries: Iterable[Entry] | None = None) -> Tally:
        """Outcome counts of ``entries`` (default: all, settled ones included) judged at ``now``."""
        counts = dict.fromkeys(OUTCOMES, 0)
        details: dict[str, int] = {}
        n = 0
        if entries is None:
            for (_, outcome, detail, _), k in self.settled.items():
                n += k
                counts[outcome] += k
                if outcome in ("typed_error", "untyped_error") and detail:
                    details[detail] = details.get(detail, 0) + k
        for e in self.entries.values() if entries is None else entries:
            n += 1
            outcome = e.outcome(now, self.grace_s)
            counts[outcome] += 1
            if outcome in ("typed_error", "untyped_error") and e.detail:
                details[e.detail] = details.get(e.detail, 0) + 1
        return Tally(n, counts["ok"], counts["typed_error"], counts["untyped_error"], counts["hung"],
                     counts["lost"], counts["open"], details)  # fmt: skip

    def attainment(self, qos: str | None = None, sent_from: float = -math.inf, sent_to: float = math.inf) -> float:
        """Fraction of the selected requests answered ok within their deadline (NaN when none); settled
        requests count when no time window is given."""
        chosen = self.select(qos, sent_from, sent_to)
        good, n = sum(1 for e in chosen if e.in_budget), len(chosen)
        if sent_from == -math.inf and sent_to == math.inf:
            for (q, _, _, in_budget), k in self.settled.items():
                if qos is None or q == qos:
                    n += k
                    good += k if in_budget else 0
        return good / n if n else math.nan

    def percentile(
        self, q: float, qos: str | None = None, sent_from: float = -math.inf, sent_to: float = math.inf,
        kind: str = "ok",
    ) -> float:  # fmt: skip
        """Nearest-rank ``q`` percentile (0 < q <= 1) of the latency (s) of the selected answers of ``kind``
        (NaN when none)."""
        if not 0 < q <= 1:
            raise ValueError(f"q: must be in (0, 1], got {q!r}")
        values = sorted(
            e.answered - e.sent
            for e in self.select(qos, sent_from, sent_to)
            if e.kind == kind and e.answered is not None
        )
        if not values:
            return math.nan
        return values[max(0, min(len(values) - 1, math.ceil(q * len(values) - 1e-9) - 1))]
