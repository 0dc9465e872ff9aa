"""Budget drift and error-budget burn-rate alerts, per (QoS class, workflow). Pure: ``now`` comes in.

Two signals, both over sliding windows of the deltas agents report (``ClassSummary``):

1. **p99 drift**: the observed p99 latency over ``p99_window_s`` (from the merged log histogram) against
   the key's budget. Raised when ``p99 > budget_ms`` with at least ``min_samples`` samples in the
   window; cleared when it is back within budget (or the window has too few samples).
2. **Burn rate** (Google SRE workbook, "Alerting on SLOs", multiwindow multi-burn-rate alerts): with an
   SLO of ``slo_target`` (e.g. 0.99 of tasks finish within budget), the error budget is
   ``1 - slo_target``; over a window ``w`` the burn rate is ``(bad_w / total_w) / (1 - slo_target)``,
   where *bad* = failed or late. An alert for a ``BurnWindow(long_s, short_s, threshold)`` fires when
   the burn rate exceeds ``threshold`` over **both** the long and the short window (the short window
   makes it clear quickly once the problem stops). The workbook's defaults are (1 h, 5 min, 14.4) and
   (6 h, 30 min, 6); tests pass windows in seconds.

Each evaluation also reports per-key ``figures``: budget, p99, samples and the **SLO attainment** over
``p99_window_s``, ``1 - bad/count`` (``None`` without samples), which ``telemetry.publish_drift_report``
publishes as ``agentic_slo_attainment``.

``DriftDetector.observe`` adds a delta at ``now``; ``evaluate(now)`` returns the alerts that are active
and the transitions (``raised``, ``cleared``) since the previous evaluation. Deltas older than the
longest window are pruned. Memory: only the p99 window needs latency histograms; older deltas keep
their counts alone, merged into bins of ``bin_s`` (default a thirtieth of the shortest burn window: 10 s
for the workbook's 5 minutes), so a key holds at most ``horizon / bin_s`` bins (2,160 for 6 hours)
instead of one histogram per report (the chaos soak found the global coordinator growing ~0.8 MiB a
minute, ~90 % of it here; bounded only at the 6-hour horizon). A merged bin is dated by its newest delta,
so a burn window's edge is exact to one bin. No Ray, asyncio or clock here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._summary import ClassSummary, LatencyHistogram

__all__ = ["Alert", "BurnWindow", "DriftConfig", "DriftDetector", "DriftReport"]


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """One multiwindow burn-rate alert: fires when both windows burn faster than ``threshold``."""

    long_s: float
    short_s: float
    threshold: float

    def __post_init__(self) -> None:
        if not (self.long_s > 0 and self.short_s > 0 and self.threshold > 0):
            raise ValueError(f"BurnWindow: windows and threshold must be > 0, got {self!r}")
        if self.short_s > self.long_s:
            raise ValueError(f"BurnWindow: short_s ({self.short_s}) must be <= long_s ({self.long_s})")


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Settings of drift detection. Windows are seconds so tests can use short ones."""

    slo_target: float = 0.99
    windows: tuple[BurnWindow, ...] = (BurnWindow(3600.0, 300.0, 14.4), BurnWindow(21600.0, 1800.0, 6.0))
    p99_window_s: float = 60.0
    min_samples: int = 20

    def __post_init__(self) -> None:
        if not 0.0 < self.slo_target < 1.0:
            raise ValueError(f"slo_target: must be in (0, 1), got {self.slo_target!r}")
        if self.p99_window_s <= 0:
            raise ValueError(f"p99_window_s: must be > 0, got {self.p99_window_s!r}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples: must be >= 1, got {self.min_samples!r}")

    @property
    def bin_s(self) -> float:
        """Width of the bins that deltas older than the p99 window are merged into (their counts only)."""
        return min(w.short_s for w in self.windows) / 30.0 if self.windows else self.p99_window_s / 30.0

    @property
    def horizon_s(self) -> float:
        """The longest window; older deltas are dropped."""
        return max([self.p99_window_s, *(w.long_s for w in self.windows)])


