"""The agentic router's estimators on their own: service table, urgent dispatch rates, head of line."""

from __future__ import annotations

import math

import pytest

from agentic_ray.policies.types import QosClass
from agentic_ray.scheduling.admission import replica_gate, tenant_shares_of
from agentic_ray.scheduling.residual import HeadOfLine, ResidualLife
from agentic_ray.scheduling.service_table import ServiceTable
from agentic_ray.scheduling.types import ReplicaView
from agentic_ray.scheduling.urgency import UrgentRates


def test_service_table_keeps_mean_and_mean_plus_k_deviations():
    table = ServiceTable(alpha=0.5, beta=0.5, k=2.0)
    view = ReplicaView("a", service_ms={"default": 30.0})
    assert table.estimate(view, "m", 50.0) == (30.0, 30.0)  # the published time before any answer
    assert table.observe("a", "m", 10.0, 0.0) is None  # first sample: mean 10, dev 5
    assert table.observe("a", "m", 20.0, 1.0) == 10.0  # returns the mean before the sample
    # dev = 5 + 0.5 * (|20 - 10| - 5) = 7.5; mean = 10 + 0.5 * 10 = 15
    assert table.by_replica("m")["a"] == pytest.approx((15.0, 30.0))
    assert table.mean("a", "m") == pytest.approx(15.0) and table.mean("b", "m") is None
    assert table.estimate(ReplicaView("b"), "m", 50.0) == (50.0, 50.0)


def test_urgent_rates_decay_and_sum_only_more_urgent_work():
    rates = UrgentRates(tau_s=1.0)
    assert rates.below(1) is None and rates.unit(0.0) == 0.0
    for _ in range(10):
        rates.on_dispatch("a", 0, 0.0)  # ten urgent requests at t = 0: rate 10/s
    rates.on_dispatch("a", 2, 0.0)
    assert rates.load("a", 1, 100.0, 1, 0.0) == pytest.approx(10 * 0.1)  # 10/s x 100 ms per slot
    assert rates.load("a", 0, 100.0, 1, 0.0) == 0.0  # nothing more urgent than priority 0
    assert rates.load("a", 1, 100.0, 2, 1.0) == pytest.approx(10 * 0.1 / 2 * math.exp(-1))
    assert rates.below(1)["a"] * rates.unit(1.0) == pytest.approx(10 * math.exp(-1) / 1000.0)
    rates.on_dispatch("a", 0, 1000.0)  # long after: the epoch moves, old rates have decayed away
    assert rates.load("a", 1, 1000.0, 1, 1000.0) == pytest.approx(1.0)


def test_head_of_line_takes_the_first_of_equally_urgent_flights_as_the_running_request():
    life = ResidualLife(window=64, min_samples=4, rebuild_every=1)
    for x in (5.0, 5.0, 5.0, 200.0):
        life.observe(x, 5.0)  # normalised: three at the mean, one 40x
    head = HeadOfLine(life)
    assert head.wait("a", 0.0, 3, 5.0) == 15.0  # nothing in flight: ahead x mean
    head.sent("a", "r1", "m", 0.0)
    head.sent("a", "r2", "m", 0.001)
    # r1 has run 10 ms (past every fast sample): it is the slow one, 190 ms still to go
    assert head.wait("a", 0.010, 2, 5.0) == pytest.approx(190.0 + 5.0)
    head.answered("a", "r1", 0.012)  # r2 now runs, started no earlier than that answer: age 0,
    assert head.wait("a", 0.012, 1, 5.0) == pytest.approx(5.0 * (1 + 1 + 1 + 40) / 4)  # the mean draw


def test_a_replica_gate_is_built_as_a_deployment_builds_it():
    classes = {"standard": QosClass("standard", 1, 1000)}
    tenants = {"a": type("T", (), {"share": 0.3})(), "b": type("T", (), {"share": None})()}
    assert tenant_shares_of(tenants) == {"a": 0.3}
    gate = replica_gate(2, classes, tenant_shares=tenant_shares_of(tenants))
    assert gate.tenant_shares == {"a": 0.3} and gate.budget_bounds
    assert gate.queue_bound("standard") == 16  # no service time known yet: the default bound
    gate.service.observe(10.0, 0.0)
    assert gate.queue_bound("standard") == 64  # 2 slots x 1000 ms / 10 ms = 200, capped at 64
