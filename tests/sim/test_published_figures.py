"""The simulator's published figures, pinned on a run computed by hand.

100 requests reach one single-slot replica at t = 0 (a trace), each takes exactly 10 ms, no network, a
budget of 505 ms, cost 2 per replica-second. Served FIFO (``round_robin``), request k answers at
10 (k + 1) ms: latencies 10, 20, ..., 1000 ms; 50 are within budget. ``clairvoyant`` runs the first 50
and drops the other 50 at dispatch (the 51st would answer at 510 ms).

- p99 is the nearest-rank 99th percentile (the 99th of 100 values: 990 ms), not p95 (950 ms);
- SLO attainment counts every request (shed ones are misses): 0.5 for clairvoyant, not 50/50 = 1.0;
- no grace in the SLO check: with a 50 ms grace round_robin would reach 55 within budget, not 50;
- cost per 1,000 in-budget requests: busy replica-seconds x cost / (in budget / 1000).
"""

from __future__ import annotations

import pytest

from agentic_ray.sim import parse_scenario, simulate_runs

SCENARIO = """
name: by-hand
seed: 1
duration_s: 1
network_ms: 0
classes:
  standard: {budget_ms: 505, priority: 1}
replicas:
  - name: cpu
    slots: 1
    cost: 2
    service: {default: {dist: deterministic, mean_ms: 10}}
workload:
  arrivals: {process: trace, file: trace.csv}
  mix: {standard: 1}
"""


@pytest.fixture
def runs(tmp_path):
    (tmp_path / "trace.csv").write_text("at_s\n" + "0\n" * 100)
    sc = parse_scenario(SCENARIO, base_dir=str(tmp_path))
    return {name: r.to_json() for name, r in simulate_runs(sc, ["round_robin", "clairvoyant"]).items()}


def test_fifo_figures(runs):
    st = runs["round_robin"]["classes"]["standard"]
    assert (st["requests"], st["completed"], st["shed"]) == (100, 100, 0)
    assert st["p50_ms"] == pytest.approx(500.0)
    assert st["p99_ms"] == pytest.approx(990.0)  # p95 would be 950
    assert st["p999_ms"] == pytest.approx(1000.0)
    assert st["mean_ms"] == pytest.approx(505.0)
    assert st["slo_attainment"] == pytest.approx(0.5)  # a 50 ms grace would give 0.55
    assert runs["round_robin"]["goodput_rps"] == pytest.approx(50.0)
    assert runs["round_robin"]["cost_per_1k_good"] == pytest.approx(1000 * 100 * 0.010 * 2 / 50)  # 40


def test_clairvoyant_figures_count_shed_requests_as_misses(runs):
    res = runs["clairvoyant"]
    st = res["classes"]["standard"]
    assert (st["requests"], st["completed"], st["shed"]) == (100, 50, 50)
    assert st["slo_attainment"] == pytest.approx(0.5)  # over all requests, not the 50 completed
    assert st["p99_ms"] == pytest.approx(500.0)  # the 50th of 10..500
    assert res["shed_reasons_by_class"] == {"standard": {"cannot_meet_deadline": 50}}
    assert res["cost_per_1k_good"] == pytest.approx(1000 * 50 * 0.010 * 2 / 50)  # 20
