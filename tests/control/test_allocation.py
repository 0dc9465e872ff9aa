"""Allocation input and rounds: offered load per class, leases per node and zone."""

from __future__ import annotations

import pytest

from agentic_ray.control import Allocation, ArrivalCounter, NodeLease, leases_by_zone, plan_allocation, static_caps
from tests.control._fixtures import fraud_policy, node, snapshot


def test_arrival_rates_are_counts_over_the_time_since_the_last_round():
    c = ArrivalCounter()
    c.add("critical", 30)
    c.add("critical", 10)
    c.add("standard", 5)
    assert c.take_rates(now=100.0, first_window_s=2.0) == {"critical": 20.0, "standard": 2.5}  # first: 2 s back
    c.add("critical", 12)
    assert c.take_rates(now=104.0, first_window_s=2.0) == {"critical": 3.0}
    assert c.take_rates(now=104.0, first_window_s=2.0) == {}
    c.add("critical", 1)
    assert c.take_rates(now=104.0, first_window_s=2.0) == {"critical": 1000.0}  # at least 1 ms elapses


def test_plan_allocation_caps_every_reported_node_and_stamps_the_round():
    policy = fraud_policy()
    nodes = {"fast": node("fast", cpus=2.0), "slow": node("slow", zone="us-east", cpus=2.0)}
    snaps = {
        "fast": snapshot("fast", service_ms={"critical|fraud": 5.0}),
        "slow": snapshot("slow", zone="us-east", service_ms={"critical|fraud": 50.0}),
    }
    first = plan_allocation(policy, nodes, snaps, {}, None, now=10.0, allocate_interval_s=0.25)
    assert first.revision == 1 and first.lease_s == 1.0 and first.granted_at == 10.0
    assert first.leases == static_caps(policy, {"fast": 2.0, "slow": 2.0})
    second = plan_allocation(policy, nodes, snaps, {"critical": 20.0}, first, now=11.0, allocate_interval_s=1.0)
    assert second.revision == 2 and second.lease_s == 3.0 and second.arrival_rates_per_s == {"critical": 20.0}
    # critical: 150 ms budget; cap = slots + floor(slots * (budget - service) / service)
    assert second.leases["fast"]["critical"] == 2 + 2 * (150 - 5) // 5
    assert second.leases["slow"]["critical"] == 2 + 2 * (150 - 50) // 50
    by_zone = leases_by_zone(second, nodes)
    assert set(by_zone) == {"eu-west", "us-east"}
    assert by_zone["eu-west"]["fast"] == NodeLease(dict(second.leases["fast"]), 11.0, 3.0, 2)
    assert leases_by_zone(second, {"fast": nodes["fast"]}).keys() == {"eu-west"}  # a node gone since


def test_allocation_json_round_trip_and_empty():
    a = Allocation(3, {"n": {"critical": 4}}, 1.5, 3.0, {"critical": 2.0})
    assert Allocation.from_dict(a.to_dict()) == a
    assert Allocation.from_dict({}) is None and Allocation.from_dict(None) is None
    with pytest.raises(KeyError):
        a.node_lease("other")
