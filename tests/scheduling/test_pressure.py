"""under_pressure: less urgent work is refused at the router while the path to the replicas is slow."""

from __future__ import annotations

import math
import random

import pytest

from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling.pressure import PressureRule, TripDelay, under_pressure
from agentic_ray.scheduling.registry import create_router
from agentic_ray.scheduling.reports import ReplicaMetadata, RoutingStats
from agentic_ray.scheduling.routing_state import ReplicaReport, RoutingState
from agentic_ray.scheduling.types import ReplicaView, Route, Shed

from .conftest import CLASSES, req

RULE = PressureRule(8.0, (c.priority for c in CLASSES.values()))  # critical 0, standard 1, sheddable 2


def view(rid: str, delay_ms: float, zone: str = "eu", healthy: bool = True) -> ReplicaView:
    return ReplicaView(rid, attrs=NodeAttrs(zone=zone), slots=2, service_ms={"default": 20.0}, healthy=healthy,
                       delay_ms=delay_ms)  # fmt: skip


def test_thresholds_double_per_level_of_urgency_and_spare_the_most_urgent():
    assert RULE.threshold_ms(req("sheddable")) == 8.0
    assert RULE.threshold_ms(req("standard")) == 16.0
    assert RULE.threshold_ms(req("critical")) is None


def test_least_urgent_class_goes_first():
    views = [view("a", 12.0), view("b", 12.0)]
    assert under_pressure(req("sheddable"), views, RULE)[1].reason == "host_saturated"
    left, shed = under_pressure(req("standard"), views, RULE)
    assert shed is None and left == views
    views = [view("a", 20.0)]
    assert under_pressure(req("standard"), views, RULE)[1].reason == "host_saturated"
    assert under_pressure(req("critical"), views, RULE) == (views, None)


def test_a_calm_replica_takes_the_work():
    views = [view("a", 30.0), view("b", 2.0)]
    left, shed = under_pressure(req("sheddable"), views, RULE)
    assert shed is None and [v.replica_id for v in left] == ["b"]


def test_only_eligible_healthy_replicas_count():
    views = [view("a", 30.0), view("b", 2.0, healthy=False)]
    shed = under_pressure(req("sheddable"), views, RULE)[1]
    assert shed is not None and shed.retry_after_s == pytest.approx(0.25)
    eu_only = req("sheddable", allows=lambda attrs: attrs.zone == "eu")
    assert under_pressure(eu_only, [view("a", 30.0), view("b", 0.0, zone="us")], RULE)[1] is not None
    # nothing eligible at all: left to the router, which names the placement rule
    assert under_pressure(eu_only, [view("b", 30.0, zone="us")], RULE)[1] is None


def test_no_rule_no_pressure():
    views = [view("a", 1000.0)]
    assert under_pressure(req("sheddable"), views, None) == (views, None)
    with pytest.raises(ValueError, match="target_ms"):
        PressureRule(0, [0, 1])


def test_routing_state_sheds_on_the_reported_delay():
    core = create_router("agentic", random.Random(0), classes=CLASSES)
    state = RoutingState(core, pressure_ms=8.0)
    md = ReplicaMetadata(zone="eu", slots=2, service_ms={"default": 20.0})
    state.update_replicas([ReplicaReport("a", md, RoutingStats(delay_ms=40.0), 10)], 0.0)
    state.admit("s", req("standard"), 0.0)
    decision = state.decide("s", 0.0)
    assert isinstance(decision, Shed) and decision.reason == "host_saturated"
    state.admit("c", req("critical"), 0.0)
    assert isinstance(state.decide("c", 0.0), Route)
    state.update_replicas([ReplicaReport("a", md, RoutingStats(delay_ms=3.0), 10)], 0.1)
    state.admit("s2", req("standard", now=0.1), 0.1)
    assert isinstance(state.decide("s2", 0.1), Route)


