from __future__ import annotations

import math
import random

import pytest

from agentic_ray.scheduling import ReplicaView, Route, create_router
from agentic_ray.scheduling.residual import HeadOfLine, ResidualLife

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
    assert head.running("r0", "c") and head._running["r0"] == {"c": (0.015, ("r0", "default"))}
    head.answered("r0", "f", 0.017)
    head.answered("r0", "c", 0.020)
    assert head.flights["r0"] == {} and not head.running("r0", "c")
    head.sent("r0", "e", "default", 0.030, (2, 5.03, 0.03))
    assert head.running("r0", "e")


def test_the_running_request_ages_from_when_it_started():
    head = HeadOfLine()
    for x in bimodal():
        head.life.observe(x, 14.75)
    head.sent("r0", "a", "default", 0.0, (2, 5.0, 0.0))
    head.sent("r0", "late", "default", 0.001, (2, 5.001, 0.001))
    head.sent("r0", "urgent", "default", 0.050, (0, 0.1, 0.05))
    head.answered("r0", "a", 0.100)  # `urgent` started at 0.100 (the oldest, `late`, still waits)
    assert head.wait("r0", 0.102, 1, 14.75) == pytest.approx(head.life.residual(2.0, 14.75))


def test_a_request_sent_within_a_round_trip_of_the_answer_had_not_reached_the_replica():
    head = HeadOfLine()
    head.observe_round_trip(latency_ms=6.0, service_ms=5.0)  # 0.5 ms each way
    head.observe_round_trip(latency_ms=30.0, service_ms=5.0)  # queued: not the path's own time
    assert head.round_trip_ms == 1.0
    head.sent("r0", "a", "default", 0.000, (2, 5.0, 0.0))
    head.sent("r0", "b", "default", 0.001, (2, 5.001, 0.001))
    head.sent("r0", "c", "default", 0.0095, (0, 0.06, 0.0095))  # reaches r0 at 10.0 ms
    head.answered("r0", "a", 0.010)  # a finished at 9.5 ms: c was still on its way, b started
    assert head.running("r0", "b") and not head.running("r0", "c")
    assert head._running["r0"]["b"][0] == pytest.approx(0.0095)
    head.answered("r0", "b", 0.020)
    head.answered("r0", "c", 0.021, executed=False)  # dropped: nothing left
    head.sent("r0", "d", "default", 0.030, (2, 5.03, 0.03))  # idle: starts when it gets there
    assert head._running["r0"]["d"][0] == pytest.approx(0.0305)
    for _ in range(63):
        head.observe_round_trip(latency_ms=8.0, service_ms=5.0)
    assert head.round_trip_ms == 3.0  # the 1 ms one left the window of 64: the least of what is left


def test_two_slots_free_at_their_running_requests_residuals():
    head = HeadOfLine(ResidualLife(window=64, min_samples=4, rebuild_every=1))
    for x in (5.0, 5.0, 5.0, 5.0, 200.0):
        head.observe("r0", "default", x)  # the first sets the scale (5 ms); the next four are samples
    scale = head.scale("r0", "default")
    head.sent("r0", "slow", "default", 0.000, (2, 5.0, 0.0), slots=2)
    head.sent("r0", "young", "default", 0.008, (2, 5.0, 0.008), slots=2)
    head.sent("r0", "queued", "default", 0.009, (2, 5.0, 0.009), slots=2)
    assert head.running("r0", "slow") and head.running("r0", "young") and not head.running("r0", "queued")
    life = head.life
    r_slow, r_young = life.residual(10.0, scale), life.residual(2.0, scale)
    assert r_slow > 100 > r_young  # 10 ms in: past every fast draw
    # two ahead (both executing): the first slot to free is the young one's
    assert head.wait("r0", 0.010, 2, 5.0, slots=2) == pytest.approx(r_young)
    # three ahead: the queued one takes the young one's slot for 5 ms, then the earlier of the two frees
    assert head.wait("r0", 0.010, 3, 5.0, slots=2) == pytest.approx(min(r_young + 5.0, r_slow))
    head.answered("r0", "young", 0.012)  # its slot goes to `queued`
    assert head.running("r0", "queued") and head.running("r0", "slow")


