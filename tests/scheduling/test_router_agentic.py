from __future__ import annotations

import math
import random

import pytest

from agentic_ray.policies.types import NodeAttrs, QosClass, Shedding
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
    views[0].queued_by_priority = {2: 4}  # 1 executing, 4 sheddable queued behind a standard request
    d = router().choose(req("standard", budget_ms=300), views, 0.0)
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


def test_wait_order_is_priority_then_edf_like_the_gate():
    # Held requests must leave the router in the order the replicas' AdmissionGate would start them:
    # class priority first, then earliest deadline (a plain EDF order let a sheddable request with a
    # near deadline take a freed position ahead of a critical one).
    r = router()
    a = req(now=0.0, budget_ms=900)
    b = req(now=0.1, budget_ms=100)
    assert sorted([a, b], key=r.wait_order) == [b, a]  # same class: EDF
    crit = req("critical", now=0.2, budget_ms=500)  # deadline 0.7, later than b's 0.2
    shed = req("sheddable", now=0.0, budget_ms=50)
    assert sorted([a, b, shed, crit], key=r.wait_order) == [crit, b, a, shed]
    same = [req(now=0.3, id="x", budget_ms=100), req(now=0.2, id="y", budget_ms=200)]  # equal deadlines
    assert [q.id for q in sorted(same, key=r.wait_order)] == ["y", "x"]
    assert r.replica_discipline == "gate"


def test_never_shed_ranks_by_predicted_completion_not_cost():
    views = replicas(cpu_ms=100.0, gpu_ms=20.0)
    std = router().choose(req("standard", budget_ms=1000), views, 0.0)
    crit = router().choose(req("critical", budget_ms=1000), views, 0.0)
    assert std.replica_id == "cpu"  # both meet the budget: the cheaper one
    assert isinstance(crit, Route) and crit.replica_id == "gpu" and crit.reason == "meets_budget"
    assert crit.predicted_ms == pytest.approx(20.0)


def test_never_shed_waits_for_a_full_replica_that_would_meet_the_budget():
    views = replicas(cpu_ms=150.0, gpu_ms=30.0, gpu_ongoing=2, max_ongoing=2)
    views[0].ongoing = 0  # the slow cpu is idle; the fast gpu is full (1 executing + 1 queued)
    d = router().choose(req("critical", budget_ms=100), views, 0.0)
    assert isinstance(d, Wait) and d.reason == "faster_replica_full"  # gpu: 1 * 30 + 30 = 60 ms <= 100
    # a class that may be shed is not held for it: cpu cannot meet 100 ms -> shed
    assert isinstance(router().choose(req("standard", budget_ms=100), views, 0.0), Shed)
    # the work ahead of the request on the full gpu would already miss: take the fastest free replica
    d = router().choose(req("critical", budget_ms=60), views, 0.0)
    assert isinstance(d, Route) and d.replica_id == "cpu" and d.reason == "fastest_never_shed"
    # lower-priority queued work on the full replica does not count ahead of critical
    views = replicas(cpu_ms=150.0, gpu_ms=30.0, gpu_ongoing=4, max_ongoing=4)
    views[1].queued_by_priority = {2: 3}
    assert isinstance(router().choose(req("critical", budget_ms=100), views, 0.0), Wait)  # 60 ms, not 150


def test_prediction_adds_k_mean_deviations():
    r = router(alpha=0.2)
    views = replicas(cpu_ms=100.0, gpu_ms=20.0)
    request = req("standard", budget_ms=1000)
    for sample in (100.0, 100.0, 60.0, 140.0):
        r.on_dispatch(request, "cpu", 0.0)
        r.observe(request, "cpu", sample, sample, True, 0.0)
    # RFC 6298 order, alpha 0.2, beta 0.25: mean 100, dev 50 -> 37.5 -> 38.125 -> 38.59
    mean, dev = 100.0, 50.0
    for x in (100.0, 60.0, 140.0):
        dev += 0.25 * (abs(x - mean) - dev)
        mean += 0.2 * (x - mean)
    assert r.service_ms(views[0], "default") == pytest.approx(mean)
    assert r.predicted_service_ms(views[0], "default") == pytest.approx(mean + 2 * dev)
    budget = 1.1 * (mean + dev)  # the mean alone would meet it, mean + 2 dev does not
    d = r.choose(req("standard", budget_ms=budget), views, 0.0)
    assert d.replica_id == "gpu"
    plain = router(alpha=0.2, deviation_k=0.0)
    for sample in (100.0, 100.0, 60.0, 140.0):
        plain.observe(request, "cpu", sample, sample, True, 0.0)
    d = plain.choose(req("standard", budget_ms=budget), views, 0.0)
    assert d.replica_id == "cpu" and d.predicted_ms == pytest.approx(mean)
    # before any sample of its own the router predicts with the replica's reported mean
    assert router().predicted_service_ms(views[1], "default") == 20.0


