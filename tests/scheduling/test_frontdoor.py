"""with_room: a replica whose class queue is full is no candidate; refused at the router when none is left."""

from __future__ import annotations

from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling.frontdoor import with_room
from agentic_ray.scheduling.types import ReplicaView

from .conftest import req


def view(rid: str, room: dict[str, int], zone: str = "eu", slots: int = 2, service: float = 40.0, healthy=True):
    return ReplicaView(rid, attrs=NodeAttrs(zone=zone), slots=slots, class_room=room,
                       service_ms={"default": service}, healthy=healthy)  # fmt: skip


def test_full_replicas_are_not_candidates():
    views = [view("a", {"sheddable": 0}), view("b", {"sheddable": 3})]
    left, shed = with_room(req("sheddable"), views)
    assert shed is None and [v.replica_id for v in left] == ["b"]


def test_all_full_is_queue_full_with_a_drain_time():
    views = [view("a", {"sheddable": 0}, service=40.0), view("b", {"sheddable": -1}, service=60.0)]
    _, shed = with_room(req("sheddable"), views)
    assert shed is not None and shed.reason == "queue_full"
    assert shed.retry_after_s == 50.0 / 4 / 1000.0  # mean service over the four slots


def test_never_shed_class_is_never_refused_here():
    views = [view("a", {"critical": 0})]
    left, shed = with_room(req("critical"), views)
    assert shed is None and left == views


def test_unknown_room_counts_as_room():
    views = [view("a", {})]
    left, shed = with_room(req("standard"), views)
    assert shed is None and left == views


def test_only_replicas_the_request_may_use_count():
    eu_only = req("sheddable", allows=lambda attrs: attrs.zone == "eu")
    views = [view("a", {"sheddable": 0}, zone="eu"), view("b", {"sheddable": 5}, zone="us")]
    _left, shed = with_room(eu_only, views)
    assert shed is not None and shed.reason == "queue_full"
    # An unhealthy replica with room does not count either.
    views = [view("a", {"sheddable": 0}), view("b", {"sheddable": 5}, healthy=False)]
    assert with_room(req("sheddable"), views)[1] is not None


def test_no_eligible_replica_is_left_to_the_router():
    eu_only = req("sheddable", allows=lambda attrs: attrs.zone == "eu")
    views = [view("b", {"sheddable": 0}, zone="us")]
    left, shed = with_room(eu_only, views)
    assert shed is None and left == views  # the router's own decision names the placement rule