@dataclass(frozen=True, slots=True)
class Alert:
    """An active alert. ``kind`` is ``"p99_over_budget"`` or ``"burn_rate"``; ``window`` names it."""

    kind: str
    qos: str
    workflow: str | None
    window: str
    value: float
    threshold: float
    since: float

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.qos}|{self.workflow or '-'}:{self.window}"

    @property
    def deployment(self) -> str | None:
        """The Serve deployment (``"APP/DEPLOYMENT"``) an alert on a ``serve:`` key is about, else None."""
        w = self.workflow or ""
        return w[len("serve:") :] if w.startswith("serve:") else None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "qos": self.qos,
            "workflow": self.workflow,
            "deployment": self.deployment,
            "window": self.window,
            "value": self.value,
            "threshold": self.threshold,
            "since": self.since,
        }


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Result of one evaluation: active alerts, the ones raised and cleared by it, and per-key figures."""

    active: tuple[Alert, ...]
    raised: tuple[Alert, ...]
    cleared: tuple[Alert, ...]
    figures: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


@dataclass(slots=True)
class _KeyState:
    qos: str
    workflow: str | None
    budget_ms: float
    deltas: deque[tuple[Any, ...]] = field(default_factory=deque)  # (t, count, bad, histogram), p99 window
    binned: deque[list[Any]] = field(default_factory=deque)  # [newest t, count, bad, bin], older deltas

    def compact(self, now: float, p99_window_s: float, bin_s: float, horizon_s: float) -> None:
        """Move deltas that left the p99 window into count-only bins; drop bins past the horizon."""
        while self.deltas and self.deltas[0][0] <= now - p99_window_s:
            t, count, bad, _ = self.deltas.popleft()
            b = int(t // bin_s)
            last = self.binned[-1] if self.binned else None
            if last is not None and last[3] == b:
                last[0], last[1], last[2] = t, last[1] + count, last[2] + bad
            else:
                self.binned.append([t, count, bad, b])
        while self.binned and self.binned[0][0] <= now - horizon_s:
            self.binned.popleft()


class DriftDetector:
    """Sliding-window p99 and multiwindow burn-rate alerts per (class, workflow)."""

    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = config or DriftConfig()
        self._keys: dict[str, _KeyState] = {}
        self._active: dict[str, Alert] = {}

    def observe(self, summary: ClassSummary, budget_ms: float, now: float) -> None:
        """Add a delta for ``summary.key`` reported at ``now`` with the key's current budget."""
        if budget_ms <= 0:
            raise ValueError(f"budget_ms: must be > 0, got {budget_ms!r}")
        state = self._keys.get(summary.key)
        if state is None:
            state = self._keys[summary.key] = _KeyState(summary.qos, summary.workflow, budget_ms)
        state.budget_ms = budget_ms
        hist = LatencyHistogram(dict(summary.latency.buckets), summary.latency.count)
        state.deltas.append((now, summary.count, summary.bad, hist))

    def _window(self, state: _KeyState, now: float, width_s: float) -> tuple[int, int, LatencyHistogram]:
        count = bad = 0
        hist = LatencyHistogram()
        for t, c, b, h in reversed(state.deltas):
            if t <= now - width_s:
                return count, bad, hist
            count += c
            bad += b
            hist.merge(h)
        for t, c, b, _ in reversed(state.binned):  # older than the p99 window: counts only
            if t <= now - width_s:
                break
            count += c
            bad += b
        return count, bad, hist

    def burn_rate(self, key: str, window_s: float, now: float) -> float:
        """Error-budget burn rate of ``key`` over the last ``window_s`` seconds (0.0 with no samples)."""
        state = self._keys.get(key)
        if state is None:
            return 0.0
        count, bad, _ = self._window(state, now, window_s)
        if count == 0:
            return 0.0
        return (bad / count) / (1.0 - self.config.slo_target)

    def evaluate(self, now: float) -> DriftReport:
        """Prune old deltas, recompute every alert condition and return the report."""
        cfg = self.config
        conditions: dict[str, Alert] = {}
        figures: dict[str, dict[str, object]] = {}
        for key, state in self._keys.items():
            state.compact(now, cfg.p99_window_s, cfg.bin_s, cfg.horizon_s)
            count, bad, hist = self._window(state, now, cfg.p99_window_s)
            p99 = hist.quantile(0.99) if count else None
            figures[key] = {
                "qos": state.qos,
                "workflow": state.workflow,
                "budget_ms": state.budget_ms,
                "p99_ms": p99,
                "samples": count,
                "attainment": (count - bad) / count if count else None,
            }
            if p99 is not None and count >= cfg.min_samples and p99 > state.budget_ms:
                a = Alert(
                    "p99_over_budget", state.qos, state.workflow, f"{cfg.p99_window_s:g}s", p99, state.budget_ms, now
                )
                conditions[a.id] = a
            for w in cfg.windows:
                long_rate = self.burn_rate(key, w.long_s, now)
                short_rate = self.burn_rate(key, w.short_s, now)
                figures[key][f"burn_{w.long_s:g}s"] = long_rate
                figures[key][f"burn_{w.short_s:g}s"] = short_rate
                if long_rate > w.threshold and short_rate > w.threshold:
                    a = Alert(
                        "burn_rate",
                        state.qos,
                        state.workflow,
                        f"{w.long_s:g}s/{w.short_s:g}s",
                        min(long_rate, short_rate),
                        w.threshold,
                        now,
                    )
                    conditions[a.id] = a
        raised = tuple(a for i, a in conditions.items() if i not in self._active)
        cleared = tuple(a for i, a in self._active.items() if i not in conditions)
        # Keep the original ``since`` of alerts that stay active; update their value.
        active = {
            i: (
                Alert(a.kind, a.qos, a.workflow, a.window, a.value, a.threshold, self._active[i].since)
                if i in self._active
                else a
            )
            for i, a in conditions.items()
        }
        self._active = active
        return DriftReport(tuple(active.values()), raised, cleared, figures)