def test_samples_and_ages_are_scaled_by_a_geometric_mean_a_slow_draw_barely_moves():
    head = HeadOfLine(ResidualLife(window=64, min_samples=4, rebuild_every=1))
    for _ in range(40):
        head.observe("r0", "default", 5.0)
    head.observe("r0", "default", 200.0)  # stored as 40x the scale before it
    assert head.life._sorted[-1] == pytest.approx(40.0)
    assert head.scale("r0", "default") == pytest.approx(5.0 * 40**0.05)  # +20 %, not the mean's 5 -> 14.75
    head.observe("r0", "default", math.nan)  # ignored
    assert head.scale("r1", "default") is None


def test_a_critical_request_avoids_the_two_slot_replica_whose_slots_run_slow_draws():
    r = create_router("agentic", random.Random(0), classes=CLASSES)
    views = [ReplicaView(f"r{i}", slots=2, max_ongoing=6, service_ms={"default": 14.75}) for i in range(2)]
    warm = req("sheddable")
    for x in bimodal():
        for rid in ("r0", "r1"):
            r.on_dispatch(warm, rid, 0.0)
            r.observe(warm, rid, x, x, True, 0.0)
    for v in views:
        assert isinstance(r.choose(req("sheddable", now=0.9), [v], 0.9), Route)  # learns the replica's slots
    # both replicas run two requests: r0's started 30 ms ago (slow ones), r1's 2 ms ago
    for rid, at in (("r0", 0.970), ("r0", 0.970), ("r1", 0.998), ("r1", 0.998)):
        r.on_dispatch(req("sheddable", now=at), rid, at)
    for v in views:
        v.ongoing = 2
    d = r.choose(req("critical", now=1.0), views, 1.0)
    assert isinstance(d, Route) and d.replica_id == "r1"


def test_several_slots_use_the_ages_only_under_a_heavy_tail():
    light = HeadOfLine(ResidualLife(window=64, min_samples=4, rebuild_every=1))
    for x in (15.0, 20.0, 25.0, 20.0, 20.0):  # cv well below 1
        light.observe("r0", "default", x)
    assert not light.life.heavy
    light.sent("r0", "a", "default", 0.0, slots=2)
    light.sent("r0", "b", "default", 0.0, slots=2)
    assert light.wait("r0", 0.018, 3, 20.0, slots=2) == pytest.approx((3 - 2 + 1) / 2 * 20.0)


def test_survival_is_the_chance_to_run_on_past_a_horizon():
    life = ResidualLife(window=512, min_samples=32, rebuild_every=8)
    assert life.survival(0.0, 10.0, 14.75) is None
    for x in bimodal():
        life.observe(x, 14.75)
    assert life.survival(0.0, 10.0, 14.75) == pytest.approx(0.05)  # only the slow ones need > 10 ms
    assert life.survival(10.0, 100.0, 14.75) == 1.0  # 10 ms in: a slow one, 190 ms to go
    assert life.survival(10.0, 200.0, 14.75) == 0.0
    assert life.survival(400.0, 100.0, 14.75) == 1.0  # older than anything seen: its age again


def test_late_is_the_chance_no_slot_frees_in_time():
    head = HeadOfLine(ResidualLife(window=64, min_samples=4, rebuild_every=1))
    for x in (5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 200.0):
        head.observe("r0", "default", x)
    head.sent("r0", "a", "default", 0.0, slots=2)
    assert head.late("r0", 0.001, 2, 5.0, 2, 30.0) == 0.0  # a slot with nothing executing is free
    head.sent("r0", "b", "default", 0.0, slots=2)
    assert head.late("r0", 0.001, 2, 5.0, 2, 30.0) == pytest.approx((1 / 7) ** 2)  # both run past 30 ms
    assert head.late("r0", 0.010, 2, 5.0, 2, 30.0) == 1.0  # both are slow ones
    assert head.late("r0", 0.001, 3, 5.0, 2, 30.0) is None  # queued work ahead on two slots: not estimated
    assert head.late("other", 0.001, 2, 5.0, 2, 30.0) is None
