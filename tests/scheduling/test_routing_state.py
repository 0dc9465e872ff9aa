"""RoutingState on a manual clock: replica reports -> views, breaker feed, retries, hedges, queue estimates."""

from __future__ import annotations

import math
import random

import pytest

from agentic_ray.policies.types import BreakerSettings, NodeAttrs, QosClass, RetrySettings, Shedding
from agentic_ray.scheduling.registry import create_router
from agentic_ray.scheduling.reports import ReplicaMetadata, RoutingStats, ServiceSample
from agentic_ray.scheduling.routing_state import ReplicaReport, RoutingState, view_of
from agentic_ray.scheduling.types import ReplicaView, Route, Shed, Wait
from agentic_ray.testing.clock import ManualClock
from tests.scheduling.conftest import CLASSES, req


def stats(**kw) -> RoutingStats:
    return RoutingStats(**kw)


def report(rid: str, *, slots: int = 1, zone: str = "eu", cost: float = 1.0, service_ms: float = 10.0,
           max_ongoing: float = 8, **kw) -> ReplicaReport:  # fmt: skip
    md = ReplicaMetadata(zone=zone, slots=slots, cost=cost, service_ms={"default": service_ms})
    return ReplicaReport(rid, md, RoutingStats(**kw), max_ongoing)


def state(breaker: BreakerSettings | None = None, retry: RetrySettings | None = None, classes=CLASSES) -> RoutingState:
    core = create_router("agentic", random.Random(0), classes=classes)
    return RoutingState(core, breaker=breaker, retry=retry)


def route(st: RoutingState, key, request, now: float, **admit) -> object:
    shed = st.admit(key, request, now, **admit)
    if shed is not None:
        return shed
    decision = st.decide(key, now)
    if isinstance(decision, Route):
        st.routed(key, decision.replica_id, now)
    return decision


def test_a_report_becomes_a_view():
    md = ReplicaMetadata(zone="eu-west", accelerator="gpu", labels={"pool": "a"}, slots=4, cost=2.0,
                         service_ms={"default": 30.0})  # fmt: skip
    st = RoutingStats(executing=3, queued=2, queued_by_priority={1: 2}, queued_by_class={"standard": 2},
                      queue_bounds={"standard": 5, "sheddable": 4}, limit=2)  # fmt: skip
    view = view_of(ReplicaReport("r1", md, st, 20.0, "node-1"))
    assert (view.attrs.zone, view.attrs.accelerator, view.attrs.node_id, view.attrs.labels) == (
        "eu-west", "gpu", "node-1", {"pool": "a"})  # fmt: skip
    assert view.slots == 2  # the published limit holds it below its 4 slots
    assert (view.ongoing, view.max_ongoing, view.cost) == (5, 20.0, 2.0)
    assert view.service_ms == {"default": 30.0}  # the prior until it measures its own
    assert view.class_room == {"standard": 3, "sheddable": 4}
    measured = view_of(ReplicaReport("r1", md, RoutingStats(service_ms={"default": 12.0})))
    assert measured.service_ms == {"default": 12.0} and measured.slots == 4


def test_reports_round_trip_and_name_a_bad_field():
    st = RoutingStats(executing=1, queued=2, queued_by_priority={0: 1, 2: 1}, limit=3, delay_ms=1.5,
                      completed_total=7, service_samples=(ServiceSample(4, "m", 12.5),))  # fmt: skip
    d = st.to_dict()
    assert d["queued_by_priority"] == {"0": 1, "2": 1} and d["service_samples"] == [[4, "m", 12.5]]
    assert RoutingStats.from_dict(d) == st
    md = ReplicaMetadata(zone="z", labels={"a": "b"}, slots=2, service_ms={"m": 3.0})
    assert ReplicaMetadata.from_dict({**md.to_dict(), "from_a_newer_replica": 1}) == md
    with pytest.raises(ValueError, match="slots"):
        ReplicaMetadata.from_dict({"slots": 0})
    with pytest.raises(ValueError, match=r"queued_by_class\.standard"):
        RoutingStats.from_dict({"queued_by_class": {"standard": -1}})
    with pytest.raises(ValueError, match=r"service_samples\[0\]"):
        RoutingStats.from_dict({"service_samples": [[1, "m"]]})


