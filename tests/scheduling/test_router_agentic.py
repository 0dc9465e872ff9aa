from __future__ import annotations

import math
import random

import pytest

from agentic_ray.policies.types import NodeAttrs, QosClass, RetrySettings, Shedding
from agentic_ray.scheduling import ReplicaView, Route, Shed, Wait, create_router

from .conftest import CLASSES, req

CPU = NodeAttrs(node_id="n1", zone="eu", accelerator="cpu")
GPU = NodeAttrs(node_id="n2", zone="us", accelerator="gpu")


def replicas(cpu_ms=100.0, gpu_ms=20.0, cpu_ongoing=0, gpu_ongoing=0, **kw):
    return [
        ReplicaView(
            "cpu",
            CPU,
            slots=1,
            max_ongoing=kw.get("max_ongoing", math.inf),
            ongoing=cpu_ongoing,
            service_ms={"default": cpu_ms},
            cost=1.0,
        ),
        ReplicaView(
            "gpu",
            GPU,
            slots=1,
            max_ongoing=kw.get("max_ongoing", math.inf),
            ongoing=gpu_ongoing,
            service_ms={"default": gpu_ms},
            cost=10.0,
        ),
    ]


def router(**kw):
    return create_router("agentic", random.Random(0), classes=CLASSES, **kw)


def test_cpu_before_gpu_when_both_meet_budget():
    d = router().choose(req("standard", budget_ms=1000), replicas(), 0.0)
    assert isinstance(d, Route) and d.replica_id == "cpu" and d.reason == "meets_budget"
    assert d.predicted_ms == pytest.approx(100.0)


def test_gpu_when_only_it_meets_budget():
    d = router().choose(req("standard", budget_ms=100), replicas(), 0.0)  # cpu 100 ms * 1.1 > 100
    assert isinstance(d, Route) and d.replica_id == "gpu"
    # the queue counts too: cpu busy with 3 -> 400 ms predicted
    d = router().choose(req("standard", budget_ms=300), replicas(cpu_ongoing=3), 0.0)
    assert d.replica_id == "gpu"


def test_queue_ahead_counts_only_same_or_higher_priority():
    views = replicas(cpu_ongoing=5)
    views[0].queued_by_priority = {2: 4}  # 1 executing, 4 sheddable queued behind a critical request
    d = router().choose(req("critical", budget_ms=300), views, 0.0)
    assert d.replica_id == "cpu" and d.predicted_ms == pytest.approx(200.0)
    d = router().choose(req("sheddable", budget_ms=300), views, 0.0)
    assert d.replica_id == "gpu"


def test_placement_respected():
    only_cpu = req("standard", budget_ms=50, allows=lambda a: a.accelerator == "cpu", rule_ids=("eu-only",))
    d = router().choose(only_cpu, replicas(), 0.0)
    assert isinstance(d, Shed) and d.reason == "cannot_meet_deadline"  # gpu would meet it, not allowed
    nowhere = req("standard", allows=lambda a: a.zone == "mars", rule_ids=("mars-only",))
    d = router().choose(nowhere, replicas(), 0.0)
    assert isinstance(d, Shed) and d.reason == "no_eligible_replica" and d.rule_ids == ("mars-only",)


def test_shed_order_by_class_when_budget_cannot_be_met():
    r = router()
    views = replicas(cpu_ongoing=20, gpu_ongoing=20)
    crit = r.choose(req("critical", budget_ms=100), views, 0.0)
    std = r.choose(req("standard", budget_ms=100), views, 0.0)
    shed = r.choose(req("sheddable", budget_ms=100), views, 0.0)
    assert isinstance(crit, Route) and crit.reason == "fastest_never_shed" and crit.replica_id == "gpu"
    assert isinstance(std, Shed) and std.reason == "cannot_meet_deadline" and std.retry_after_s > 0
    assert isinstance(shed, Shed)


def test_shed_threshold_keeps_headroom_for_critical():
    classes = dict(CLASSES, sheddable=QosClass("sheddable", 2, 5000, shedding=Shedding.FIRST, shed_threshold=0.5))
    r = create_router("agentic", random.Random(0), classes=classes)
    views = replicas(cpu_ongoing=6, gpu_ongoing=6, max_ongoing=10)  # (6 + 1) / 10 = 0.7 > 0.5
    d = r.choose(req("sheddable", budget_ms=5000, classes=classes), views, 0.0)
    assert isinstance(d, Shed) and d.reason == "over_shed_threshold"
    assert isinstance(r.choose(req("critical"), views, 0.0), Route)
    views = replicas(cpu_ongoing=3, gpu_ongoing=6, max_ongoing=10)  # cpu at 0.4
    assert isinstance(r.choose(req("sheddable", budget_ms=5000, classes=classes), views, 0.0), Route)


def test_wait_when_all_full_and_unhealthy_skipped():
    views = replicas(cpu_ongoing=2, gpu_ongoing=2, max_ongoing=2)
    assert isinstance(router().choose(req(), views, 0.0), Wait)
    views = replicas()
    views[0].healthy = False
    assert router().choose(req(), views, 0.0).replica_id == "gpu"
    views[1].healthy = False
    d = router().choose(req(), views, 0.0)
    assert isinstance(d, Shed) and d.reason == "no_healthy_replica"


def test_deadline_passed_is_shed():
    d = router().choose(req(deadline=1.0), replicas(), 1.5)
    assert isinstance(d, Shed) and d.reason == "deadline_passed"


def test_observe_feeds_ewma_and_pending():
    r = router()
    views = replicas(cpu_ms=100.0, gpu_ms=20.0)
    request = req("standard", budget_ms=1000)
    r.on_dispatch(request, "cpu", 0.0)
    r.on_dispatch(request, "cpu", 0.0)
    assert r.pending["cpu"] == 2
    # two local pending on a 1-slot cpu: 2 * 100 + 100 = 300 ms
    assert r.choose(req("standard", budget_ms=1000), views, 0.0).predicted_ms == pytest.approx(300.0)
    r.observe(request, "cpu", 500.0, 510.0, True, 0.1)
    r.observe(request, "cpu", 500.0, 510.0, True, 0.1)
    assert r.pending["cpu"] == 0
    assert r.service_ms(views[0], "default") == pytest.approx(500.0)
    # now cpu (500 ms) misses a 400 ms budget; the gpu meets it
    assert r.choose(req("standard", budget_ms=400), views, 0.0).replica_id == "gpu"


def test_hedge_charged_to_budget():
    classes = dict(CLASSES, standard=QosClass("standard", 1, 1000, hedge_after_ms=50.0))
    r = create_router(
        "agentic",
        random.Random(0),
        classes=classes,
        hedge_budget=RetrySettings(ratio=0.0, min_per_s=0.1, max_attempts=2),
    )
    views = replicas()
    d1 = r.choose(req("standard", classes=classes), views, 0.0)
    assert d1.replica_id == "cpu" and d1.hedge_replica_id == "gpu" and d1.hedge_after_ms == 50.0
    d2 = r.choose(req("standard", classes=classes), views, 0.0)  # budget of 1 per 10 s spent
    assert d2.hedge_replica_id is None and d2.hedge_after_ms is None


def test_wait_order_is_edf_and_gate_discipline():
    r = router()
    a = req(now=0.0, budget_ms=900)
    b = req(now=0.1, budget_ms=100)
    assert sorted([a, b], key=r.wait_order) == [b, a]
    assert r.replica_discipline == "gate"
