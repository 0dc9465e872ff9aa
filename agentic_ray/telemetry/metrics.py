"""The metrics protocol, its no-op and recording adapters, and ``AgenticMetrics``, the typed facade.

``MetricsSink`` has three methods (``inc``, ``set``, ``observe``) taking a catalogue name and a tags
mapping; adapters: ``NoopMetrics`` (the default: the simulator, tests, code that is not wired yet),
``RecordingMetrics`` (keeps every point in memory; for tests and the simulator's reports) and
``RayMetrics`` in ``ray_metrics`` (``ray.util.metrics``, imported lazily). ``AgenticMetrics`` wraps a
sink with one method per thing we measure (``decision``, ``shed``, ``completion``...), so callers never
spell metric names or tag keys. This module does not import Ray.

Per-request hot paths (the router's ``choose``) should not call a sink per request: see ``hotpath``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from agentic_ray.telemetry.catalog import BREAKER_STATES, COUNTER, GAUGE, HISTOGRAM, metric_spec

__all__ = ["AgenticMetrics", "MetricsSink", "NoopMetrics", "RecordingMetrics"]

Tags = Mapping[str, str]


@runtime_checkable
class MetricsSink(Protocol):
    """Where metric points go. ``name`` is a catalogue name (``agentic_decisions``), tags its tag keys."""

    def inc(self, name: str, tags: Tags, value: float = 1.0) -> None: ...

    def set(self, name: str, value: float, tags: Tags) -> None: ...

    def observe(self, name: str, value: float, tags: Tags) -> None: ...


class NoopMetrics:
    """Drops every point. The default sink."""

    def inc(self, name: str, tags: Tags, value: float = 1.0) -> None:
        pass

    def set(self, name: str, value: float, tags: Tags) -> None:
        pass

    def observe(self, name: str, value: float, tags: Tags) -> None:
        pass


class RecordingMetrics:
    """Keeps points in memory and checks them against the catalogue (kind and exact tag keys).

    ``counters[(name, tags_tuple)]`` sums, ``gauges[...]`` last value, ``observations[...]`` a list,
    where ``tags_tuple`` is ``tuple(sorted(tags.items()))``. ``value(name, **tags)`` reads any of them.
    """

    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple], float] = {}
        self.gauges: dict[tuple[str, tuple], float] = {}
        self.observations: dict[tuple[str, tuple], list[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, kind: str, tags: Tags) -> tuple[str, tuple]:
        spec = metric_spec(name)
        if spec.kind != kind:
            raise TypeError(f"{name} is a {spec.kind}, not a {kind}")
        if set(tags) != set(spec.tag_keys):
            raise ValueError(f"{name}: tags {sorted(tags)} != tag keys {sorted(spec.tag_keys)}")
        if not all(isinstance(v, str) for v in tags.values()):
            raise TypeError(f"{name}: tag values must be str, got {dict(tags)!r}")
        return name, tuple(sorted(tags.items()))

    def inc(self, name: str, tags: Tags, value: float = 1.0) -> None:
        if not value > 0:
            raise ValueError(f"{name}: counter increments must be > 0, got {value!r}")
        key = self._key(name, COUNTER, tags)
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + value

    def set(self, name: str, value: float, tags: Tags) -> None:
        key = self._key(name, GAUGE, tags)
        with self._lock:
            self.gauges[key] = float(value)

    def observe(self, name: str, value: float, tags: Tags) -> None:
        key = self._key(name, HISTOGRAM, tags)
        with self._lock:
            self.observations.setdefault(key, []).append(float(value))

    def value(self, name: str, **tags: str) -> float | list[float] | None:
        """The counter sum, gauge value or observation list for exactly these tags (None if absent)."""
        key = (name, tuple(sorted(tags.items())))
        for table in (self.counters, self.gauges, self.observations):
            if key in table:
                return table[key]
        return None

    def total(self, name: str, **tags: str) -> float:
        """Sum of a counter over every series whose tags include ``tags``."""
        want = set(tags.items())
        return sum(v for (n, t), v in self.counters.items() if n == name and want <= set(t))


class AgenticMetrics:
    """Typed facade over a sink: one method per measured thing, tags filled in. Cheap to create.

    ``component``: who records (``router``, ``replica``, ``agent``, ``task``, ``coordinator``, ``sim``).
    """

    def __init__(self, sink: MetricsSink | None = None, component: str = "unknown") -> None:
        self.sink: MetricsSink = sink if sink is not None else NoopMetrics()
        self.component = component
        self._policy_version: str | None = None

    def decision(self, action: str, qos: str, n: float = 1.0) -> None:
        """``n`` decisions of ``action`` (route, shed, wait, start, enqueue, reject, place) for ``qos``."""
        self.sink.inc("agentic_decisions", {"component": self.component, "action": action, "qos": qos}, n)

    def shed(self, qos: str, reason: str, n: float = 1.0) -> None:
        """A request refused before queueing (router / placement), with the machine-readable reason."""
        self.sink.inc("agentic_shed", {"component": self.component, "qos": qos, "reason": reason}, n)

    def rejected(self, qos: str, reason: str, n: float = 1.0) -> None:
        """A request rejected or dropped by an admission gate (``queue_full``, ``deadline_passed``...)."""
        self.sink.inc("agentic_rejected", {"component": self.component, "qos": qos, "reason": reason}, n)

    def queue_depth(self, qos: str, depth: float) -> None:
        """Requests of ``qos`` queued here now."""
        self.sink.set("agentic_queue_depth", depth, {"component": self.component, "qos": qos})

    def predicted_latency(self, qos: str, predicted_ms: float) -> None:
        """A predicted completion time (ms) at decision time; NaN/inf are skipped."""
        if math.isfinite(predicted_ms):
            self.sink.observe("agentic_predicted_latency_ms", predicted_ms, {"component": self.component, "qos": qos})

    def completion(self, qos: str, latency_ms: float, budget_left_ms: float, ok: bool = True) -> None:
        """A finished request: observed latency, budget left, and outcome ok / late / error."""
        tags = {"component": self.component, "qos": qos}
        outcome = "error" if not ok else ("late" if budget_left_ms < 0 else "ok")
        self.sink.inc("agentic_completions", {**tags, "outcome": outcome})
        if math.isfinite(latency_ms):
            self.sink.observe("agentic_observed_latency_ms", latency_ms, tags)
        if math.isfinite(budget_left_ms):
            self.sink.observe("agentic_budget_left_ms", budget_left_ms, tags)

    def stream(
        self, qos: str, ttft_ms: float, tpot_ms: float | None, ttft_budget_ms: float | None,
        tpot_budget_ms: float | None,
    ) -> None:  # fmt: skip
        """A finished stream: its time to first token and per output token (None: one token), each
        against the class's budget (None: not set) in ``agentic_stream_completions``."""
        tags = {"component": self.component, "qos": qos}
        if math.isfinite(ttft_ms):
            self.sink.observe("agentic_ttft_ms", ttft_ms, tags)
        if tpot_ms is not None and math.isfinite(tpot_ms):
            self.sink.observe("agentic_tpot_ms", tpot_ms, tags)

        def verdict(value: float | None, budget: float | None) -> str:
            if value is None or budget is None or not math.isfinite(value):
                return "none"
            return "ok" if value <= budget else "late"

        ttft, tpot = verdict(ttft_ms, ttft_budget_ms), verdict(tpot_ms, tpot_budget_ms)
        self.sink.inc("agentic_stream_completions", {**tags, "ttft": ttft, "tpot": tpot})

    def slo_attainment(self, qos: str, fraction: float) -> None:
        """Fraction (0..1) of ``qos`` requests that met their budget over the SLO window."""
        self.sink.set("agentic_slo_attainment", fraction, {"qos": qos})

    def breaker_state(self, target: str, state: str) -> None:
        """Breaker of ``target`` (replica or node id) is ``closed``, ``half_open`` or ``open``."""
        try:
            value = BREAKER_STATES[state]
        except KeyError:
            raise ValueError(f"state: must be one of {', '.join(BREAKER_STATES)}, got {state!r}") from None
        self.sink.set("agentic_breaker_state", value, {"component": self.component, "target": target})

    def coordinator_round(self, level: str) -> None:
        """One budget round of a coordinator at ``level`` (``zone`` or ``global``)."""
        self.sink.inc("agentic_coordinator_rounds", {"level": level})

    def policy_version(self, version: str) -> None:
        """Mark ``version`` as the active policy (1) and the previously marked one, if any, as replaced (0)."""
        previous, self._policy_version = self._policy_version, version
        if previous is not None and previous != version:
            self.sink.set("agentic_policy_version_info", 0.0, {"version": previous})
        self.sink.set("agentic_policy_version_info", 1.0, {"version": version})
