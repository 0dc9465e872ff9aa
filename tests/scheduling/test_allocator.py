from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.allocator import (
    Capacities,
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


def _classes():
    return {
        "crit": QosClass("crit", 0, budget_ms=150, shedding=Shedding.NEVER, max_queue_wait_ms=30),
        "bulk": QosClass("bulk", 2, budget_ms=500, shedding=Shedding.FIRST),
    }


def test_a_stream_is_split_only_over_its_eligible_nodes():
    nodes = [NodeCapacity(n, 2, {"default": 10.0}) for n in ("eu1", "eu2", "us1")]
    eu = frozenset({"eu1", "eu2"})
    alloc = allocate(nodes, {"crit": ClassDemand(40.0, eligible=eu)}, _classes())
    assert alloc.for_class("us1", "crit") is None  # no share of EU demand, however idle
    assert alloc.for_class("eu1", "crit").admitted_rate_per_s == pytest.approx(20.0)
    assert alloc.for_class("eu2", "crit").rate_share == pytest.approx(0.5)
    assert alloc.nodes["us1"].utilisation == 0.0 and alloc.nodes["us1"].classes == {}
    # two streams of one class add up on the nodes they share
    both = allocate(nodes, {"crit": [ClassDemand(40.0, eligible=eu), ClassDemand(30.0)]}, _classes())
    assert both.for_class("eu1", "crit").admitted_rate_per_s == pytest.approx(20.0 + 10.0)
    assert both.for_class("us1", "crit").admitted_rate_per_s == pytest.approx(10.0)
    assert both.for_class("us1", "crit").rate_share == pytest.approx(10.0 / 70.0)
    # a stream whose nodes are all gone is demand no one serves
    gone = allocate(nodes, {"crit": ClassDemand(5.0, eligible=frozenset({"ap1"}))}, _classes())
    assert gone.over_budget == ("crit",) and gone.admitted_fraction["crit"] == 0.0


def test_admission_is_per_node_an_overloaded_region_sheds_only_its_own_work():
    nodes = [NodeCapacity("eu", 1, {"default": 100.0}), NodeCapacity("us", 1, {"default": 100.0})]
    demand = {
        "crit": ClassDemand(5.0, eligible=frozenset({"eu"})),  # EU busy with critical work: rho 0.5
        "bulk": [ClassDemand(4.0, eligible=frozenset({"eu"})), ClassDemand(4.0, eligible=frozenset({"us"}))],
    }
    classes = {
        "crit": QosClass("crit", 0, budget_ms=500, shedding=Shedding.NEVER),
        "bulk": QosClass("bulk", 2, budget_ms=500, shedding=Shedding.FIRST),
    }
    alloc = allocate(nodes, demand, classes)
    # EU: the hand-checked case of test_sheddable_share_cut_to_keep_budget, f = 0.5 / 1.2
    assert alloc.for_class("eu", "bulk").admitted_rate_per_s == pytest.approx(4.0 * 0.5 / 1.2, abs=1e-6)
    assert alloc.for_class("us", "bulk").admitted_rate_per_s == pytest.approx(4.0)  # US admits all of its own
    assert alloc.admitted_fraction["bulk"] == pytest.approx((4.0 * 0.5 / 1.2 + 4.0) / 8.0, abs=1e-6)
    assert alloc.over_budget == ("bulk",)
    # caps: US bulk has no higher-priority load, EU bulk drains at half speed
    assert alloc.for_class("us", "bulk").queue_cap == 4 and alloc.for_class("eu", "bulk").queue_cap == 2
    assert alloc.queue_caps() == {"eu": {"crit": 4, "bulk": 2}, "us": {"bulk": 4}}  # crit: 1 * (500 - 100) / 100


def test_class_demand_eligible_must_be_a_frozenset():
    with pytest.raises(ValueError, match="eligible"):
        ClassDemand(1.0, eligible=["n1"])
    with pytest.raises(ValueError, match="unique"):
        allocate([NodeCapacity("n", 1, {})] * 2, {}, _classes())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 24), st.floats(1.0, 200.0), st.floats(1.0, 200.0), st.floats(1.0, 200.0)),
        min_size=1,
        max_size=6,
    ),
    st.floats(0.0, 400.0),
    st.floats(0.0, 400.0),
    st.floats(0.0, 400.0),
)
def test_every_node_s_waits_are_cobham_s_formula_at_its_admitted_rates(specs, r_crit, r_std, r_bulk):
    classes = {
        "crit": QosClass("crit", 0, budget_ms=150, shedding=Shedding.NEVER),
        "std": QosClass("std", 1, budget_ms=800, max_queue_wait_ms=200),
        "std2": QosClass("std2", 1, budget_ms=900),
        "bulk": QosClass("bulk", 2, budget_ms=5000, shedding=Shedding.FIRST),
    }
    nodes = [
        NodeCapacity(f"n{i}", c, {"crit": a, "std": b, "std2": b, "bulk": d}) for i, (c, a, b, d) in enumerate(specs)
    ]
    demand = {
        "crit": ClassDemand(r_crit),
        "std": ClassDemand(r_std),
        "std2": ClassDemand(r_std / 2),
        "bulk": ClassDemand(r_bulk),
    }
    alloc = allocate(nodes, demand, classes)
    for node in nodes:
        got = alloc.nodes[node.node_id].classes
        rates = {k: got[k].admitted_rate_per_s / 1000.0 for k in got}
        std = rates["std"] + rates["std2"]
        levels = [
            (rates["crit"], node.service_ms["crit"]),
            (std, node.service_ms["std"]),
            (rates["bulk"], node.service_ms["bulk"]),
        ]
        want = priority_waits_ms(node.slots, levels)
        for k, w in zip(("crit", "std", "bulk"), want, strict=True):
            assert got[k].predicted_wait_ms == pytest.approx(w, rel=1e-9, abs=1e-9)
        # a class that may be shed waits within what it is allowed wherever it was cut
        for k in ("std", "bulk"):
            if got[k].admitted_rate_per_s < demand[k].arrival_rate_per_s * got[k].rate_share - 1e-9:
                assert got[k].predicted_wait_ms <= got[k].allowed_wait_ms + 1e-6


def test_capacities_columns_give_the_same_allocation_and_are_checked():
    nodes = [NodeCapacity("a", 2, {"default": 10.0}), NodeCapacity("b", 4, {"crit": 20.0})]
    demand = {"crit": ClassDemand(50.0)}
    rows = allocate(nodes, demand, _classes())
    columns = allocate(Capacities.of(nodes), demand, _classes())
    assert dict(columns.nodes) == dict(rows.nodes) and columns.inflight_caps() == {
        "a": {"crit": 2 + 6},
        "b": {"crit": 4 + 6},
    }
    # a class a unit has no time for: not served, unless a default is given
    bare = Capacities(["r1"], [2], [{}])
    assert allocate(bare, demand, _classes()).over_budget == ("crit",)
    assert allocate(bare, demand, _classes(), default_service_ms=10.0).for_class("r1", "crit").queue_cap == 6
    with pytest.raises(ValueError, match=r"slots: must be an integer >= 1, got 0 \(node r1\)"):
        allocate(Capacities(["r1"], [0], [{}]), demand, _classes())
    with pytest.raises(ValueError, match=r"service_ms\.crit: must be a finite number > 0, got -1\.0 \(node r1\)"):
        allocate(Capacities(["r1"], [1], [{"crit": -1.0}]), demand, _classes())
    with pytest.raises(ValueError, match="one per node id"):
        Capacities(["r1", "r2"], [1], [{}, {}])