@pytest.mark.parametrize(
    ("key", "value"), [("deviation_k", -1.0), ("deviation_k", math.inf), ("deviation_beta", 0.0), ("alpha", 2.0)]
)
def test_bad_config_names_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        router(**{key: value})


# -- priority orders who is shed, whatever the shedding mode ---------------------------------------------
DEFAULT_MODES = {
    name: QosClass(name, c.priority, c.budget_ms, shedding=Shedding.WHEN_OVERLOADED) for name, c in CLASSES.items()
}


def test_the_most_urgent_class_is_routed_like_never_shed_whatever_its_mode():
    r = create_router("agentic", random.Random(0), classes=DEFAULT_MODES)
    views = replicas(cpu_ms=150.0, gpu_ms=30.0, max_ongoing=2)
    views[1].ongoing = 2  # the gpu is full: critical waits for it (cpu is too slow), it is not shed
    d = r.choose(req("critical", budget_ms=100, classes=DEFAULT_MODES), views, 0.0)
    assert isinstance(d, Wait) and d.reason == "faster_replica_full"
    views[1].ongoing = 0  # fastest by expected completion, not cheapest
    d = r.choose(req("critical", budget_ms=1000, classes=DEFAULT_MODES), views, 0.0)
    assert d.replica_id == "gpu"
    # a less urgent class with the same mode is still shed when nothing meets its budget
    views[1].ongoing = 2
    d = r.choose(req("sheddable", budget_ms=100, classes=DEFAULT_MODES), views, 0.0)
    assert isinstance(d, Shed) and d.reason == "cannot_meet_deadline"


def test_a_class_that_may_be_shed_waits_for_a_full_replica_holding_less_urgent_work():
    views = replicas(cpu_ms=150.0, gpu_ms=30.0, max_ongoing=3)
    views[1].ongoing = 3
    views[1].queued_by_priority = {2: 2}  # 1 executing + 2 sheddable it would overtake at the gate
    d = router().choose(req("standard", budget_ms=100), views, 0.0)
    assert isinstance(d, Wait) and d.reason == "faster_replica_full"
    views[1].queued_by_priority = {1: 2}  # nothing less urgent to overtake: shed, as before
    d = router().choose(req("standard", budget_ms=100), views, 0.0)
    assert isinstance(d, Shed) and d.reason == "cannot_meet_deadline"


def test_a_class_that_may_be_shed_waits_for_a_replica_full_up_to_the_reserve():
    # gpu holds 3 of 4 positions: the last is the reserve's, so standard work may not take it; it waits
    # for gpu (where it would overtake the sheddable work) instead of being shed while sheddable is not
    views = replicas(cpu_ms=150.0, gpu_ms=30.0, max_ongoing=4)
    views[1].ongoing = 3
    views[1].queued_by_priority = {2: 2}
    d = router(reserve=1).choose(req("standard", budget_ms=100), views, 0.0)
    assert isinstance(d, Wait) and d.reason == "faster_replica_full"


def test_reserve_keeps_positions_of_single_slot_replicas_for_the_most_urgent_class():
    views = replicas(cpu_ms=10.0, gpu_ms=10.0, max_ongoing=2)
    for v in views:
        v.ongoing = 1
    r = router(reserve=1)
    assert isinstance(r.choose(req("standard", budget_ms=1000), views, 0.0), Wait)  # the last position is kept
    assert isinstance(r.choose(req("critical", budget_ms=1000), views, 0.0), Route)
    assert isinstance(router().choose(req("standard", budget_ms=1000), views, 0.0), Route)
    with pytest.raises(ValueError, match="reserve"):
        router(reserve=-1)


def test_an_idle_replica_that_drew_a_slow_request_still_beats_a_busy_one_for_never_shed_work():
    r = router()
    views = replicas(cpu_ms=5.0, gpu_ms=5.0)
    views[1].cost = 1.0
    for _ in range(40):
        r.observe_service("cpu", "default", 5.0, 0.0)
        r.observe_service("gpu", "default", 5.0, 0.0)
    r.observe_service("cpu", "default", 200.0, 0.0)  # one request-level outlier, clipped at 8x the mean
    assert r.table.mean("cpu", "default") == pytest.approx(5.0 + 0.05 * 35.0)
    views[1].ongoing = 1
    r.on_dispatch(req("standard", id="running"), "gpu", 0.0)
    d = r.choose(req("critical", budget_ms=30), views, 0.001)
    assert d.replica_id == "cpu"


