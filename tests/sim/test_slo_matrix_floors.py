"""``benchmarks/slo_matrix.py``'s floor logic on synthetic figures: each floor fails just past its line."""

from __future__ import annotations

import pytest

from tests._bench import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("slo_matrix")


def result(critical=1.0, goodput=100.0, cost=20.0, shed=None, requests=1000):
    shed = shed or {}
    classes = {c: {"slo_attainment": critical if c == "critical" else 1.0, "requests": requests, "shed": 0}
               for c in ("critical", "standard", "sheddable")}  # fmt: skip
    return {
        "classes": classes,
        "overall": {"shed": sum(sum(r.values()) for r in shed.values())},
        "goodput_rps": goodput,
        "cost_per_1k_good": cost,
        "shed_reasons_by_class": shed,
    }


def doc(agentic, bound=None, baselines=None, default=None, explicit=None):
    results = {"agentic": agentic, "clairvoyant": bound or result(), **(baselines or {"pow2": result(0.5)})}
    variants = {}
    if default is not None:
        variants = {"default": result(default), "explicit": result(explicit)}
    return {
        "results": results,
        "priorities": {"critical": 0, "standard": 1, "sheddable": 2},
        "shedding_variants": variants,
    }


def test_critical_within_half_a_point_of_the_bound(bench):
    assert bench.scenario_floors(doc(result(0.955), bound=result(0.96)))["critical_vs_bound_ok"]
    assert not bench.scenario_floors(doc(result(0.9549), bound=result(0.96)))["critical_vs_bound_ok"]


def test_goodput_at_least_95_percent_of_the_bound(bench):
    assert bench.scenario_floors(doc(result(goodput=95.0)))["goodput_ok"]
    e = bench.scenario_floors(doc(result(goodput=94.9)))
    assert not e["goodput_ok"] and not e["ok"]


def test_critical_at_least_every_baseline(bench):
    e = bench.scenario_floors(doc(result(0.99), baselines={"pow2": result(0.5), "least_loaded": result(0.991)}))
    assert e["best_baseline"] == "least_loaded" and not e["critical_vs_baselines_ok"]
    e = bench.scenario_floors(doc(result(0.991), baselines={"pow2": result(0.5), "least_loaded": result(0.991)}))
    assert e["critical_vs_baselines_ok"]
    # central_edf knows true service times: a reference, not a baseline
    assert "central_edf" not in bench.BASELINES


def test_decided_shed_rate_is_non_increasing_with_urgency(bench):
    inverted = {"critical": {"cannot_meet_deadline": 3}, "standard": {"queue_full": 2}}
    e = bench.scenario_floors(doc(result(shed=inverted)))
    assert not e["shed_order_ok"] and e["decided_shed_rate"]["critical"] == pytest.approx(0.003)
    ordered = {"critical": {"deadline_passed_in_queue": 9}, "standard": {"queue_full": 2}, "sheddable": {"x": 5}}
    assert bench.scenario_floors(doc(result(shed=ordered)))["shed_order_ok"]  # expiry is not a decision
    assert bench.shed_monotone({"a": 0.0, "b": 0.1, "c": 0.1}, {"a": 0, "b": 1, "c": 2})
    assert not bench.shed_monotone({"a": 0.0, "b": 0.2, "c": 0.1}, {"a": 0, "b": 1, "c": 2})


def test_default_shedding_matches_the_explicit_run_within_a_tenth_of_a_point(bench):
    assert bench.scenario_floors(doc(result(), default=0.999, explicit=0.9999))["default_shedding_ok"]
    assert not bench.scenario_floors(doc(result(), default=0.998, explicit=0.9999))["default_shedding_ok"]


def test_cost_no_higher_than_the_best_baseline_at_equal_or_better_critical(bench):
    base = {"pow2": result(0.9, cost=30.0), "least_loaded": result(0.99, cost=25.0)}
    assert bench.scenario_floors(doc(result(0.99, cost=25.0), baselines=base))["cost_ok"]
    assert not bench.scenario_floors(doc(result(0.99, cost=25.2), baselines=base))["cost_ok"]
    assert not bench.scenario_floors(doc(result(0.98, cost=1.0), baselines=base))["cost_ok"]


def test_shedding_variants(bench):
    from agentic_ray.policies.types import Shedding
    from agentic_ray.sim import load_scenario

    sc = load_scenario(bench.SCENARIO_DIR / "hol.yaml")
    default = bench.shedding_variant(sc, "default")
    assert {c.shedding for c in default.classes.values()} == {Shedding.WHEN_OVERLOADED}
    explicit = bench.shedding_variant(sc, "explicit")
    modes = {n: c.shedding for n, c in explicit.classes.items()}
    assert modes == {"critical": Shedding.NEVER, "standard": Shedding.WHEN_OVERLOADED, "sheddable": Shedding.FIRST}
    assert explicit.classes["critical"].hedge_after_ms == sc.classes["critical"].hedge_after_ms
