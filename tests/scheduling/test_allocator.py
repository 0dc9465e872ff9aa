from __future__ import annotations

import pytest

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.allocator import (
    ClassDemand,
    NodeCapacity,
    allocate,
    erlang_c,
    priority_waits_ms,
)


def test_erlang_c_hand_values():
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # (1/2 * 2) / (1 + 1 + 1)
    assert erlang_c(2, 2.0) == 1.0
    assert erlang_c(3, 0.0) == 0.0


def test_cobham_two_priorities_mm1():
    # s = 100 ms, lambda 2/s and 3/s: rho 0.2, 0.3; C = 0.5
    w = priority_waits_ms(1, [(0.002, 100.0), (0.003, 100.0)])
    assert w[0] == pytest.approx(0.5 * 100 / 0.8)  # 62.5
    assert w[1] == pytest.approx(0.5 * 100 / (0.8 * 0.5))  # 125


def test_single_class_mmc_wait_and_littles_law_cap():
    classes = {"std": QosClass("std", 1, budget_ms=1000, max_queue_wait_ms=250)}
    alloc = allocate([NodeCapacity("n1", 2, {"default": 100.0})], {"std": ClassDemand(10.0)}, classes)
    a = alloc.for_class("n1", "std")
    assert a.predicted_wait_ms == pytest.approx(100 / 3)  # C(2, 1) * 100 / (2 * 0.5)
    assert a.queue_cap == 5  # 2 * 250 / 100
    assert a.rate_share == 1.0 and a.admitted_rate_per_s == pytest.approx(10.0)
    assert alloc.nodes["n1"].utilisation == pytest.approx(0.5)
    assert alloc.feasible and alloc.over_budget == ()


def test_split_in_proportion_to_capacity():
    classes = {"std": QosClass("std", 1, budget_ms=1000)}
    nodes = [NodeCapacity("cpu", 1, {"default": 100.0}), NodeCapacity("gpu", 1, {"default": 25.0})]
    alloc = allocate(nodes, {"std": ClassDemand(10.0)}, classes)
    assert alloc.for_class("cpu", "std").rate_share == pytest.approx(0.2)  # capacity 10/s vs 40/s
    assert alloc.for_class("gpu", "std").rate_share == pytest.approx(0.8)
    assert alloc.nodes["cpu"].utilisation == pytest.approx(0.2)
    assert alloc.nodes["gpu"].utilisation == pytest.approx(0.2)
    # cap = c * (budget - service) / service, no max_queue_wait
    assert alloc.for_class("cpu", "std").queue_cap == 9
    assert alloc.for_class("gpu", "std").queue_cap == 39


def test_sheddable_share_cut_to_keep_budget():
    classes = {
        "crit": QosClass("crit", 0, budget_ms=500, shedding=Shedding.NEVER),
        "bulk": QosClass("bulk", 2, budget_ms=500, shedding=Shedding.FIRST),
    }
    # 1 slot, 100 ms: crit rho 0.5, bulk offered rho 0.4 f; bulk wait <= 400 ms
    # (0.5 + 0.4 f) * 100 / (0.5 (0.5 - 0.4 f)) <= 400  =>  f <= 0.5 / 1.2
    alloc = allocate(
        [NodeCapacity("n", 1, {"default": 100.0})],
        {"crit": ClassDemand(5.0), "bulk": ClassDemand(4.0)},
        classes,
    )
    assert alloc.admitted_fraction["crit"] == 1.0
    assert alloc.admitted_fraction["bulk"] == pytest.approx(0.5 / 1.2, abs=1e-6)
    assert not alloc.feasible and alloc.over_budget == ("bulk",)
    bulk = alloc.for_class("n", "bulk")
    assert bulk.predicted_wait_ms == pytest.approx(400.0, rel=1e-5)
    assert bulk.rate_share == pytest.approx(0.5 / 1.2, abs=1e-6)
    # bulk queue drains at c (1 - 0.5) / 100 per ms: cap = floor(1 * 0.5 * 400 / 100)
    assert bulk.queue_cap == 2
    crit = alloc.for_class("n", "crit")
    assert crit.predicted_wait_ms == pytest.approx((0.5 + 0.5 / 3) * 100 / 0.5, rel=1e-5)


def test_never_shed_overload_reported():
    classes = {"crit": QosClass("crit", 0, budget_ms=150, shedding=Shedding.NEVER)}
    alloc = allocate([NodeCapacity("n", 1, {"default": 100.0})], {"crit": ClassDemand(9.0)}, classes)
    assert alloc.admitted_fraction["crit"] == 1.0
    assert alloc.over_budget == ("crit",) and not alloc.feasible


def test_unserved_class_and_bad_input():
    classes = {"a": QosClass("a", 0, 100), "b": QosClass("b", 1, 100)}
    alloc = allocate([NodeCapacity("n", 1, {"a": 10.0})], {"a": ClassDemand(1.0), "b": ClassDemand(1.0)}, classes)
    assert alloc.for_class("n", "b") is None and alloc.over_budget == ("b",)
    with pytest.raises(ValueError, match=r"demand\.zzz"):
        allocate([], {"zzz": ClassDemand(1.0)}, classes)
    with pytest.raises(ValueError, match="slots"):
        NodeCapacity("n", 0, {})
    with pytest.raises(ValueError, match="arrival_rate_per_s"):
        ClassDemand(-1.0)
