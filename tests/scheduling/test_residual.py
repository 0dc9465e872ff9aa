from __future__ import annotations

import math
import random

import pytest

from agentic_ray.scheduling import ReplicaView, Route, create_router
from agentic_ray.scheduling.residual import HeadOfLine, ResidualLife
from agentic_ray.scheduling.service_table import ServiceTable

from .conftest import CLASSES, req


def bimodal(n: int = 200) -> list[float]:
    return [200.0 if i % 20 == 0 else 5.0 for i in range(n)]  # 5 % slow, mean 14.75 ms


def test_mean_residual_life_of_a_bimodal_service():
    life = ResidualLife(window=512, min_samples=32, rebuild_every=8)
    assert life.residual(0.0, 14.75) is None  # too few samples: caller falls back to the mean
    for x in bimodal():
        life.observe(x, 14.75)
    assert life.residual(0.0, 14.75) == pytest.approx(14.75)  # a request just started: the mean
    assert life.residual(10.0, 14.75) == pytest.approx(190.0)  # past 5 ms it is a slow one
    assert life.residual(150.0, 14.75) == pytest.approx(50.0)
    assert life.residual(400.0, 14.75) == 400.0  # older than anything seen: its age
    # samples are normalised by the replica's mean: the same shape on a replica twice as slow
    assert life.residual(20.0, 29.5) == pytest.approx(380.0)
    life.observe(math.nan, 14.75)  # ignored
    life.observe(5.0, 0.0)  # ignored (no mean)


def test_bad_residual_window_is_refused():
    with pytest.raises(ValueError, match="window"):
        ResidualLife(window=0)


def single_slot(n: int = 2) -> list[ReplicaView]:
    return [ReplicaView(f"r{i}", slots=1, max_ongoing=4, service_ms={"default": 14.75}) for i in range(n)]


def test_router_avoids_a_replica_stuck_behind_a_slow_request():
    r = create_router("agentic", random.Random(0), classes=CLASSES)
    views = single_slot()
    warm = req("sheddable", now=0.0)
    for x in bimodal():  # train the service-time estimates of both replicas alike
        for rid in ("r0", "r1"):
            r.on_dispatch(warm, rid, 0.0)
            r.observe(warm, rid, x, x, True, 0.0)
    # at t=1.0 both replicas run one request: r0's started 2 ms ago, r1's 30 ms ago (a slow one)
    young, old = req("sheddable", now=0.998), req("sheddable", now=0.970)
    r.on_dispatch(old, "r1", 0.970)
    r.on_dispatch(young, "r0", 0.998)
    views[0].ongoing = views[1].ongoing = 1
    views = views[::-1]  # r1 first: a tie would pick it
    d = r.choose(req("critical", now=1.0), views, 1.0)
    assert isinstance(d, Route) and d.replica_id == "r0"
    stuck = create_router("agentic", random.Random(0), classes=CLASSES, residual=False)
    stuck_pred = stuck.choose(req("critical", now=1.0), views, 1.0)
    assert stuck_pred.replica_id == "r1"  # without the residual both look alike: the first wins
    # the answer from r1 arrives: its in-flight entry is gone and r1 is idle again (no residual added)
    r.observe(old, "r1", 200.0, 200.0, True, 1.0)
    views[0].ongoing = 0
    d = r.choose(req("critical", now=1.0), views[:1], 1.0)
    assert d.predicted_ms == pytest.approx(r.predicted_service_ms(views[0], "default"))


def test_age_counts_from_the_last_answer_of_the_replica():
    r = create_router("agentic", random.Random(0), classes=CLASSES)
    views = single_slot(1)
    warm = req("sheddable")
    for x in bimodal():
        r.on_dispatch(warm, "r0", 0.0)
        r.observe(warm, "r0", x, x, True, 0.0)
    first, second = req("sheddable", now=0.9), req("sheddable", now=0.9)
    r.on_dispatch(first, "r0", 0.9)
    r.on_dispatch(second, "r0", 0.9)  # queued behind `first`
    r.observe(first, "r0", 5.0, 5.0, True, 0.999)  # `second` started about 1 ms ago, not 100 ms
    views[0].ongoing = 1
    pred = r.choose(req("critical", now=1.0, budget_ms=5000), views, 1.0).predicted_ms
    assert pred < 100.0  # a 100 ms-old head would have predicted a ~100 ms residual


def test_the_replica_is_taken_to_start_the_most_urgent_request_in_flight_not_the_oldest():
    head = HeadOfLine()
    head.sent("r0", "a", "default", 0.000, (2, 5.000, 0.000))  # nothing in flight: starts at once
    head.sent("r0", "b", "default", 0.001, (2, 5.001, 0.001))  # sheddable, queued first
    head.sent("r0", "c", "default", 0.002, (0, 0.052, 0.002))  # critical: the gate starts it before b
    assert head.running("r0", "a") and not head.running("r0", "c")
    head.answered("r0", "a", 0.010)
    assert head.running("r0", "c") and not head.running("r0", "b")
    head.sent("r0", "d", "default", 0.011, (1, 0.311, 0.011))
    head.answered("r0", "d", 0.012, executed=False)  # refused while queued: c still runs
    assert head.running("r0", "c")
    head.sent("r0", "f", "default", 0.013, (0, 0.063, 0.013))
    head.answered("r0", "b", 0.015)  # b executed after all: the guess was wrong; the most urgent left starts
    assert head.running("r0", "c") and head._running["r0"] == ("c", 0.015)
    head.answered("r0", "f", 0.017)
    head.answered("r0", "c", 0.020)
    assert head.flights["r0"] == {} and not head.running("r0", "c")
    head.sent("r0", "e", "default", 0.030, (2, 5.03, 0.03))
    assert head.running("r0", "e")


def test_the_running_request_ages_from_when_it_started():
    head = HeadOfLine()
    table = ServiceTable(0.05, 0.25, 2.0)
    for x in bimodal():
        head.life.observe(x, 14.75)
    head.sent("r0", "a", "default", 0.0, (2, 5.0, 0.0))
    head.sent("r0", "late", "default", 0.001, (2, 5.001, 0.001))
    head.sent("r0", "urgent", "default", 0.050, (0, 0.1, 0.05))
    head.answered("r0", "a", 0.100)  # `urgent` started at 0.100 (the oldest, `late`, still waits)
    assert head.wait("r0", 0.102, 1, 14.75, table) == pytest.approx(head.life.residual(2.0, 14.75))
