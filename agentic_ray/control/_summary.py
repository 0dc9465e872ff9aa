"""Mergeable latency summaries that node agents report up the control-plane tree.

A ``LatencyHistogram`` is a sparse log-bucketed histogram (the HdrHistogram / DDSketch idea): a sample
``x`` ms lands in bucket ``i = ceil(log(x / BASE_MS) / log(GROWTH))``, which covers
``(BASE_MS * GROWTH**(i-1), BASE_MS * GROWTH**i]``. Two histograms merge by adding counts bucket by
bucket, so agent -> zone -> global aggregation is exact with respect to the buckets, and a quantile read
from the merged histogram is the bucket's upper bound: at most ``GROWTH - 1`` (5 %) above the true
value, never below it (conservative for budget checks).

A ``ClassSummary`` is one (QoS class, workflow) key's counts plus its histogram: ``count`` finished
tasks, ``errors`` failed ones, ``missed`` those that finished after their deadline or were refused for
budget. Summaries are *deltas*: an agent sends what happened since its last report, and receivers add.

Everything is plain data and turns into JSON-able dicts (``to_dict`` / ``from_dict``) because it crosses
Ray processes and is shown by ``agentic-ray status``. No Ray, asyncio or clock here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "BASE_MS",
    "GROWTH",
    "ClassSummary",
    "LatencyHistogram",
    "merge_summaries",
    "split_stage_key",
    "stage_key",
    "summary_key",
]

BASE_MS = 0.01
GROWTH = 1.05
_LOG_GROWTH = math.log(GROWTH)


def stage_key(workflow: str | None, stage: str | None) -> str | None:
    """The workflow part of an accounting key: ``"fraud/score"`` for a stage task (judged against its
    stage's budget), ``"fraud"`` for a task of the workflow as a whole, or ``None``."""
    return f"{workflow}/{stage}" if workflow and stage else workflow


def split_stage_key(key: str) -> tuple[str, str | None]:
    """``(workflow, stage or None)`` of a ``stage_key``."""
    workflow, _, stage = key.partition("/")
    return workflow, stage or None


def summary_key(qos: str, workflow: str | None) -> str:
    """The key of a (class, workflow) pair in report dicts: ``"critical|fraud"``, ``"standard|-"``."""
    return f"{qos}|{workflow or '-'}"


def _bucket_of(value_ms: float) -> int:
    if value_ms <= BASE_MS:
        return 0
    return math.ceil(math.log(value_ms / BASE_MS) / _LOG_GROWTH - 1e-12)


def _upper_bound(bucket: int) -> float:
    return BASE_MS * GROWTH**bucket


@dataclass(slots=True)
class LatencyHistogram:
    """Sparse log-bucketed latency histogram (milliseconds). Mutable; merge with ``merge``."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0

    def record(self, value_ms: float, n: int = 1) -> None:
        """Add ``n`` samples of ``value_ms`` (negative or non-finite values are a ``ValueError``)."""
        if not math.isfinite(value_ms) or value_ms < 0:
            raise ValueError(f"value_ms: must be a finite number >= 0, got {value_ms!r}")
        b = _bucket_of(value_ms)
        self.buckets[b] = self.buckets.get(b, 0) + n
        self.count += n

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts into this histogram."""
        for b, n in other.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + n
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the ``q`` quantile (0 < q <= 1); ``None`` when empty."""
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q: must be in (0, 1], got {q!r}")
        if self.count == 0:
            return None
        rank = math.ceil(q * self.count)
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return _upper_bound(b)
        return _upper_bound(max(self.buckets))

    def count_above(self, threshold_ms: float) -> int:
        """Samples in buckets whose lower bound is >= ``threshold_ms`` (an under-count by at most a bucket)."""
        return sum(n for b, n in self.buckets.items() if b > 0 and _upper_bound(b - 1) >= threshold_ms)

    def to_dict(self) -> dict[str, int]:
        """``{bucket index as str: count}`` (JSON keys are strings)."""
        return {str(b): n for b, n in self.buckets.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> LatencyHistogram:
        """Inverse of ``to_dict``."""
        buckets = {int(b): int(n) for b, n in data.items()}
        return cls(buckets=buckets, count=sum(buckets.values()))


@dataclass(slots=True)
class ClassSummary:
    """What happened to one (class, workflow) key over some interval."""

    qos: str
    workflow: str | None = None
    count: int = 0
    errors: int = 0
    missed: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def key(self) -> str:
        return summary_key(self.qos, self.workflow)

    @property
    def bad(self) -> int:
        """Events that spend error budget: errors plus deadline misses (a failed, late task counts once)."""
        return min(self.count, self.errors + self.missed)

    def record(self, latency_ms: float, ok: bool, met_deadline: bool) -> None:
        """Account one finished (or refused) task."""
        self.count += 1
        self.errors += 0 if ok else 1
        self.missed += 0 if met_deadline or not ok else 1
        self.latency.record(latency_ms)

    def copy(self) -> ClassSummary:
        """An independent copy (merging into it leaves this one as it is)."""
        latency = LatencyHistogram(dict(self.latency.buckets), self.latency.count)
        return ClassSummary(self.qos, self.workflow, self.count, self.errors, self.missed, latency)

    def merge(self, other: ClassSummary) -> None:
        """Add ``other`` (same key) into this summary."""
        self.count += other.count
        self.errors += other.errors
        self.missed += other.missed
        self.latency.merge(other.latency)

    def to_dict(self) -> dict[str, object]:
        return {
            "qos": self.qos,
            "workflow": self.workflow,
            "count": self.count,
            "errors": self.errors,
            "missed": self.missed,
            "latency": self.latency.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ClassSummary:
        return cls(
            qos=str(data["qos"]),
            workflow=data.get("workflow"),  # type: ignore[arg-type]
            count=int(data.get("count", 0)),  # type: ignore[call-overload]
            errors=int(data.get("errors", 0)),  # type: ignore[call-overload]
            missed=int(data.get("missed", 0)),  # type: ignore[call-overload]
            latency=LatencyHistogram.from_dict(data.get("latency", {})),  # type: ignore[arg-type]
        )


def merge_summaries(groups: Iterable[Mapping[str, Mapping[str, object]]]) -> dict[str, ClassSummary]:
    """Merge several ``{key: ClassSummary.to_dict()}`` reports into ``{key: ClassSummary}``."""
    out: dict[str, ClassSummary] = {}
    for group in groups:
        for key, data in group.items():
            s = ClassSummary.from_dict(data)
            if key in out:
                out[key].merge(s)
            else:
                out[key] = s
    return out