def test_idle_reserve_keeps_free_slots_for_the_most_urgent_class():
    views = replicas(cpu_ms=10.0, gpu_ms=10.0, max_ongoing=4)
    views[0].ongoing = 1  # cpu busy; gpu idle: the one free slot
    views[1].cost = 1.0  # alike but for the load
    r = router(idle_reserve=1)
    d = r.choose(req("standard", budget_ms=1000), views, 0.0)
    assert isinstance(d, Route) and d.replica_id == "cpu"  # queues behind cpu's request, gpu stays free
    d = r.choose(req("critical", budget_ms=1000), views, 0.0)
    assert isinstance(d, Route) and d.replica_id == "gpu"
    views[0].ongoing = 3
    d = r.choose(req("standard", budget_ms=40), views, 0.0)  # cpu's queue misses 40 ms: held, not shed
    assert isinstance(d, Wait) and d.reason == "idle_reserved"
    d = router().choose(req("standard", budget_ms=1000), views, 0.0)
    assert isinstance(d, Route) and d.replica_id == "gpu"  # without it: the free replica
    with pytest.raises(ValueError, match="idle_reserve"):
        router(idle_reserve=-1)
    with pytest.raises(ValueError, match="late_weight"):
        router(late_weight=math.inf)


class _TailLife:
    """A residual life whose answers the test sets per age (ms): residual and chance to run on."""

    min_samples = 1
    heavy = False

    def __init__(self, by_age):
        self.by_age = by_age

    def _at(self, age_ms):
        return min(self.by_age.items(), key=lambda kv: abs(kv[0] - age_ms))[1]

    def residual(self, age_ms, mean_ms):
        return self._at(age_ms)[0]

    def survival(self, age_ms, more_ms, mean_ms):
        return self._at(age_ms)[1]

    def residual_survival(self, age_ms, more_ms, mean_ms):
        return self._at(age_ms)

    def observe(self, service_ms, mean_ms):
        pass


def test_never_shed_work_weighs_the_chance_that_the_slot_frees_too_late():
    # cpu's request has run 200 ms: likely about to end (10 ms on average) but 30 % of such run on past
    # the budget; gpu's started 1 ms ago: 14 ms on average, 5 % run on. Both cost the same.
    def pick(**kw):
        r = router(**kw)
        r.head.life = _TailLife({200.0: (10.0, 0.3), 1.0: (14.0, 0.05)})
        views = replicas(cpu_ms=5.0, gpu_ms=5.0, max_ongoing=4, cpu_ongoing=1, gpu_ongoing=1)
        views[1].cost = 1.0
        r.on_dispatch(req("standard", now=0.0), "cpu", 0.0)
        r.on_dispatch(req("standard", now=0.199), "gpu", 0.199)
        return r.choose(req("critical", now=0.2, budget_ms=50), views, 0.2).replica_id

    assert pick(late_weight=0.0) == "cpu"  # by the mean alone
    assert pick() == "gpu"  # 10 + 0.3 x 100 > 14 + 0.05 x 100 (late_weight 2 x the 50 ms budget)


def test_a_replica_nobody_measured_is_taken_as_fast_as_its_measured_peers():
    """Integration (canary): a replica that published no service time ranked at the 50 ms default behind a
    busy peer measured at ~20 ms, never got a call and never got measured; the canary on it never got the
    samples it is judged on. With no published time it now counts as the mean of the measured peers."""
    a = ReplicaView("a", CPU, slots=1, max_ongoing=math.inf, ongoing=1, cost=1.0)
    b = ReplicaView("b", NodeAttrs(node_id="n3", zone="eu", accelerator="cpu"), slots=1, max_ongoing=math.inf,
                    ongoing=0, cost=1.0)  # fmt: skip
    r = router()
    request = req("standard")
    for _ in range(5):
        r.observe(request, "a", 20.0, 21.0, True, 0.0)
    decision = r.choose(req("standard", budget_ms=45.0), [a, b], 0.0)
    assert isinstance(decision, Route) and decision.replica_id == "b"  # 20 ms idle, not 50 ms
    assert math.isclose(decision.predicted_ms, 20.0, rel_tol=0.01)
    unknown = router().choose(req("standard", budget_ms=1000.0), [b], 0.0)
    assert isinstance(unknown, Route) and unknown.predicted_ms == 50.0  # nobody measured: the default