def test_a_request_decided_without_pressure_is_not_refused_for_the_delay():
    """The Serve adapter decides HTTP requests with ``pressure=False``: an instant 429 to a client that does
    not back off would come straight back and keep the proxy saturated (a latch seen at 120 clients)."""
    core = create_router("agentic", random.Random(0), classes=CLASSES)
    state = RoutingState(core, pressure_ms=8.0)
    md = ReplicaMetadata(zone="eu", slots=2, service_ms={"default": 20.0})
    state.update_replicas([ReplicaReport("a", md, RoutingStats(delay_ms=40.0), 10)], 0.0)
    state.admit("http", req("sheddable"), 0.0)
    assert isinstance(state.decide("http", 0.0, pressure=False), Route)
    state.admit("handle", req("sheddable"), 0.0)
    shed = state.decide("handle", 0.0)
    assert isinstance(shed, Shed) and shed.reason == "host_saturated"


def test_trip_delay_is_the_smoothed_trip_above_the_floor_and_decays_between_trips():
    trips = TripDelay(alpha=0.5, tau_s=1.0)
    assert trips.delay_ms("a", 0.0) == 0.0  # unknown replica
    assert trips.observe("a", 2.0, 0.0) == 0.0  # the first trip is the floor
    # 40 ms above the floor; the EWMA goes half way there per trip
    assert trips.observe("a", 42.0, 0.0) == pytest.approx(20.0)
    assert trips.observe("a", 42.0, 0.0) == pytest.approx(30.0)
    assert trips.delay_ms("a", 1.0) == pytest.approx(30.0 * math.exp(-1.0))  # a second without trips
    assert trips.delay_ms("a", 10.0) < 0.01  # no latch: a router that refuses everything forgets it
    assert trips.observe("a", 1.0, 10.0) == pytest.approx(0.0, abs=0.01)  # a new, lower floor
    assert trips.observe("a", math.nan, 10.0) == pytest.approx(0.0, abs=0.01)  # no sample
    trips.forget("a")
    assert trips.delay_ms("a", 10.0) == 0.0
    for bad in ({"alpha": 0.0}, {"tau_s": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TripDelay(**bad)


def _calm_state() -> RoutingState:
    core = create_router("agentic", random.Random(0), classes=CLASSES)
    state = RoutingState(core, pressure_ms=8.0)
    md = ReplicaMetadata(zone="eu", slots=4, service_ms={"default": 20.0})
    state.update_replicas([ReplicaReport("a", md, RoutingStats(delay_ms=1.0), 10)], 0.0)
    return state


def _trip(state: RoutingState, key: str, qos: str, decided: float, accepted: float) -> object:
    state.admit(key, req(qos, now=decided), decided)
    decision = state.decide(key, decided)
    if isinstance(decision, Route):
        state.routed(key, decision.replica_id, accepted)
        state.completed(key, accepted + 0.02, service_ms=20.0)
    return decision


def test_slow_trips_seen_by_the_router_shed_the_least_urgent_before_the_replica_reports_them():
    """Noisy neighbour: a starved replica publishes late; the router's own trips (decision to the
    replica's acceptance) show the delay at once. The replica still reports 1 ms here."""
    state = _calm_state()
    t = 0.0
    for i in range(3):  # calm: 2 ms trips set the floor
        assert isinstance(_trip(state, f"c{i}", "critical", t, t + 0.002), Route)
        t += 0.01
    for i in range(6):  # then 60 ms trips (critical work keeps flowing)
        assert isinstance(_trip(state, f"slow{i}", "critical", t, t + 0.060), Route)
        t += 0.01
    shed = _trip(state, "s", "sheddable", t, t)
    assert isinstance(shed, Shed) and shed.reason == "host_saturated"
    assert isinstance(_trip(state, "st", "standard", t, t + 0.002), Shed)  # > 16 ms too
    assert isinstance(_trip(state, "c", "critical", t, t + 0.002), Route)  # never refused here
    # No trips for 3 s (everything less urgent refused, no critical work): the delay decays, work flows.
    t += 3.0
    assert isinstance(_trip(state, "s2", "sheddable", t, t + 0.002), Route)


def test_without_a_pressure_rule_trips_change_nothing():
    core = create_router("agentic", random.Random(0), classes=CLASSES)
    state = RoutingState(core)
    md = ReplicaMetadata(zone="eu", slots=4, service_ms={"default": 20.0})
    state.update_replicas([ReplicaReport("a", md, RoutingStats(), 10)], 0.0)
    assert state.trips is None
    for i in range(5):
        assert isinstance(_trip(state, f"k{i}", "sheddable", i * 0.01, i * 0.01 + 0.5), Route)


def test_refuse_early_sheds_what_decide_would_on_the_delay_and_tracks_nothing():
    """``serve.call`` asks ``refuse_early`` in the caller's thread, before the hop to Serve's router thread
    (the slow part of a refusal under load): it must agree with ``decide`` and change no state."""
    state = _calm_state()
    t = 0.0
    for i in range(3):
        _trip(state, f"c{i}", "critical", t, t + 0.002)
        t += 0.01
    for i in range(6):
        _trip(state, f"slow{i}", "critical", t, t + 0.060)
        t += 0.01
    before = (state.requests_total, state.trips.delay_ms("a", t))
    early = state.refuse_early(req("sheddable", now=t), t)
    assert isinstance(early, Shed) and early.reason == "host_saturated"
    assert state.refuse_early(req("critical", now=t), t) is None  # the most urgent: never here
    assert state.refuse_early(req("sheddable", now=t), t, pressure=False) is None  # the rule left to decide
    assert (state.requests_total, state.trips.delay_ms("a", t)) == before  # nothing tracked or observed
    state.admit("s", req("sheddable", now=t), t)
    decided = state.decide("s", t)
    assert isinstance(decided, Shed) and decided.reason == early.reason  # decide agrees
    # The trip delay decays to ``now`` here even with no decision since (the view keeps the old value
    # until the router's next refresh): no latch when every less urgent call is refused in the caller.
    assert state.views()[0].delay_ms > 8.0
    assert state.refuse_early(req("sheddable", now=t + 3.0), t + 3.0) is None


def test_refuse_early_sheds_a_class_without_room_and_defers_to_decide_while_a_breaker_holds_one_out():
    from agentic_ray.policies.types import BreakerSettings

    core = create_router("agentic", random.Random(0), classes=CLASSES)
    state = RoutingState(core, breaker=BreakerSettings(consecutive_failures=1, ejection_s=5.0))
    md = ReplicaMetadata(zone="eu", slots=1, service_ms={"default": 20.0})
    capped = RoutingStats(class_caps={"sheddable": 0}, cap_room={"sheddable": 0})
    state.update_replicas([ReplicaReport("a", md, capped, 10), ReplicaReport("b", md, capped, 10)], 0.0)
    early = state.refuse_early(req("sheddable"), 0.0)
    assert isinstance(early, Shed) and early.reason == "class_cap"
    assert state.refuse_early(req("standard"), 0.0) is None  # an uncapped class goes to decide
    state.admit("s", req("sheddable"), 0.0)
    assert state.decide("s", 0.0) == early  # decide agrees, retry-after and rules included
    # one replica open for the class again: the class has room somewhere
    state.update_replicas([ReplicaReport("a", md, capped, 10), ReplicaReport("b", md, RoutingStats(), 10)], 0.1)
    assert state.refuse_early(req("sheddable", now=0.1), 0.1) is None
    # a replica ejected by its breaker: only decide knows when its probe may go
    state.update_replicas([ReplicaReport("a", md, capped, 10), ReplicaReport("b", md, capped, 10)], 0.2)
    state.replica_failed("b", 0.2)
    assert state.refuse_early(req("sheddable", now=0.2), 0.2) is None
