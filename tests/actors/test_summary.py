"""Mergeable latency summaries: bucket bounds, quantiles, merging, JSON round trip."""

from __future__ import annotations

import random

import pytest

from agentic_ray.control._summary import GROWTH, ClassSummary, LatencyHistogram, merge_summaries, summary_key


def test_quantile_is_an_upper_bound_within_one_bucket():
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(3, 1) for _ in range(2000))
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    for q in (0.5, 0.9, 0.99):
        exact = values[int(q * len(values)) - 1]
        est = h.quantile(q)
        assert exact <= est <= exact * GROWTH * 1.0001


def test_merge_equals_recording_everything_in_one():
    rng = random.Random(1)
    parts = [[rng.uniform(0.1, 500) for _ in range(300)] for _ in range(3)]
    merged, whole = LatencyHistogram(), LatencyHistogram()
    for part in parts:
        h = LatencyHistogram()
        for v in part:
            h.record(v)
            whole.record(v)
        merged.merge(h)
    assert merged.buckets == whole.buckets and merged.count == whole.count == 900
    assert merged.quantile(0.99) == whole.quantile(0.99)


def test_empty_and_bad_values():
    h = LatencyHistogram()
    assert h.quantile(0.99) is None
    with pytest.raises(ValueError):
        h.record(-1.0)
    with pytest.raises(ValueError):
        h.record(float("nan"))
    with pytest.raises(ValueError):
        h.quantile(0.0)
    h.record(0.0)
    assert h.quantile(1.0) == pytest.approx(0.01)


def test_class_summary_counts_and_round_trip():
    s = ClassSummary("critical", "fraud")
    s.record(10.0, ok=True, met_deadline=True)
    s.record(200.0, ok=True, met_deadline=False)
    s.record(5.0, ok=False, met_deadline=True)
    s.record(500.0, ok=False, met_deadline=False)  # failed and late: one bad event, counted as an error
    assert (s.count, s.errors, s.missed, s.bad) == (4, 2, 1, 3)
    back = ClassSummary.from_dict(s.to_dict())
    assert back.to_dict() == s.to_dict()
    assert s.key == summary_key("critical", "fraud") == "critical|fraud"
    assert summary_key("standard", None) == "standard|-"


def test_merge_summaries_adds_reports_by_key():
    a, b = ClassSummary("standard"), ClassSummary("standard")
    a.record(1.0, True, True)
    b.record(2.0, True, False)
    merged = merge_summaries([{a.key: a.to_dict()}, {b.key: b.to_dict()}])
    assert merged["standard|-"].count == 2 and merged["standard|-"].missed == 1


def test_count_above_threshold():
    h = LatencyHistogram()
    for v in (1.0, 2.0, 100.0, 200.0):
        h.record(v)
    assert h.count_above(50.0) == 2
