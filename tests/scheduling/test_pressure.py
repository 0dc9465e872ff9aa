"""under_pressure: less urgent work is refused at the router while the path to the replicas is slow."""

from __future__ import annotations

import random

import pytest

from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling.pressure import PressureRule, under_pressure
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
