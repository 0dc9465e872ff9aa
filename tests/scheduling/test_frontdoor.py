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


def test_a_class_cap_leaves_no_more_room_than_it_allows_and_its_refusal_says_so():
    """Overload ladder (chaos): at 1x and 2x the slowest refusals were the gates' ``class_cap`` ones, each
    after a round trip. A replica publishes what its class caps leave (``cap_room``); the router refuses
    at once when caps leave no replica, with the gate's reason."""
    from agentic_ray.scheduling.reports import ReplicaMetadata, RoutingStats
    from agentic_ray.scheduling.routing_state import ReplicaReport, view_of

    stats = RoutingStats(queued_by_class={"sheddable": 1, "standard": 2},
                         queue_bounds={"sheddable": 16, "standard": 16},
                         cap_room={"sheddable": 0, "standard": 5})  # fmt: skip
    assert stats.class_room() == {"sheddable": 0, "standard": 5}  # min(bound - queued, cap room)
    assert stats.capped() == frozenset({"sheddable"})
    again = RoutingStats.from_dict(stats.to_dict())
    assert again.cap_room == {"sheddable": 0, "standard": 5} and again.class_room() == stats.class_room()
    assert "cap_room" not in RoutingStats(queue_bounds={"sheddable": 16}).to_dict()  # uncapped: not sent
    capped = view_of(ReplicaReport("a", ReplicaMetadata(), stats=stats))
    assert capped.class_room["sheddable"] == 0 and capped.class_capped == frozenset({"sheddable"})
    _, shed = with_room(req("sheddable"), [capped, view("b", {"sheddable": 0})])
    assert shed is not None and shed.reason == "queue_full"  # b's queue is full, not capped
    _, shed = with_room(req("sheddable"), [capped])
    assert shed is not None and shed.reason == "class_cap"


def test_the_gate_publishes_what_its_class_caps_leave():
    from agentic_ray.scheduling.admission import AdmissionGate

    from .conftest import CLASSES

    gate = AdmissionGate(1, CLASSES)
    gate.set_class_caps({"sheddable": 2})
    for _ in range(2):
        gate.offer(req("sheddable", budget_ms=10_000), 0.0)  # one runs, one queues
    assert gate.snapshot().cap_room == {"sheddable": 0}
    assert gate.offer(req("sheddable", budget_ms=10_000), 0.0).reason == "class_cap"  # what the router mirrors
    gate.set_class_caps({})
    assert gate.snapshot().cap_room == {}


def test_a_lowered_cap_is_published_at_once_and_enforced_after_the_grace():
    """Routers learn a cap from the replica's stats a period or more after the gate: a request sent on the
    cap a router knew is not refused after a round trip for a cap lowered since (chaos ladder at 2x)."""
    from agentic_ray.scheduling.admission import AdmissionGate, Enqueued, Reject

    from .conftest import CLASSES

    gate = AdmissionGate(1, CLASSES)
    gate.set_class_caps({"sheddable": 3})
    for _ in range(2):
        gate.offer(req("sheddable", budget_ms=10_000), 0.0)  # one runs, one queues: 2 held
    gate.set_class_caps({"sheddable": 1, "standard": 0}, now=1.0, grace_s=0.5)
    snap = gate.snapshot()
    assert snap.class_caps == {"sheddable": 1, "standard": 0} and snap.cap_room == {"sheddable": 0, "standard": 0}
    assert isinstance(gate.offer(req("sheddable", now=1.2, budget_ms=10_000), 1.2), Enqueued)  # old cap 3 holds
    assert isinstance(gate.offer(req("standard", now=1.2), 1.2), Enqueued)  # newly capped: not yet
    refused = gate.offer(req("sheddable", now=1.5, budget_ms=10_000), 1.5)
    assert isinstance(refused, Reject) and refused.reason == "class_cap"  # the grace is over
    gate.set_class_caps({"sheddable": 9}, now=2.0, grace_s=0.5)  # a raise holds at once
    assert isinstance(gate.offer(req("sheddable", now=2.0, budget_ms=10_000), 2.0), Enqueued)
    gate.set_class_caps({"sheddable": 0})  # no grace asked: at once
    assert gate.offer(req("sheddable", now=2.0, budget_ms=10_000), 2.0).reason == "class_cap"


def test_a_paced_gate_spaces_the_starts_of_work_that_may_be_shed_but_not_critical_work():
    from agentic_ray.scheduling.admission import AdmissionGate, Enqueued, Start

    from .conftest import CLASSES

    gate = AdmissionGate(4, CLASSES)
    gate.set_limit(3, 0.0, pace_s=0.1)
    assert isinstance(gate.offer(req("sheddable", budget_ms=10_000), 0.0), Start)
    assert isinstance(gate.offer(req("standard", budget_ms=10_000), 0.05), Enqueued)  # a slot, but not yet
    assert isinstance(gate.offer(req("critical"), 0.05), Start)  # never paced
    assert gate.set_limit(3, 0.08, pace_s=0.1).started == ()
    started = gate.set_limit(3, 0.1, pace_s=0.1).started  # the pace allows the next one
    assert len(started) == 1
    assert isinstance(gate.offer(req("sheddable", budget_ms=10_000), 0.15), Enqueued)
    assert gate.set_limit(3, 0.3, pace_s=0.0).started == ()  # three run: the limit holds it, not the pace
    assert len(gate.set_limit(4, 0.3, pace_s=0.0).started) == 1