def test_published_totals_feed_the_breaker_and_an_ejected_replica_is_avoided():
    clock = ManualClock(100.0)
    st = state(BreakerSettings(consecutive_failures=3, ejection_s=5.0, max_ejected_fraction=0.5))
    st.update_replicas([report("a", service_ms=5.0), report("b", service_ms=50.0)], clock.now())  # a baseline
    st.update_replicas([report("a", service_ms=5.0, failed_total=2), report("b", service_ms=50.0)], clock.now())
    assert route(st, 1, req("standard", now=clock.now()), clock.now()).replica_id == "a"  # 2 < 3 failures
    st.completed(1, clock.now())
    st.update_replicas([report("a", service_ms=5.0, failed_total=3), report("b", service_ms=50.0)], clock.now())
    assert st.breaker_state("a", clock.now()).value == "open"
    assert route(st, 2, req("standard", now=clock.now()), clock.now()).replica_id == "b"
    st.completed(2, clock.now())
    clock.advance(5.0)  # the ejection expires: one probe may go to the faster replica
    assert route(st, 3, req("standard", now=clock.now()), clock.now()).replica_id == "a"
    assert route(st, 4, req("standard", now=clock.now()), clock.now()).replica_id == "b"  # probe out
    st.update_replicas([report("a", service_ms=5.0, failed_total=3, completed_total=1),
                        report("b", service_ms=50.0)], clock.now())  # fmt: skip
    assert st.breaker_state("a", clock.now()).value == "closed"


def test_a_report_period_counts_successes_before_failures_and_at_most_the_threshold():
    st = state(BreakerSettings(consecutive_failures=3, max_ejected_fraction=1.0))
    st.update_replicas([report("a")], 0.0)
    # 10 successes and 3 failures in one period: the failures came last, so they are consecutive
    st.update_replicas([report("a", completed_total=10, failed_total=3)], 1.0)
    assert st.breaker_state("a", 1.0).value == "open"


def test_every_eligible_replica_ejected_sheds_with_the_time_to_the_first_half_open():
    clock = ManualClock(10.0)
    st = state(BreakerSettings(consecutive_failures=1, ejection_s=4.0, max_ejected_fraction=1.0))
    st.update_replicas([report("a"), report("b")], clock.now())
    st.replica_failed("a", clock.now())
    clock.advance(1.0)
    st.replica_failed("b", clock.now())
    decision = route(st, 1, req("standard", now=clock.now()), clock.now())
    assert isinstance(decision, Shed) and decision.reason == "no_healthy_replica"
    assert decision.retry_after_s == pytest.approx(3.0)  # a half-opens 4 s after its failure
    assert st.flight(1) is None  # a shed request is no longer tracked


def test_retries_after_a_rejection_spend_the_retry_budget():
    st = state(retry=RetrySettings(ratio=0.0, min_per_s=0.1, max_attempts=3))  # one retry per 10 s window
    st.update_replicas([report("a")], 0.0)
    assert st.admit("k", req("standard"), 0.0) is None
    assert st.retry("k", 0.1) is None
    shed = st.retry("k", 0.2)
    assert isinstance(shed, Shed) and shed.reason == "retry_budget_exhausted" and st.flight("k") is None


def test_a_hedge_never_goes_to_its_first_copys_replica_and_is_paid_from_the_budget():
    st = state(retry=RetrySettings(ratio=0.0, min_per_s=0.1, max_attempts=3))
    st.update_replicas([report("fast", service_ms=5.0), report("slow", service_ms=80.0)], 0.0)
    first = route(st, "c1", req("standard"), 0.0, call_id="call-1")
    assert first.replica_id == "fast"
    hedge = route(st, "c2", req("standard"), 0.05, call_id="call-2", hedge_of="call-1")
    assert hedge.replica_id == "slow"  # the only other replica, though slower
    again = st.admit("c3", req("standard"), 0.06, hedge_of="call-1")
    assert isinstance(again, Shed) and again.reason == "hedge_budget_exhausted" and st.flight("c3") is None


