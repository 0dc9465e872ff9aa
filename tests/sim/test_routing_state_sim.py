"""The simulator drives the routing state Serve's router uses: hedges, the breaker, tenant share caps."""

from __future__ import annotations

import pytest

from agentic_ray.errors import ScenarioValidationError
from agentic_ray.scheduling.registry import create_router
from agentic_ray.sim import build_workload, simulate_runs
from agentic_ray.sim.runner import _Run
from agentic_ray.sim.simulate import scenario_admission, scenario_classes
from agentic_ray.sim.workload import Workload, stream
from tests.sim.conftest import scenario_from

TWO = """
    name: two
    seed: 1
    duration_s: 2
    network_ms: 0.5
    classes:
      standard: {budget_ms: 1000, priority: 1, hedge_after_ms: 50}
    replicas:
      - name: gpu
        count: 2
        slots: 1
        max_ongoing: 4
        service: {default: {dist: deterministic, mean_ms: 20}}
        faults: [{at_s: 0, kind: slowdown, factor: 20, replica: 0}]
    workload:
      arrivals: {process: poisson, rate_rps: 5}
      mix: {standard: 1.0}
"""

STALLS = """
    name: stalls
    seed: 11
    duration_s: 30
    warmup_s: 2
    network_ms: 0.5
    classes:
      standard: {budget_ms: 1000, priority: 1%s}
    replicas:
      - name: gpu
        count: 4
        slots: 2
        max_ongoing: 8
        service: {default: {dist: lognormal, mean_ms: 20, cv: 0.3}}
        faults:
%s
    workload:
      arrivals: {process: poisson, rate_rps: 160}
      mix: {standard: 1.0}
"""
# nine 1 s stalls (20x slower), one replica at a time: the tail a hedge is for
_STALLS = "\n".join(
    f"          - {{at_s: {3 + 3 * k}, kind: slowdown, factor: 20, for_s: 1.0, replica: {k % 4}}}" for k in range(9)
)

ERRORS = """
    name: errors
    seed: 5
    duration_s: 30
    warmup_s: 1
    network_ms: 0.5
    classes:
      standard: {budget_ms: 500, priority: 1}
    replicas:
      - name: gpu
        count: 4
        slots: 2
        max_ongoing: 8
        service: {default: {dist: lognormal, mean_ms: 20, cv: 0.3}}
        faults: [{at_s: 2, kind: error, replica: 0}]
    workload:
      arrivals: {process: poisson, rate_rps: 160}
      mix: {standard: 1.0}
    %s
"""

TENANTS = """
    name: tenants
    seed: 5
    duration_s: 20
    warmup_s: 2
    network_ms: 0.5
    classes:
      standard: {budget_ms: 300, priority: 1}
    replicas:
      - name: gpu
        count: 4
        slots: 2
        max_ongoing: 16
        service: {default: {dist: lognormal, mean_ms: 20, cv: 0.3}}
    workload:
      arrivals: {process: poisson, rate_rps: 480}
      mix: {standard: 1.0}
      tenants: {whale: 0.85, small: 0.15}
    %s
"""


def _agentic(text: str):
    return simulate_runs(scenario_from(text), ["agentic"])["agentic"]


def test_a_simulated_hedge_goes_to_the_other_replica_and_wins():
    sc = scenario_from(TWO)
    full = build_workload(sc, sc.seed)
    first = full.items[0]
    workload = Workload((first,), full.class_budget_ms)  # one request: t, on the slowed replica first
    classes = scenario_classes(sc)
    router = create_router("agentic", stream(1, "router"), classes=classes)
    run = _Run(sc, workload, router, classes, None, "agentic", admission=scenario_admission(sc))
    result = run.run()
    assert (result.hedges_sent, result.hedges_won) == (1, 1)
    stats = result.classes["standard"]
    assert stats.completed == 1 and stats.requests == 1
    # sent after 50 ms without an answer; 20 ms on the healthy replica, 0.5 ms of network each way
    assert stats.latencies_ms[0] == pytest.approx(50.0 + 0.5 + 20.0 + 0.5)
    slow, fast = run.replicas
    assert slow.jobs == {} and fast.jobs == {}  # the losing copy was cancelled: positions given back
    assert not slow.gate.is_busy() and slow.busy == 0 and slow.view.ongoing == 0  # its slot freed
    assert run.state.flight(0) is None and run.state.flight(~0) is None


