from __future__ import annotations

import math

import pytest

from agentic_ray.scheduling.estimators import Ewma, EwmaServiceTime, MeanDeviation, PeakEwma, PendingRequests


def test_ewma():
    e = Ewma(alpha=0.5)
    assert e.estimate() is None and e.load() == 0.0
    e.observe(100.0, 0.0)
    e.observe(200.0, 1.0)
    assert e.estimate() == 150.0 and e.count == 2 and e.last_at == 1.0
    with pytest.raises(ValueError, match="value"):
        e.observe(math.nan, 2.0)
    with pytest.raises(ValueError, match="alpha"):
        Ewma(alpha=0.0)


def test_service_time_per_model_with_fallbacks():
    s = EwmaServiceTime(alpha=0.5, default_ms=42.0)
    assert s.estimate("llm") == 42.0
    s.observe(100.0, 0.0, "llm")
    s.observe(10.0, 0.0, "embed")
    assert s.estimate("llm") == 100.0 and s.estimate("embed") == 10.0
    assert s.estimate("other") == 55.0  # all-models average: 100 then 100 + 0.5 * (10 - 100)
    assert s.by_model() == {"llm": 100.0, "embed": 10.0}


def test_peak_ewma_jumps_on_peaks_and_decays():
    p = PeakEwma(decay_s=10.0)
    p.observe(100.0, 0.0)
    assert p.estimate(0.0) == 100.0
    p.observe(500.0, 1.0)  # a peak replaces the estimate at once
    assert p.estimate(1.0) == 500.0
    w = math.exp(-1.0)
    p.observe(100.0, 11.0)  # 10 s later: 500 * w + 100 * (1 - w)
    assert p.estimate(11.0) == pytest.approx(500 * w + 100 * (1 - w))
    assert p.estimate(21.0) == pytest.approx(p.estimate(11.0) * w)  # reads decay toward 0
    assert p.load(11.0, pending=3) == pytest.approx(4 * p.estimate(11.0))


def test_pending_requests():
    p = PendingRequests()
    p.start()
    p.start()
    p.finish()
    assert p.load() == 1
    p.finish()
    p.finish()
    assert p.load() == 0
    p.observe(7, 0.0)
    assert p.load() == 7


def test_mean_deviation_follows_rfc6298():
    e = MeanDeviation(alpha=0.125, beta=0.25)
    assert e.estimate() is None and e.upper(2.0) is None
    e.observe(100.0, 0.0)
    assert e.mean == 100.0 and e.dev == 50.0 and e.upper(4.0) == 300.0  # RTO = SRTT + 4 RTTVAR
    e.observe(200.0, 1.0)  # deviation updated with the old mean: 0.75 * 50 + 0.25 * 100
    assert e.dev == pytest.approx(62.5) and e.mean == pytest.approx(112.5) and e.count == 2 and e.last_at == 1.0
    assert e.upper(2.0) == pytest.approx(237.5)
    for _ in range(200):
        e.observe(80.0, 2.0)
    assert e.mean == pytest.approx(80.0) and e.dev == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="value"):
        e.observe(-1.0, 3.0)
    with pytest.raises(ValueError, match="beta"):
        MeanDeviation(beta=0.0)
