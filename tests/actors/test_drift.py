"""Drift detection on a manual clock: p99 over budget and multiwindow burn-rate alerts rise and clear."""

from __future__ import annotations

import pytest

from agentic_ray.control._drift import BurnWindow, DriftConfig, DriftDetector
from agentic_ray.control._summary import ClassSummary
from agentic_ray.testing.clock import ManualClock


def _delta(qos, workflow, ok_ms, late_ms, n_ok, n_late):
    s = ClassSummary(qos, workflow)
    for _ in range(n_ok):
        s.record(ok_ms, True, True)
    for _ in range(n_late):
        s.record(late_ms, True, False)
    return s


CONFIG = DriftConfig(slo_target=0.9, windows=(BurnWindow(10.0, 2.0, 2.0),), p99_window_s=5.0, min_samples=5)


def test_burn_rate_formula():
    clock = ManualClock(100.0)
    d = DriftDetector(CONFIG)
    d.observe(_delta("critical", "fraud", 10, 200, 8, 2), 150.0, clock.now())
    # 2 bad of 10 = 20 % errors; budget 10 % -> burn rate 2.0
    assert d.burn_rate("critical|fraud", 10.0, clock.now()) == pytest.approx(2.0)
    assert d.burn_rate("unknown|-", 10.0, clock.now()) == 0.0


def test_alerts_raise_when_both_windows_burn_and_clear_when_short_window_recovers():
    clock = ManualClock(0.0)
    d = DriftDetector(CONFIG)
    for _ in range(5):
        clock.advance(0.5)
        d.observe(_delta("critical", "fraud", 10, 200, 2, 3), 150.0, clock.now())
    report = d.evaluate(clock.now())
    ids = {a.id for a in report.active}
    assert "burn_rate:critical|fraud:10s/2s" in ids
    assert "p99_over_budget:critical|fraud:5s" in ids
    assert {a.id for a in report.raised} == ids
    # Good traffic only: the short window recovers first, which clears the burn-rate alert while the
    # long window still remembers the bad period.
    for _ in range(4):
        clock.advance(0.5)
        d.observe(_delta("critical", "fraud", 10, 200, 10, 0), 150.0, clock.now())
    report = d.evaluate(clock.now())
    assert d.burn_rate("critical|fraud", 10.0, clock.now()) > 2.0
    assert "burn_rate:critical|fraud:10s/2s" in {a.id for a in report.cleared}
    assert "burn_rate:critical|fraud:10s/2s" not in {a.id for a in report.active}


def test_short_spike_alone_does_not_fire_the_long_window():
    clock = ManualClock(0.0)
    d = DriftDetector(CONFIG)
    for _ in range(16):  # 8 s of good traffic
        clock.advance(0.5)
        d.observe(_delta("standard", None, 10, 900, 20, 0), 500.0, clock.now())
    for _ in range(3):
        clock.advance(0.5)
        d.observe(_delta("standard", None, 10, 900, 0, 10), 500.0, clock.now())
    assert d.burn_rate("standard|-", 2.0, clock.now()) > 2.0
    assert d.burn_rate("standard|-", 10.0, clock.now()) < 2.0
    assert not [a for a in d.evaluate(clock.now()).active if a.kind == "burn_rate"]


def test_alert_keeps_its_since_and_p99_needs_min_samples():
    clock = ManualClock(0.0)
    d = DriftDetector(CONFIG)
    d.observe(_delta("critical", None, 10, 400, 0, 4), 150.0, clock.now())
    assert not [a for a in d.evaluate(clock.now()).active if a.kind == "p99_over_budget"]  # 4 < min_samples
    clock.advance(0.1)
    d.observe(_delta("critical", None, 10, 400, 0, 4), 150.0, clock.now())
    first = next(a for a in d.evaluate(clock.now()).active if a.kind == "p99_over_budget")
    clock.advance(1.0)
    d.observe(_delta("critical", None, 10, 400, 0, 4), 150.0, clock.now())
    report = d.evaluate(clock.now())
    again = next(a for a in report.active if a.kind == "p99_over_budget")
    assert again.since == first.since == 0.1
    assert not report.raised
    figures = report.figures["critical|-"]
    assert figures["samples"] == 12 and figures["p99_ms"] >= 400


def test_old_deltas_age_out_and_everything_clears():
    clock = ManualClock(0.0)
    d = DriftDetector(CONFIG)
    d.observe(_delta("critical", None, 10, 400, 0, 10), 150.0, clock.now())
    assert d.evaluate(clock.now()).active
    clock.advance(11.0)
    report = d.evaluate(clock.now())
    assert not report.active and len(report.cleared) == 2


def test_config_validation():
    with pytest.raises(ValueError):
        DriftConfig(slo_target=1.0)
    with pytest.raises(ValueError):
        BurnWindow(1.0, 2.0, 3.0)
    with pytest.raises(ValueError):
        BurnWindow(0.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        DriftDetector().observe(ClassSummary("x"), 0.0, 0.0)


def test_memory_stays_bounded_and_burn_rates_exact_to_a_bin_over_hours():
    """The soak found the global coordinator growing ~0.8 MiB a minute: one latency histogram per report
    and key, kept for the 6-hour burn window. Deltas past the p99 window keep their counts alone, in
    bins of a thirtieth of the shortest burn window (10 s for the defaults)."""
    d = DriftDetector()  # the workbook's windows: (1 h, 5 min), (6 h, 30 min); p99 over 60 s
    assert d.config.bin_s == 10.0  # the shortest burn window (300 s) / 30
    exact: list[tuple[float, int, int]] = []
    t = 0.0
    for i in range(4 * 3600):  # four hours, a report a second; bad traffic in the last 10 minutes
        t += 1.0
        bad = 3 if i >= 4 * 3600 - 600 else 0
        d.observe(_delta("critical", "fraud", 10, 200, 7, bad), 150.0, t)
        exact.append((t, 7 + bad, bad))
        if i % 10 == 0:
            d.evaluate(t)
    report = d.evaluate(t)
    state = d._keys["critical|fraud"]
    assert len(state.deltas) <= 61 and len(state.binned) <= 4 * 3600 / 10.0 + 1  # not 14,400 histograms
    for w in (300.0, 3600.0, 21600.0):
        count = sum(c for at, c, _ in exact if at > t - w)
        bad = sum(b for at, _, b in exact if at > t - w)
        want = (bad / count) / (1 - d.config.slo_target)
        assert d.burn_rate("critical|fraud", w, t) == pytest.approx(want, rel=2 * 10.0 / w)
    assert report.figures["critical|fraud"]["samples"] == 600  # the p99 window: 60 reports of 10
    assert report.figures["critical|fraud"]["p99_ms"] > 150.0
    assert "burn_rate:critical|fraud:3600s/300s" not in {a.id for a in report.active}  # 1 h burn 6.7 < 14.4
