"""The ``clairvoyant`` bound and the ``oracle`` -> ``central_edf`` rename."""

from __future__ import annotations

import random

import pytest

from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling import ReplicaView, Route, Shed, Wait, create_router
from agentic_ray.scheduling.registry import router_names

from .conftest import req


def clairvoyant(true_ms, network_ms=0.0):
    return create_router(
        "clairvoyant", random.Random(0), service_time=lambda request, rid: true_ms[rid], network_ms=network_ms
    )


def test_earliest_finish_counts_the_network_both_ways():
    r = clairvoyant({"cpu": 100.0, "gpu": 10.0}, network_ms=1.0)
    d = r.choose(req(budget_ms=50), [ReplicaView("cpu"), ReplicaView("gpu")], 0.0)
    assert isinstance(d, Route) and d.replica_id == "gpu" and d.predicted_ms == pytest.approx(12.0)


def test_waits_for_a_busy_replica_that_finishes_first_and_drops_what_would_be_late():
    r = clairvoyant({"cpu": 100.0, "gpu": 10.0})
    views = [ReplicaView("cpu"), ReplicaView("gpu")]
    first = req(budget_ms=1000)
    assert r.choose(first, views, 0.0).replica_id == "gpu"
    r.on_dispatch(first, "gpu", 0.0)
    views[1].ongoing = 1  # gpu busy until 10 ms: 10 + 10 = 20 ms beats the free cpu's 100 ms
    d = r.choose(req(budget_ms=50), views, 0.005)
    assert isinstance(d, Wait) and d.reason == "faster_replica_busy"
    d = r.choose(req(budget_ms=12), views, 0.005)  # even the gpu answers at 20 ms > 17 ms: dropped now
    assert isinstance(d, Shed) and d.reason == "cannot_meet_deadline" and d.predicted_ms == pytest.approx(15.0)
    r.observe(first, "gpu", 10.0, 10.0, True, 0.010)
    views[1].ongoing = 0
    assert r.choose(req(budget_ms=50), views, 0.010).replica_id == "gpu"


def test_central_queue_by_priority_then_deadline():
    r = create_router("clairvoyant", random.Random(0))
    late_critical = req("critical", deadline=2.0)
    early_standard = req("standard", deadline=0.1)
    early_critical = req("critical", deadline=1.0)
    order = sorted([early_standard, late_critical, early_critical], key=r.wait_order)
    assert order == [early_critical, late_critical, early_standard]
    views = [ReplicaView("eu", NodeAttrs(zone="eu"))]
    assert r.choose(req(allows=lambda a: False), views, 0.0).reason == "no_eligible_replica"
    views[0].healthy = False
    assert r.choose(req(), views, 0.0).reason == "no_healthy_replica"


def test_oracle_is_an_alias_of_central_edf_with_a_warning():
    assert "oracle" not in router_names() and {"central_edf", "clairvoyant"} <= set(router_names())
    with pytest.warns(DeprecationWarning, match="renamed 'central_edf'.*'clairvoyant'"):
        r = create_router("oracle", random.Random(0))
    assert r.name == "central_edf"
