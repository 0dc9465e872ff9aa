"""The simulator against closed-form queueing results (fixed seeds, tolerances of a few percent)."""

from __future__ import annotations

import math

from agentic_ray.sim import build_workload, run_router
from tests.sim.conftest import FirstFreeRouter, RoundRobinRouter, scenario_from


def _mean_latency_ms(scenario, router, seed=11):
    wl = build_workload(scenario, seed)
    res = run_router(scenario, wl, router)
    stats = res.classes["c"]
    assert stats.completed == stats.requests > 0
    return sum(stats.latencies_ms) / len(stats.latencies_ms)


def _scenario(rate, mean_ms, duration, *, count=1, slots=1, max_ongoing=".inf", dist="exponential"):
    return scenario_from(f"""
        name: queueing
        duration_s: {duration}
        warmup_s: 20
        classes: {{c: {{budget_ms: 100000}}}}
        replicas:
          - name: r
            count: {count}
            slots: {slots}
            max_ongoing: {max_ongoing}
            service: {{default: {{dist: {dist}, mean_ms: {mean_ms}}}}}
        workload:
          arrivals: {{process: poisson, rate_rps: {rate}}}
          mix: {{c: 1}}
    """)


def erlang_c(k: int, a: float) -> float:
    """Probability of waiting in M/M/k with offered load a = lambda / mu (Erlang C)."""
    rho = a / k
    top = a**k / math.factorial(k) / (1 - rho)
    return top / (sum(a**n / math.factorial(n) for n in range(k)) + top)


def test_mm1_mean_sojourn_matches_one_over_mu_minus_lambda():
    # mu = 100/s (10 ms), lambda = 60/s: W = 1 / (mu - lambda) = 25 ms
    sc = _scenario(rate=60, mean_ms=10, duration=3000)
    w = _mean_latency_ms(sc, RoundRobinRouter())
    assert abs(w - 25.0) / 25.0 < 0.04, w


def test_md1_mean_sojourn_matches_pollaczek_khinchine():
    # M/D/1: W = S + rho * S / (2 (1 - rho)); S = 10 ms, rho = 0.7 -> 10 + 11.667 = 21.667 ms
    sc = _scenario(rate=70, mean_ms=10, duration=2000, dist="deterministic")
    w = _mean_latency_ms(sc, RoundRobinRouter())
    expected = 10 + 0.7 * 10 / (2 * 0.3)
    assert abs(w - expected) / expected < 0.04, w


def test_mmk_central_fifo_queue_at_router_matches_erlang_c():
    # k = 4 replicas with max_ongoing 1: requests wait at the router in one FIFO queue (M/M/4).
    k, mu, lam = 4, 100.0, 300.0
    sc = _scenario(rate=lam, mean_ms=1000 / mu, duration=600, count=k, max_ongoing=1)
    w = _mean_latency_ms(sc, FirstFreeRouter())
    expected = 1000 * (erlang_c(k, lam / mu) / (k * mu - lam) + 1 / mu)
    assert abs(w - expected) / expected < 0.04, (w, expected)


def test_mmk_as_one_replica_with_k_slots_matches_erlang_c():
    k, mu, lam = 3, 50.0, 120.0
    sc = _scenario(rate=lam, mean_ms=1000 / mu, duration=1500, slots=k)
    w = _mean_latency_ms(sc, RoundRobinRouter())
    expected = 1000 * (erlang_c(k, lam / mu) / (k * mu - lam) + 1 / mu)
    assert abs(w - expected) / expected < 0.04, (w, expected)


def test_erlang_c_helper_known_value():
    # Textbook value: k = 2, a = 1 -> C = 1/3
    assert abs(erlang_c(2, 1.0) - 1 / 3) < 1e-12