def test_hedging_lowers_the_p99_of_a_straggler_scenario():
    # with the executing requests' ages (residual: true, the default) the router itself sees a stalled
    # replica's slots held long (20x stalls make the service time heavy-tailed) and routes around it;
    # a router that only sees the queue lengths needs the hedge
    blind = "    router_config: {agentic: {residual: false}}\n"
    plain = _agentic(STALLS % ("", _STALLS) + blind).to_json()
    hedged = _agentic(STALLS % (", hedge_after_ms: 60", _STALLS) + blind).to_json()
    assert hedged["overall"]["p99_ms"] < 0.5 * plain["overall"]["p99_ms"]
    seeing = _agentic(STALLS % ("", _STALLS)).to_json()
    assert seeing["overall"]["p99_ms"] < 0.5 * plain["overall"]["p99_ms"]
    assert hedged["hedges"]["won"] > 0
    assert hedged["hedges"]["sent"] < 0.1 * hedged["overall"]["requests"]  # a few extra copies only
    assert "hedges" not in plain
    for res in (plain, hedged):  # each request counted once, whichever copy answered
        o = res["overall"]
        assert o["requests"] == o["completed"] + o["shed"] + o["failed"]


def test_the_breaker_ejects_a_failing_replica():
    never = _agentic(ERRORS % "breaker: {consecutive_failures: 100000}")  # a breaker that never opens
    default = _agentic(ERRORS % "")
    failed_never = never.classes["standard"].failed
    failed_default = default.classes["standard"].failed
    assert failed_never > 500  # a quarter of the work goes to the failing replica for 28 s
    assert failed_default < 0.05 * failed_never  # ejected after 5 failures in a row, probed, re-ejected


def test_tenant_shares_cap_a_tenant_in_the_replicas_gates():
    free = _agentic(TENANTS % "")
    capped = _agentic(TENANTS % "tenant_shares: {whale: 0.5}")
    assert capped.shed_reasons.get("tenant_share", 0) > 0 and "tenant_share" not in free.shed_reasons
    assert capped.tenants["small"].shed == 0
    small_slo = capped.tenants["small"].within_budget / capped.tenants["small"].requests
    free_slo = free.tenants["small"].within_budget / free.tenants["small"].requests
    assert small_slo > free_slo and small_slo > 0.99


def test_admission_settings_come_from_the_scenario_else_the_policy():
    sc = scenario_from(TENANTS % "tenant_shares: {whale: 0.5}\n    breaker: {consecutive_failures: 2}")
    breaker, retry, shares = scenario_admission(sc)
    assert breaker.consecutive_failures == 2 and retry is None and shares == {"whale": 0.5}
    assert scenario_admission(scenario_from(TENANTS % "")) == (None, None, None)


@pytest.mark.parametrize(
    ("extra", "field"),
    [("tenant_shares: {whale: 1.5}", "tenant_shares.whale"), ("retry: {ratio: 2}", "retry.ratio")],
)
def test_bad_admission_settings_name_the_field(extra, field):
    with pytest.raises(ScenarioValidationError) as info:
        scenario_from(TENANTS % extra)
    assert any(p.path == field for p in info.value.problems)


def test_simulated_gates_are_built_as_a_deployments_are():
    from agentic_ray.scheduling.admission import DEFAULT_QUEUE_BOUND, MAX_QUEUE_BOUND

    sc = scenario_from(TENANTS % "tenant_shares: {whale: 0.5}")
    classes = scenario_classes(sc)
    router = create_router("agentic", stream(1, "router"), classes=classes)
    run = _Run(sc, build_workload(sc, sc.seed), router, classes, None, "agentic", admission=scenario_admission(sc))
    for rep in run.replicas:  # Serve's bounds (budget-sized, 16..64) and the tenants' share caps
        gate = rep.gate
        assert gate.tenant_shares == {"whale": 0.5} and gate.budget_bounds
        assert (gate.default_queue_bound, gate.max_budget_bound) == (DEFAULT_QUEUE_BOUND, MAX_QUEUE_BOUND)