def test_a_hedge_decided_before_the_first_copy_was_accepted_still_avoids_its_replica():
    """CI on a saturated host: the first copy's replica accepted it (``routed``) more than 200 ms after the
    router sent it; the hedge, due at 200 ms, went to the same and only replica. The copy's replica is
    known from its ``Route`` on."""
    st = state()
    st.update_replicas([report("only")], 0.0)
    assert st.admit("c1", req("standard"), 0.0, call_id="call-1") is None
    assert st.decide("c1", 0.0).replica_id == "only"  # sent, not yet accepted
    shed = route(st, "c2", req("standard"), 0.2, hedge_of="call-1")
    assert isinstance(shed, Shed) and shed.reason == "no_hedge_replica"
    st.update_replicas([report("only"), report("other")], 0.3)
    assert route(st, "c3", req("standard"), 0.3, hedge_of="call-1").replica_id == "other"


def test_call_ids_are_forgotten_when_their_request_completes():
    # Soak finding: the call-id table kept the last 100k calls ever routed. It holds those in flight.
    st = state()
    st.update_replicas([report("a", slots=8), report("b", slots=8)], 0.0)
    for i in range(50):
        assert isinstance(route(st, f"k{i}", req("standard", now=i * 0.1), i * 0.1, call_id=f"call-{i}"), Route)
        if i % 10:
            st.completed(f"k{i}", i * 0.1 + 0.01, service_ms=10.0)
    assert sorted(st._call_replica) == [f"call-{i}" for i in range(0, 50, 10)]
    assert len(st._flights) == 5


def test_a_hedge_with_no_other_replica_is_shed():
    st = state()
    st.update_replicas([report("only")], 0.0)
    assert route(st, "c1", req("standard"), 0.0, call_id="call-1").replica_id == "only"
    shed = route(st, "c2", req("standard"), 0.05, hedge_of="call-1")
    assert isinstance(shed, Shed) and shed.reason == "no_hedge_replica"


def test_hedge_timing_follows_the_class():
    classes = dict(CLASSES, standard=QosClass("standard", 1, 1000, hedge_after_ms=50.0))
    st = state(classes=classes)
    st.update_replicas([report("a")], 0.0)
    st.admit("k", req("standard", classes=classes, now=1.0), 1.0)
    st.admit("plain", req("critical", now=1.0), 1.0)
    assert st.hedge_at("k") == pytest.approx(1.05) and st.hedge_at("plain") is None
    assert not st.hedge_due("k", 1.04) and st.hedge_due("k", 1.06) and not st.hedge_due("k", 2.0)  # deadline
    st.forget("k")
    assert not st.hedge_due("k", 1.06)  # answered (no longer tracked): no hedge


def test_queued_estimate_is_the_larger_of_report_and_own_count_trimmed_for_executing():
    st = state()
    # the report (a period old) says nothing is queued; this router has sent 3 that have not completed
    st.update_replicas([report("a", slots=2, max_ongoing=math.inf)], 0.0)
    for k in range(3):
        st.admit(k, req("sheddable"), 0.0)
        st.routed(k, "a", 0.0)
    st.admit("probe", req("critical"), 0.0)
    st.decide("probe", 0.0, [("a", 3)])
    view = st.views()[0]
    assert view.queued_by_priority == {2: 1}  # 3 in flight, 2 of them execute on its 2 slots
    st.update_replicas([report("a", slots=2, max_ongoing=math.inf, executing=2, queued=4,
                               queued_by_priority={1: 4})], 0.1)  # fmt: skip
    st.decide("probe", 0.1, [("a", None)])  # the cache knows nothing: the report's 6 ongoing, 4 queued
    # max per priority ({1: 4} reported, {2: 3} own), then 2 executing taken from the least urgent first
    assert st.views()[0].queued_by_priority == {1: 4}


def test_service_samples_are_taken_once_and_do_not_touch_pending_counts():
    st = state()
    samples = (ServiceSample(0, "default", 40.0), ServiceSample(1, "default", 40.0))
    st.update_replicas([report("a", service_ms=10.0, service_samples=samples)], 0.0)
    st.update_replicas([report("a", service_ms=10.0, service_samples=samples)], 0.1)  # same samples again
    core = st.core
    assert core.pending.get("a", 0) == 0
    assert core.table.mean("a", "default") == pytest.approx(40.0)
    assert core.table._stats["default"]["a"].count == 2


