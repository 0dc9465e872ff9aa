from __future__ import annotations

import random
from collections import Counter

import pytest

from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling import ReplicaView, Route, Shed, Wait, create_router

from .conftest import req

UNAWARE = ["round_robin", "random", "least_loaded", "peak_ewma_p2c", "pow2"]


@pytest.mark.parametrize("name", UNAWARE)
def test_never_exceed_max_ongoing_then_wait(name):
    r = create_router(name, random.Random(5))
    views = [ReplicaView(f"r{i}", max_ongoing=3) for i in range(3)]
    for _ in range(9):
        d = r.choose(req(), views, 0.0)
        assert isinstance(d, Route)
        view = next(v for v in views if v.replica_id == d.replica_id)
        assert view.ongoing < view.max_ongoing
        view.ongoing += 1
    assert isinstance(r.choose(req(), views, 0.0), Wait)
    assert r.replica_discipline == "fifo"
    assert r.wait_order(req(now=1.0)) < r.wait_order(req(now=2.0, budget_ms=1))  # FIFO, not EDF


@pytest.mark.parametrize("name", UNAWARE)
def test_unhealthy_skipped(name):
    r = create_router(name, random.Random(5))
    views = [ReplicaView("a", healthy=False), ReplicaView("b")]
    assert {r.choose(req(), views, 0.0).replica_id for _ in range(10)} == {"b"}
    views[1].healthy = False
    d = r.choose(req(), views, 0.0)
    assert isinstance(d, Shed) and d.reason == "no_healthy_replica"


def test_round_robin_cycles_and_skips_full():
    r = create_router("round_robin", random.Random(0))
    views = [ReplicaView("a"), ReplicaView("b", ongoing=1, max_ongoing=1), ReplicaView("c")]
    assert [r.choose(req(), views, 0.0).replica_id for _ in range(4)] == ["a", "c", "a", "c"]


def test_least_loaded_uses_fewest_and_local_pending():
    r = create_router("least_loaded", random.Random(0))
    views = [ReplicaView("a", ongoing=2), ReplicaView("b", ongoing=1), ReplicaView("c", ongoing=3)]
    assert r.choose(req(), views, 0.0).replica_id == "b"
    for _ in range(3):
        r.on_dispatch(req(), "b", 0.0)  # the view is stale; the router knows of 3 pending
    assert r.choose(req(), views, 0.0).replica_id == "a"


def test_random_uniformish():
    r = create_router("random", random.Random(2))
    views = [ReplicaView(f"r{i}") for i in range(4)]
    counts = Counter(r.choose(req(), views, 0.0).replica_id for _ in range(4000))
    assert all(800 < c < 1200 for c in counts.values())


def test_peak_ewma_p2c_avoids_slow_replica():
    r = create_router("peak_ewma_p2c", random.Random(4))
    views = [ReplicaView("fast"), ReplicaView("slow")]
    request = req()
    for replica, latency in (("fast", 10.0), ("slow", 400.0)):
        r.on_dispatch(request, replica, 0.0)
        r.observe(request, replica, latency, latency, True, 0.0)
    assert {r.choose(req(), views, 0.1).replica_id for _ in range(20)} == {"fast"}
    # with enough pending on the fast one, the slow one wins: 10 * (50 + 1) > 400 * 1
    views[0].ongoing = 50
    assert r.choose(req(), views, 0.1).replica_id == "slow"


def test_placement_optional_for_unaware_routers():
    eu = NodeAttrs(zone="eu")
    us = NodeAttrs(zone="us")
    views = [ReplicaView("eu", eu), ReplicaView("us", us)]
    only_eu = req(allows=lambda a: a.zone == "eu")
    placed = create_router("random", random.Random(0), respect_placement=True)
    assert {placed.choose(only_eu, views, 0.0).replica_id for _ in range(20)} == {"eu"}
    unaware = create_router("random", random.Random(0))
    assert {unaware.choose(only_eu, views, 0.0).replica_id for _ in range(50)} == {"eu", "us"}


def test_central_edf_routes_to_earliest_completion_among_free():
    true_ms = {"cpu": 100.0, "gpu": 10.0}
    r = create_router("central_edf", random.Random(0), service_time=lambda request, rid: true_ms[rid])
    views = [ReplicaView("cpu", slots=2), ReplicaView("gpu", slots=1)]
    d = r.choose(req(), views, 0.0)
    assert d.replica_id == "gpu" and d.predicted_ms == 10.0
    views[1].ongoing = 1  # gpu busy: the free cpu, even though slower
    assert r.choose(req(), views, 0.0).replica_id == "cpu"
    views[0].ongoing = 2
    assert isinstance(r.choose(req(), views, 0.0), Wait)


def test_central_edf_wait_order_and_placement():
    r = create_router("central_edf", random.Random(0))
    a = req(now=0.0, deadline=1.0)
    b = req(now=0.5, deadline=0.6)
    c = req(now=0.2, deadline=0.6)
    assert sorted([a, b, c], key=r.wait_order) == [c, b, a]  # equal deadlines: earlier arrival first
    views = [ReplicaView("eu", NodeAttrs(zone="eu")), ReplicaView("us", NodeAttrs(zone="us"))]
    assert r.choose(req(allows=lambda x: x.zone == "us"), views, 0.0).replica_id == "us"
    d = r.choose(req(allows=lambda x: False), views, 0.0)
    assert isinstance(d, Shed) and d.reason == "no_eligible_replica"


def test_central_edf_drop_late():
    r = create_router("central_edf", random.Random(0), service_time=lambda q, rid: 200.0, drop_late=True)
    d = r.choose(req(budget_ms=100), [ReplicaView("a")], 0.0)
    assert isinstance(d, Shed) and d.reason == "cannot_meet_deadline"
    assert isinstance(r.choose(req(budget_ms=300), [ReplicaView("a")], 0.0), Route)


def test_peak_ewma_ignores_failed_results_without_latency():
    r = create_router("peak_ewma_p2c", random.Random(0))
    r.on_dispatch(req(), "a", 0.0)
    r.observe(req(), "a", float("nan"), float("nan"), False, 0.0)
    assert r.pending["a"] == 0 and "a" not in r.latency
