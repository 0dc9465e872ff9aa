"""Determinism, faults, placement counting and the JSON report of whole runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentic_ray.sim import build_workload, run_router, simulate
from agentic_ray.sim.simulate import scenario_classes
from tests.sim.conftest import FirstFreeRouter, RoundRobinRouter, scenario_from

BASE = """
    name: small
    seed: 3
    duration_s: 20
    warmup_s: 2
    network_ms: 0.5
    classes:
      critical: {budget_ms: 60, priority: 0, shedding: never}
      standard: {budget_ms: 200, priority: 1}
      sheddable: {budget_ms: 500, priority: 2, shedding: first}
    replicas:
      - name: gpu
        count: 4
        accelerator: gpu
        slots: 2
        max_ongoing: 6
        service: {default: {dist: lognormal, mean_ms: 20, cv: 0.8}}
    workload:
      arrivals: {process: mmpp, base_rps: 200, burst_rps: 600, burst_every_s: 5, burst_for_s: 1, switching: periodic}
      mix: {critical: 0.2, standard: 0.5, sheddable: 0.3}
"""


@pytest.mark.parametrize("router", ["agentic", "pow2", "central_edf", "clairvoyant"])
def test_same_scenario_and_seed_give_identical_output(router):
    sc = scenario_from(BASE)
    a = simulate(sc, [router], seed=5)
    b = simulate(sc, [router], seed=5)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    c = simulate(sc, [router], seed=6)
    assert c["results"][router]["overall"] != a["results"][router]["overall"]


def test_json_shape_and_accounting():
    sc = scenario_from(BASE)
    report = simulate(sc, ["agentic", "pow2"])
    assert report["scenario"] == "small" and report["seed"] == 3
    class_fields = {
        "requests",
        "completed",
        "shed",
        "failed",
        "mean_ms",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "slo_attainment",
    }
    for res in report["results"].values():
        assert set(res["classes"]) == {"critical", "standard", "sheddable"}
        assert class_fields <= set(res["overall"])
        for c in (*res["classes"].values(), res["overall"]):
            assert class_fields <= set(c)
            assert c["requests"] == c["completed"] + c["shed"] + c["failed"]
            assert 0 <= c["slo_attainment"] <= 1
        assert res["overall"]["requests"] == sum(c["requests"] for c in res["classes"].values())
        assert res["violations"] == 0
        assert res["goodput_rps"] > 0
        assert res["decision_us_p50"] is None  # no timer passed
    json.dumps(report, allow_nan=False)


def test_warmup_requests_are_not_counted():
    sc = scenario_from(BASE)
    wl = build_workload(sc, 1)
    measured = sum(1 for it in wl.items if it.measured)
    assert 0 < measured < len(wl.items)
    res = run_router(sc, wl, RoundRobinRouter())
    assert sum(s.requests for s in res.classes.values()) == measured


def _trace_scenario(tmp_path, faults, arrivals):
    (tmp_path / "t.csv").write_text("at_s\n" + "".join(f"{a}\n" for a in arrivals))
    return scenario_from(
        f"""
        name: faults
        duration_s: 20
        classes: {{c: {{budget_ms: 1000}}}}
        replicas:
          - name: r
            count: 2
            max_ongoing: 1
            service: {{default: {{dist: deterministic, mean_ms: 10}}}}
            faults: {faults}
        workload:
          arrivals: {{process: trace, file: t.csv}}
          mix: {{c: 1}}
        """,
        base_dir=str(tmp_path),
    )


def test_slowdown_multiplies_service_time_while_it_lasts(tmp_path):
    sc = _trace_scenario(
        tmp_path, "[{at_s: 2.5, kind: slowdown, factor: 5, for_s: 2, replica: all}]", [0, 1, 2, 3, 4, 5, 6]
    )
    res = run_router(sc, build_workload(sc, 0), FirstFreeRouter())
    lat = [round(x, 6) for x in res.classes["c"].latencies_ms]
    assert lat == [10, 10, 10, 50, 50, 10, 10]


def test_crash_fails_in_flight_work_and_removes_the_replica(tmp_path):
    sc = _trace_scenario(tmp_path, "[{at_s: 5.005, kind: crash}]", [5.0, 5.001, 6.0, 6.001, 7.0])
    res = run_router(sc, build_workload(sc, 0), FirstFreeRouter())
    c = res.classes["c"]
    assert c.failed == 1  # the request executing on r-0 at the crash
    assert c.completed == 4
    # afterwards only r-1 is left: 6.001 waits at the router for the one at 6.0
    assert sorted(round(x, 6) for x in c.latencies_ms) == [10, 10, 10, 19]


def test_everything_crashed_leaves_waiting_requests_failed(tmp_path):
    sc = _trace_scenario(tmp_path, "[{at_s: 1, kind: crash, replica: all}]", [0.5, 2, 3])
    res = run_router(sc, build_workload(sc, 0), FirstFreeRouter())
    assert (res.classes["c"].completed, res.classes["c"].failed) == (1, 2)


def test_crash_under_load_with_registry_routers():
    sc = scenario_from(BASE.replace("service:", "faults: [{at_s: 10, kind: crash}]\n        service:"))
    report = simulate(sc, ["agentic", "pow2"])
    for res in report["results"].values():
        assert res["overall"]["failed"] >= 1
        assert res["overall"]["completed"] > 0


POLICY = Path(__file__).resolve().parents[2] / "examples" / "policies" / "platform.yaml"


def test_policy_classifies_and_placement_violations_are_counted(tmp_path):
    sc = scenario_from(
        f"""
        name: residency
        duration_s: 10
        policy: {POLICY}
        replicas:
          - name: eu
            count: 2
            zone: eu-west-1a
            labels: {{capacity: on-demand}}
            slots: 2
            max_ongoing: 4
            service: {{default: {{dist: exponential, mean_ms: 10}}}}
          - name: us
            count: 2
            zone: us-east-1a
            labels: {{capacity: on-demand}}
            slots: 2
            max_ongoing: 4
            service: {{default: {{dist: exponential, mean_ms: 10}}}}
        workload:
          arrivals: {{process: poisson, rate_rps: 200}}
          mix: {{standard: 0.7, sheddable: 0.3}}
          tenants: {{bolt-eu: 0.5, contoso-us: 0.5}}
        """
    )
    wl = build_workload(sc, 0)
    assert all(it.request.allows is not None for it in wl.items)  # residency rules matched
    report = simulate(sc, ["agentic", "pow2"])
    assert report["results"]["agentic"]["violations"] == 0
    assert report["results"]["pow2"]["violations"] > 0  # Serve's pow2 ignores placement
    assert report["results"]["agentic"]["overall"]["completed"] > 0


def test_mix_class_missing_from_the_policy_is_a_scenario_error():
    from agentic_ray.errors import ScenarioValidationError

    sc = scenario_from(
        f"""
        name: bad-mix
        duration_s: 1
        policy: {POLICY}
        replicas: [{{name: r, service: {{default: {{dist: exponential, mean_ms: 10}}}}}}]
        workload:
          arrivals: {{process: poisson, rate_rps: 10}}
          mix: {{gold: 1}}
        """
    )
    with pytest.raises(ScenarioValidationError) as info:
        simulate(sc, ["pow2"])
    assert info.value.problems[0].path == "workload.mix.gold"


class _GateRouter(FirstFreeRouter):
    replica_discipline = "gate"


def test_gate_replicas_run_priority_first_and_drop_expired_work(tmp_path):
    (tmp_path / "t.csv").write_text("at_s,class\n0.000,low\n0.001,low\n0.002,high\n0.003,tight\n")
    sc = scenario_from(
        """
        name: gate
        duration_s: 1
        classes:
          high: {budget_ms: 100, priority: 0}
          low: {budget_ms: 1000, priority: 2}
          tight: {budget_ms: 15, priority: 1}
        replicas:
          - {name: r, slots: 1, service: {default: {dist: deterministic, mean_ms: 10}}}
        workload:
          arrivals: {process: trace, file: t.csv}
          mix: {low: 1}
        """,
        base_dir=str(tmp_path),
    )
    res = run_router(sc, build_workload(sc, 0), _GateRouter(), classes=scenario_classes(sc))
    # the first low starts at 0; high (queued behind a low) starts at 10 ms; the second low at 20 ms
    assert [round(x, 6) for x in res.classes["high"].latencies_ms] == [18.0]
    assert [round(x, 6) for x in res.classes["low"].latencies_ms] == [10.0, 29.0]
    # tight (deadline 18 ms) is still queued at 20 ms: dropped, counted shed
    assert (res.classes["tight"].shed, res.classes["tight"].completed) == (1, 0)
    assert res.shed_reasons