def test_front_door_refuses_when_every_class_queue_is_full():
    st = state()
    full = {"queue_bounds": {"standard": 2}, "queued_by_class": {"standard": 2}}
    st.update_replicas([report("a", **full), report("b", **full)], 0.0)
    shed = route(st, 1, req("standard"), 0.0)
    assert isinstance(shed, Shed) and shed.reason == "queue_full"
    assert isinstance(route(st, 2, req("critical"), 0.0), Route)  # never shed: the gate makes room


def test_live_views_are_taken_as_they_are_and_completions_feed_the_breaker():
    st = state(BreakerSettings(consecutive_failures=1, max_ejected_fraction=0.5))
    views = [ReplicaView(rid, NodeAttrs(node_id=rid), slots=1, max_ongoing=4, service_ms={"default": 10.0})
             for rid in ("a", "b")]  # fmt: skip
    for v in views:
        st.add_replica(v)
    views[0].queued_by_priority = {2: 1}
    views[0].ongoing = 2
    assert route(st, 1, req("standard"), 0.0).replica_id == "b"
    st.completed(1, 0.01, service_ms=10.0, health=False)  # the replica failed it
    assert views[0].queued_by_priority == {2: 1}  # a live view is not replaced by an estimate
    assert st.breaker_state("b", 0.01).value == "open"
    assert route(st, 2, req("standard"), 0.02).replica_id == "a"
    st.completed(2, 0.03, service_ms=10.0, health=None)  # refused by admission: no signal for the breaker
    assert st.breaker_state("a", 0.03).value == "closed"


def test_wait_keeps_the_request_tracked():
    st = state()
    st.update_replicas([report("a", max_ongoing=1)], 0.0)
    st.admit(1, req("standard"), 0.0)
    assert isinstance(st.decide(1, 0.0, [("a", 1)]), Wait)
    assert st.flight(1) is not None


def test_completed_without_routing_forgets_and_observes_nothing():
    st = state()
    st.update_replicas([report("a")], 0.0)
    st.admit(1, req("standard"), 0.0)
    assert st.completed(1, 0.5) is not None and st.flight(1) is None
    assert st.core.pending.get("a", 0) == 0


def test_a_late_success_while_half_open_does_not_hide_the_probes_success():
    # Serve learns results from published totals: a success of a call from before the ejection can
    # arrive while the breaker is half-open and before the probe; the probe's success must still close it.
    st = state(BreakerSettings(consecutive_failures=1, ejection_s=1.0, max_ejected_fraction=1.0))
    st.update_replicas([report("a")], 0.0)
    st.update_replicas([report("a", failed_total=1)], 0.1)
    assert st.breaker_state("a", 0.1).value == "open"
    st.update_replicas([report("a", failed_total=1, completed_total=1)], 1.2)  # late, no probe out yet
    assert st.breaker_state("a", 1.2).value == "half_open"
    assert route(st, 1, req("standard", now=1.3), 1.3).replica_id == "a"  # the probe
    st.completed(1, 1.3)
    st.update_replicas([report("a", failed_total=1, completed_total=2)], 1.4)
    assert st.breaker_state("a", 1.4).value == "closed"


def test_a_critical_copy_the_gate_started_ahead_of_older_work_is_not_hedged():
    # hedge_running=False: the first copy counts as running once the replica's gate would have started
    # it, even though a less urgent request sent earlier is still in flight there (it waits behind it).
    classes = dict(CLASSES, critical=QosClass("critical", 0, 500, Shedding.NEVER, hedge_after_ms=10.0))
    core = create_router("agentic", random.Random(0), classes=classes)
    st = RoutingState(core, retry=RetrySettings(ratio=1.0, min_per_s=10.0, max_attempts=3), hedge_running=False)
    st.update_replicas([report("a"), report("b")], 0.0)
    assert route(st, "s0", req("sheddable"), 0.0).replica_id == "a"  # runs on a
    st.admit("s1", req("sheddable"), 0.001)
    st.routed("s1", "a", 0.001)  # a sheddable request queued on a
    crit = req("critical", classes=classes, now=0.002)
    st.admit("c", crit, 0.002, call_id="call-c")
    st.routed("c", "a", 0.002)  # queued on a, ahead of s1 at the gate
    st.completed("s0", 0.005, service_ms=5.0)  # the replica starts c, not s1
    shed = st.admit("h", crit, 0.012, hedge_of="call-c")
    assert isinstance(shed, Shed) and shed.reason == "hedge_first_copy_running"


