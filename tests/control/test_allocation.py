"""Allocation input and rounds: offered load per class, leases per node and zone."""

from __future__ import annotations

import pytest

from agentic_ray.control import (
    Allocation,
    ArrivalCounter,
    Eligibility,
    NodeInfo,
    NodeLease,
    OfferedLoad,
    ReplicaClassStats,
    ReplicaReport,
    ZoneReport,
    leases_by_zone,
    plan_allocation,
    static_caps,
)
from agentic_ray.policies import load_policy
from agentic_ray.scheduling.allocator import ClassDemand, NodeCapacity, allocate
from tests.control._fixtures import REPO, fraud_policy, node, snapshot, summary


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


def platform_cluster():
    """eu-west-1a/1b and us-east-1a/1b, 4 CPUs each; e3 is spot capacity (no critical work there)."""
    policy = load_policy(REPO / "examples" / "policies" / "platform.yaml")
    layout = {
        "e1": ("eu-west-1a", "on-demand"),
        "e2": ("eu-west-1b", "on-demand"),
        "e3": ("eu-west-1a", "spot"),
        "u1": ("us-east-1a", "on-demand"),
        "u2": ("us-east-1b", "on-demand"),
    }
    nodes = {n: NodeInfo(n, z, "cpu", {"zone": z, "capacity": c}, {"CPU": 4.0}) for n, (z, c) in layout.items()}
    snaps = {
        n: snapshot(n, zone=z, service_ms={"critical|-": 10.0, "standard|-": 50.0}) for n, (z, _) in layout.items()
    }
    return policy, nodes, snaps


def eu_only_critical_load(nodes) -> OfferedLoad:
    """EU tenants' critical work (observed only in EU zones, 150/s each), standard work everywhere."""
    load = OfferedLoad()
    for zone in ("eu-west-1a", "eu-west-1b", "us-east-1a", "us-east-1b"):
        summaries = {"s": summary("standard", None, [40.0] * 20)}
        if zone.startswith("eu-"):
            summaries["c"] = summary("critical", None, [9.0] * 150)
        load.observe(ZoneReport(zone, summaries=summaries))
    r_eu = ReplicaReport("app/llm", "r-eu", "e1", "eu-west-1a", "cpu", 2, 2, "v", None, 0.0, 1.0,
                         {"critical": ReplicaClassStats(offered=40)})  # fmt: skip
    r_us = ReplicaReport("app/llm", "r-us", "u1", "us-east-1a", "cpu", 2, 2, "v", None, 0.0, 1.0, {})
    load.observe(ZoneReport("eu-west-1a", replicas={"r-eu": r_eu}))
    load.observe(ZoneReport("us-east-1a", replicas={"r-us": r_us}))
    return load


def test_eu_only_critical_demand_gives_us_nodes_and_replicas_no_critical_share():
    policy, nodes, snaps = platform_cluster()
    demand = eu_only_critical_load(nodes).take(now=1.0, snapshots={}, first_window_s=1.0)
    static = static_caps(policy, {n: 4.0 for n in nodes})
    a = plan_allocation(policy, nodes, snaps, demand, None, now=1.0, allocate_interval_s=1.0)
    # critical (max_queue_wait 30 ms, 10 ms service): slots + floor(slots * 30 / 10) where the demand reaches
    assert a.leases["e1"]["critical"] == a.leases["e2"]["critical"] == 4 + 4 * 30 // 10
    for n in ("u1", "u2", "e3"):  # US nodes, and EU spot capacity (rule critical-on-demand): the static floor
        assert a.leases[n]["critical"] == static[n]["critical"] == 32 * 4
    # standard drains slower behind EU's critical load than in the US: lower caps in the EU
    assert a.leases["u1"]["standard"] == 4 + 4 * 200 // 50
    assert a.leases["e1"]["standard"] < a.leases["u1"]["standard"]
    assert a.rates_by_zone["eu-west-1a"] == {"critical": 190.0, "standard": 20.0}  # 150 tasks + 40 Serve
    assert a.rates_by_zone["us-east-1a"] == {"standard": 20.0}
    # Serve: the EU replica's critical cap from its demand (2 slots, default 10 ms), the US one's static
    assert a.replica_caps == {
        "e1": {"r-eu": {"critical": 2 + 2 * 30 // 10, "standard": 128 * 2, "sheddable": 512 * 2}},
        "u1": {"r-us": {"critical": 32 * 2, "standard": 128 * 2, "sheddable": 512 * 2}},
    }
    assert a.node_lease("e1").replica_caps == {"r-eu": a.replica_caps["e1"]["r-eu"]}
    assert Allocation.from_dict(a.to_dict()) == a
    # shares: the allocator gives no US node any critical arrivals
    eligibility = Eligibility(policy, nodes)
    critical = [
        ClassDemand(s.rate_per_s, eligibility.node_ids("critical", s.zone, s.workflow))
        for s in demand.tasks
        if s.qos == "critical"
    ]
    capacity = [NodeCapacity(n, 4, {"default": 10.0}) for n in nodes]
    shares = allocate(capacity, {"critical": critical}, policy.classes)
    assert {n for n in nodes if shares.for_class(n, "critical") is not None} == {"e1", "e2"}
    assert sum(shares.for_class(n, "critical").admitted_rate_per_s for n in ("e1", "e2")) == pytest.approx(300.0)


def test_cluster_wide_demand_the_old_way_gave_us_nodes_the_eu_critical_cap():
    policy, nodes, snaps = platform_cluster()
    a = plan_allocation(policy, nodes, snaps, {"critical": 300.0}, None, now=1.0, allocate_interval_s=1.0)
    assert a.leases["u1"]["critical"] == a.leases["e1"]["critical"] == a.leases["e3"]["critical"] == 16