def test_a_class_cap_counts_this_routers_own_sends_since_the_report():
    """Chaos ladder at 2x: most refusals were the gates' ``class_cap`` ones, after a round trip, because a
    report a stats period old still showed cap room this router had used since. A capped replica publishes
    its caps; the router counts its own requests there from each ``Route`` to their end against them."""
    st = state()
    capped = {"class_caps": {"sheddable": 2}, "cap_room": {"sheddable": 2}, "queue_bounds": {"sheddable": 16}}
    st.update_replicas([report("a", max_ongoing=math.inf, **capped)], 0.0)
    assert isinstance(route(st, 1, req("sheddable"), 0.0), Route)
    st.admit(2, req("sheddable"), 0.0)
    assert isinstance(st.decide(2, 0.0), Route)  # routed, not yet accepted: counts already
    shed = route(st, 3, req("sheddable"), 0.0)
    assert isinstance(shed, Shed) and shed.reason == "class_cap"  # the report still says 2 left
    st.update_replicas([report("a", max_ongoing=math.inf, **capped)], 0.1)  # a stale report restores nothing
    st.admit(41, req("sheddable"), 0.1)
    assert isinstance(st.decide(41, 0.1, [("a", 2)]), Shed)  # with Serve's candidates and their counts
    assert isinstance(route(st, 4, req("sheddable"), 0.1), Shed)  # and without
    assert isinstance(route(st, 5, req("standard"), 0.1), Route)  # an uncapped class is not held back
    st.completed(1, 0.2)
    assert isinstance(route(st, 6, req("sheddable"), 0.2), Route)  # one ended: one more may go
    assert isinstance(route(st, 7, req("sheddable"), 0.2), Shed)
    # request 2 was never accepted (cancelled while Serve routed it): it stops counting after a while
    assert isinstance(route(st, 8, req("sheddable", now=5.0), 5.0), Route)
    st.completed(6, 5.1)
    st.completed(8, 5.1)
    # what the replica reports bounds the room too (other routers' requests): published 0 left
    st.update_replicas([report("a", max_ongoing=math.inf, **{**capped, "cap_room": {"sheddable": 0}})], 5.2)
    assert isinstance(route(st, 9, req("sheddable", now=5.2), 5.2), Shed)


def test_a_shed_or_forgotten_request_stops_counting_against_a_cap():
    st = state()
    capped = {"class_caps": {"sheddable": 1}, "cap_room": {"sheddable": 1}}
    st.update_replicas([report("a", max_ongoing=math.inf, **capped), report("b", max_ongoing=math.inf, **capped)],
                       0.0)  # fmt: skip
    assert isinstance(route(st, 1, req("sheddable"), 0.0), Route)
    assert isinstance(route(st, 2, req("sheddable"), 0.0), Route)  # the other replica
    assert isinstance(route(st, 3, req("sheddable"), 0.0), Shed)
    st.forget(1)
    st.retry(2, 0.0)  # came back: still counted where it was last routed until decided again
    decision = st.decide(2, 0.0)
    assert isinstance(decision, Route)  # moved, not counted twice: one replica still has room
    assert isinstance(route(st, 4, req("sheddable"), 0.0), Route)
    assert isinstance(route(st, 5, req("sheddable"), 0.0), Shed)


def test_a_class_queue_counts_this_routers_own_sends_beyond_the_slots():
    """The same for a queue bound (chaos ladder at 4x: the gates' ``queue_full`` refusals were the slow
    ones once caps were counted): this router's requests there count as queued (the slots may be busy
    with more urgent work), whatever the last report said."""
    st = state()
    st.update_replicas([report("a", slots=1, max_ongoing=math.inf, queue_bounds={"sheddable": 2})], 0.0)
    for k in range(2):
        assert isinstance(route(st, k, req("sheddable"), 0.0), Route)
    shed = route(st, 2, req("sheddable"), 0.0)
    assert isinstance(shed, Shed) and shed.reason == "queue_full"
    assert isinstance(route(st, 3, req("standard"), 0.0), Route)  # another class's queue is not full
    st.completed(0, 0.1)
    assert isinstance(route(st, 4, req("sheddable", now=0.1), 0.1), Route)
