from __future__ import annotations

import dataclasses

import pytest

from agentic_ray.errors import BudgetExhausted, Overloaded
from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.admission import AdmissionGate, Enqueued, Reject, Start
from agentic_ray.scheduling.estimators import EwmaServiceTime
from agentic_ray.testing.clock import ManualClock

from .conftest import CLASSES, req


def test_starts_until_slots_full_then_queues():
    gate = AdmissionGate(2, CLASSES)
    a, b, c = req(), req(), req()
    assert isinstance(gate.offer(a, 0.0), Start)
    assert isinstance(gate.offer(b, 0.0), Start)
    res = gate.offer(c, 0.0)
    assert isinstance(res, Enqueued) and res.request_id == c.id and res.position == 0
    snap = gate.snapshot()
    assert (snap.executing, snap.queued, snap.ongoing) == (2, 1, 3)
    assert snap.queued_by_class == {"standard": 1} and snap.queued_by_priority == {1: 1}


def test_critical_behind_50_sheddable_starts_first():
    gate = AdmissionGate(1, CLASSES, default_queue_bound=100)
    first = req("sheddable")
    assert isinstance(gate.offer(first, 0.0), Start)
    shed = [req("sheddable") for _ in range(50)]
    for r in shed:
        assert isinstance(gate.offer(r, 0.0), Enqueued)
    critical = req("critical")
    res = gate.offer(critical, 0.001)
    assert isinstance(res, Enqueued) and res.position == 0
    admitted = gate.finish(first.id, 0.01)
    assert [s.request_id for s in admitted.started] == [critical.id]
    assert gate.is_executing(critical.id)
    # then the sheddable ones, in arrival order (equal deadlines: FIFO)
    admitted = gate.finish(critical.id, 0.02)
    assert [s.request_id for s in admitted.started] == [shed[0].id]


def test_edf_within_a_class():
    gate = AdmissionGate(1, CLASSES)
    blocker = req()
    gate.offer(blocker, 0.0)
    late = req(budget_ms=900)
    early = req(budget_ms=300)
    mid = req(budget_ms=600)
    for r in (late, early, mid):
        gate.offer(r, 0.0)
    order = []
    current = blocker.id
    for t in (0.01, 0.02, 0.03):
        started = gate.finish(current, t).started
        current = started[0].request_id
        order.append(current)
    assert order == [early.id, mid.id, late.id]


def test_full_queue_rejects_with_retry_after():
    classes = dict(CLASSES, standard=QosClass("standard", 1, 1000, queue_bound=2))
    svc = EwmaServiceTime()
    svc.observe(100.0, 0.0)
    gate = AdmissionGate(1, classes, service=svc)
    gate.offer(req(), 0.0)
    gate.offer(req(), 0.0)
    gate.offer(req(), 0.0)
    res = gate.offer(req(), 0.0)
    assert isinstance(res, Reject) and isinstance(res.error, Overloaded)
    assert res.error.reason == "queue_full"
    # 1 executing + 2 queued ahead, 1 slot, 100 ms each
    assert res.error.retry_after_s == pytest.approx(0.3)
    assert gate.snapshot().rejected_total == 1
    # another class still has room
    assert isinstance(gate.offer(req("critical"), 0.0), Enqueued)


def test_expired_queued_work_is_dropped_and_never_started():
    gate = AdmissionGate(1, CLASSES)
    clock = ManualClock()
    running = req(budget_ms=10_000)
    gate.offer(running, clock.now())
    short = req(budget_ms=100)
    long = req(budget_ms=5000)
    gate.offer(short, clock.now())
    gate.offer(long, clock.now())
    clock.advance(0.2)
    admitted = gate.finish(running.id, clock.now())
    assert [d.request_id for d in admitted.dropped] == [short.id]
    assert isinstance(admitted.dropped[0].error, BudgetExhausted)
    assert [s.request_id for s in admitted.started] == [long.id]
    assert not gate.is_executing(short.id) and not gate.is_queued(short.id)
    assert gate.snapshot().dropped_total == 1


def test_expire_reports_drops_once():
    gate = AdmissionGate(1, CLASSES)
    gate.offer(req(budget_ms=10_000), 0.0)
    a = req("critical", budget_ms=50)
    b = req("sheddable", budget_ms=60)
    c = req("sheddable", budget_ms=5000)
    for r in (a, b, c):
        gate.offer(r, 0.0)
    assert gate.expire(0.04) == []
    dropped = gate.expire(0.06)  # deadline <= now counts as passed
    assert sorted(d.request_id for d in dropped) == sorted([a.id, b.id])
    assert all(d.error.reason == "deadline_passed_in_queue" for d in dropped)
    assert gate.expire(0.2) == []
    assert gate.is_queued(c.id)
    assert gate.snapshot().queued_by_class == {"sheddable": 1}


def test_offer_past_deadline_and_infeasible():
    svc = EwmaServiceTime()
    svc.observe(200.0, 0.0)
    gate = AdmissionGate(4, CLASSES, service=svc)
    res = gate.offer(req(deadline=1.0), 1.0)
    assert isinstance(res, Reject) and isinstance(res.error, BudgetExhausted)
    assert res.error.reason == "deadline_passed"
    res = gate.offer(req("standard", budget_ms=150), 0.0)
    assert isinstance(res, Reject) and res.error.reason == "cannot_meet_deadline"
    # a never-shed class is admitted anyway
    assert isinstance(gate.offer(req("critical", budget_ms=150), 0.0), Start)
    # and the check can be turned off
    lenient = AdmissionGate(4, CLASSES, service=svc, refuse_infeasible=False)
    assert isinstance(lenient.offer(req("standard", budget_ms=150), 0.0), Start)


def test_littles_law_bound():
    classes = dict(CLASSES, standard=QosClass("standard", 1, 1000, max_queue_wait_ms=250))
    gate = AdmissionGate(4, classes, default_queue_bound=7)
    assert gate.queue_bound("standard") == 7  # no service estimate yet
    gate.finish("nothing", 0.0)
    gate.service.observe(100.0, 0.0)
    assert gate.queue_bound("standard") == 10  # 4 slots * 250 ms / 100 ms
    gate.service.observe(300.0, 0.0)  # EWMA 0.2: 100 + 0.2 * 200 = 140
    assert gate.queue_bound("standard") == 7  # floor(4 * 250 / 140)
    for _ in range(4):
        assert isinstance(gate.offer(req(), 0.0), Start)
    results = [gate.offer(req(), 0.0) for _ in range(8)]
    assert [type(r).__name__ for r in results] == ["Enqueued"] * 7 + ["Reject"]
    assert gate.snapshot().queue_bounds["standard"] == 7


def test_finish_is_idempotent_and_feeds_service_estimate():
    gate = AdmissionGate(1, CLASSES)
    a, b, c = req(), req(), req()
    gate.offer(a, 0.0)
    gate.offer(b, 0.0)
    gate.offer(c, 0.0)
    first = gate.finish(a.id, 0.1, service_ms=100.0)
    assert [s.request_id for s in first.started] == [b.id]
    again = gate.finish(a.id, 0.2, service_ms=5000.0)
    assert again.started == () and again.dropped == ()
    snap = gate.snapshot()
    assert (snap.executing, snap.queued, snap.started_total) == (1, 1, 2)
    assert snap.ewma_service_ms == 100.0
    with pytest.raises(ValueError, match="already in the gate"):
        gate.offer(b, 0.3)


def test_cancel_queued_only_once():
    gate = AdmissionGate(1, CLASSES)
    a, b = req(), req()
    gate.offer(a, 0.0)
    gate.offer(b, 0.0)
    assert gate.cancel(a.id) is False  # executing: use finish
    assert gate.cancel(b.id) is True
    assert gate.cancel(b.id) is False
    assert gate.finish(a.id, 0.1).started == ()
    assert gate.snapshot().queued == 0


def test_never_shed_evicts_sheddable_when_full():
    classes = {
        "critical": QosClass("critical", 0, 500, shedding=Shedding.NEVER, queue_bound=1),
        "sheddable": QosClass("sheddable", 2, 5000, shedding=Shedding.FIRST, queue_bound=3),
        "standard": QosClass("standard", 1, 1000, queue_bound=1),
    }
    gate = AdmissionGate(1, classes)
    gate.offer(req("standard", classes=classes), 0.0)  # executing
    assert isinstance(gate.offer(req("standard", classes=classes), 0.0), Enqueued)  # standard queue full
    s1 = req("sheddable", classes=classes, budget_ms=3000)
    s2 = req("sheddable", classes=classes, budget_ms=4000)
    for r in (s1, s2):
        gate.offer(r, 0.0)
    c1 = req("critical", classes=classes)
    assert isinstance(gate.offer(c1, 0.0), Enqueued)
    c2 = req("critical", classes=classes)
    res = gate.offer(c2, 0.0)
    assert isinstance(res, Enqueued)
    assert [e.request_id for e in res.evicted] == [s2.id]  # latest deadline of the least important class
    assert isinstance(res.evicted[0].error, Overloaded) and res.evicted[0].error.reason == "evicted"
    assert not gate.is_queued(s2.id) and gate.snapshot().evicted_total == 1
    # a more urgent when_overloaded class displaces less urgent work too (standard over sheddable)
    st = gate.offer(req("standard", classes=classes), 0.0)
    assert isinstance(st, Enqueued) and [e.request_id for e in st.evicted] == [s1.id]
    # nothing less urgent left: standard is refused, and never-shed displaces standard
    st2 = gate.offer(req("standard", classes=classes), 0.0)
    assert isinstance(st2, Reject) and st2.reason == "queue_full"
    res = gate.offer(req("critical", classes=classes), 0.0)
    assert isinstance(res, Enqueued) and res.evicted[0].qos == "standard"


def test_displacement_takes_the_least_urgent_then_latest_deadline_for_every_pair_of_levels():
    classes = {
        "p0": QosClass("p0", 0, 500, queue_bound=0),
        "p1": QosClass("p1", 1, 1000, queue_bound=0),
        "p2": QosClass("p2", 2, 5000, queue_bound=3),
        "p3": QosClass("p3", 3, 5000, shedding=Shedding.NEVER, queue_bound=3),
    }
    gate = AdmissionGate(1, classes)
    gate.offer(req("p2", classes=classes), 0.0)  # executing
    early, late = req("p2", classes=classes, budget_ms=1000), req("p2", classes=classes, budget_ms=3000)
    never = req("p3", classes=classes)
    for r in (early, late, never):
        assert isinstance(gate.offer(r, 0.0), Enqueued)
    # p1 over p2 (never-shed p3 is less urgent but is never displaced): the latest deadline goes first
    r1 = gate.offer(req("p1", classes=classes), 0.0)
    assert isinstance(r1, Enqueued) and [e.request_id for e in r1.evicted] == [late.id]
    # p0 over p2 (the least urgent level that may be shed), not over p1
    r0 = gate.offer(req("p0", classes=classes), 0.0)
    assert isinstance(r0, Enqueued) and [e.request_id for e in r0.evicted] == [early.id]
    # p0 over p1 once no p2 is left; equal priority never displaces
    r0b = gate.offer(req("p0", classes=classes), 0.0)
    assert isinstance(r0b, Enqueued) and r0b.evicted[0].qos == "p1"
    assert isinstance(gate.offer(req("p0", classes=classes), 0.0), Reject)
    assert gate.is_queued(never.id)


def test_bad_arguments():
    with pytest.raises(ValueError, match="slots"):
        AdmissionGate(0, CLASSES)
    with pytest.raises(ValueError, match="default_queue_bound"):
        AdmissionGate(1, CLASSES, default_queue_bound=-1)


# -- the concurrency limit (set_limit) ------------------------------------------------------------------
def test_lower_limit_holds_shedable_work_but_not_never_shed():
    gate = AdmissionGate(3, CLASSES)
    gate.set_limit(1, 0.0)
    first = req("standard")
    assert isinstance(gate.offer(first, 0.0), Start)
    held = req("sheddable")
    assert isinstance(gate.offer(held, 0.0), Enqueued)  # a slot is free, but the limit is reached
    critical = req("critical")
    assert isinstance(gate.offer(critical, 0.0), Start)  # never-shed work may use every slot
    assert gate.snapshot().limit == 1
    admitted = gate.finish(critical.id, 0.01)
    assert admitted.started == ()  # still one shed-able call running: the held one waits
    admitted = gate.finish(first.id, 0.02)
    assert [s.request_id for s in admitted.started] == [held.id]


def test_raising_the_limit_starts_held_work_in_order():
    gate = AdmissionGate(3, CLASSES)
    gate.set_limit(1, 0.0)
    running = req("standard")
    gate.offer(running, 0.0)
    a, b = req("sheddable"), req("standard")
    gate.offer(a, 0.0)
    gate.offer(b, 0.0)
    admitted = gate.set_limit(3, 0.01)
    assert [s.request_id for s in admitted.started] == [b.id, a.id]  # priority first


def test_set_limit_validates():
    gate = AdmissionGate(2, CLASSES)
    for bad in (0, 3, 1.5, True):
        with pytest.raises(ValueError, match="limit"):
            gate.set_limit(bad, 0.0)


def test_budget_bounds_hold_what_the_budget_can_drain():
    service = EwmaServiceTime()
    service.observe(50.0, 0.0)
    gate = AdmissionGate(2, CLASSES, default_queue_bound=4, service=service, budget_bounds=True, max_budget_bound=64)
    assert gate.queue_bound("standard") == 40  # floor(2 * 1000 / 50)
    assert gate.queue_bound("critical") == 20  # floor(2 * 500 / 50)
    assert gate.queue_bound("sheddable") == 64  # 200, capped
    gate.set_limit(1, 0.0)
    assert gate.queue_bound("standard") == 20  # drained by the current limit
    plain = AdmissionGate(2, CLASSES, default_queue_bound=4, service=service)
    assert plain.queue_bound("standard") == 4  # without budget_bounds: the default
    unmeasured = AdmissionGate(2, CLASSES, default_queue_bound=4, budget_bounds=True)
    assert unmeasured.queue_bound("standard") == 4  # no service time yet


# -- class caps (control-plane quotas, ``set_class_caps``) ------------------------------------------------
def test_a_sheddable_class_at_its_cap_is_refused_even_with_a_slot_free_and_critical_still_starts():
    gate = AdmissionGate(4, CLASSES)
    gate.set_class_caps({"standard": 2, "critical": 1})
    a, b = req(), req()
    assert isinstance(gate.offer(a, 0.0), Start)
    assert isinstance(gate.offer(b, 0.0), Start)
    refused = gate.offer(req(), 0.0)
    assert isinstance(refused, Reject) and refused.reason == "class_cap"
    assert isinstance(refused.error, Overloaded) and refused.error.reason == "class_cap"
    # A class that is never shed is admitted past its cap; an uncapped class is not capped.
    assert isinstance(gate.offer(req("critical"), 0.0), Start)
    assert isinstance(gate.offer(req("critical"), 0.0), Start)  # over its cap of 1: never shed
    assert isinstance(gate.offer(req("critical"), 0.0), Enqueued)  # slots full: queued, not refused
    assert isinstance(gate.offer(req("sheddable"), 0.0), Enqueued)
    # The cap counts running plus queued: one standard finishing makes room for one more.
    gate.finish(a.id, 0.01)
    assert not isinstance(gate.offer(req(), 0.01), Reject)
    assert isinstance(gate.offer(req(), 0.01), Reject)


def test_class_caps_count_queued_work_and_lifting_them_admits_again():
    gate = AdmissionGate(1, CLASSES)
    gate.set_class_caps({"sheddable": 2})
    assert isinstance(gate.offer(req("sheddable"), 0.0), Start)
    assert isinstance(gate.offer(req("sheddable"), 0.0), Enqueued)
    assert gate.offer(req("sheddable"), 0.0).reason == "class_cap"
    gate.set_class_caps({"sheddable": 0})
    assert gate.offer(req("sheddable"), 0.0).reason == "class_cap"
    gate.set_class_caps({})
    assert isinstance(gate.offer(req("sheddable"), 0.0), Enqueued)


@pytest.mark.parametrize("cap", [-1, 1.5, True, "2"])
def test_a_bad_class_cap_names_the_class(cap):
    with pytest.raises(ValueError, match=r"class_caps\.standard"):
        AdmissionGate(1, CLASSES).set_class_caps({"standard": cap})


def test_set_classes_changes_priorities_of_queued_classes_between_requests():
    gate = AdmissionGate(1, CLASSES)
    blocker = req()
    gate.offer(blocker, 0.0)
    s, c = req("sheddable"), req("standard")
    gate.offer(s, 0.0)
    gate.offer(c, 0.0)
    swapped = dict(CLASSES)
    swapped["sheddable"] = QosClass("sheddable", priority=0, budget_ms=5000, shedding=Shedding.FIRST)
    swapped["standard"] = QosClass("standard", priority=2, budget_ms=1000, shedding=Shedding.WHEN_OVERLOADED)
    gate.set_classes(swapped)
    assert [x.request_id for x in gate.finish(blocker.id, 0.01).started] == [s.id]
    assert gate.classes["standard"].priority == 2


def test_the_most_urgent_class_is_not_refused_as_infeasible_whatever_its_mode():
    classes = {n: QosClass(n, c.priority, c.budget_ms) for n, c in CLASSES.items()}  # all when_overloaded
    gate = AdmissionGate(1, classes)
    gate.finish(gate.offer(req("standard", classes=classes), 0.0).request_id, 0.1, service_ms=100.0)
    assert isinstance(gate.offer(req("critical", now=0.2, budget_ms=50, classes=classes), 0.2), Start)
    res = gate.offer(req("standard", now=0.2, budget_ms=50, classes=classes), 0.2)
    assert isinstance(res, Reject) and res.reason == "cannot_meet_deadline"


def test_a_tenant_over_its_share_displaces_its_own_less_urgent_queued_work():
    gate = AdmissionGate(1, CLASSES, tenant_shares={"a": 0.25})
    gate.offer(req("standard", tenant="b"), 0.0)  # executing
    a_shed = req("sheddable", tenant="a")
    assert isinstance(gate.offer(a_shed, 0.0), Enqueued)
    assert isinstance(gate.offer(req("standard", tenant="b"), 0.0), Enqueued)
    res = gate.offer(req("standard", tenant="a"), 0.0)  # a over its share: its own sheddable makes room
    assert isinstance(res, Enqueued) and [e.request_id for e in res.evicted] == [a_shed.id]
    res = gate.offer(req("standard", tenant="a"), 0.0)  # nothing of a's less urgent left: refused
    assert isinstance(res, Reject) and res.reason == "tenant_share"


def test_queued_work_that_cannot_finish_at_a_typical_execution_is_dropped_before_it_starts():
    """Overload ladder (chaos): under overload EDF starts the requests nearest their deadline, many of
    which then finish late, so the replica's time goes to late work. A queued request whose time left is
    below a typical execution here (the median of the recent ones) is dropped instead (never-shed work
    too: it cannot finish)."""
    for refuse in (True, False):
        gate = AdmissionGate(1, CLASSES, refuse_infeasible=refuse)
        for service_ms in (50.0, 90.0, 40.0):  # median 50 ms; the fastest (40) would keep `doomed`
            first = req("standard", budget_ms=10_000)
            gate.offer(first, 0.0)
            gate.finish(first.id, 0.05, service_ms=service_ms)
        running = req("standard", budget_ms=10_000, now=0.05)
        gate.offer(running, 0.05)
        doomed = req("critical", budget_ms=105, now=0.05)  # deadline 0.155: 45 ms left at 0.11
        fits = req("critical", budget_ms=200, now=0.05)  # deadline 0.25: 140 ms left at 0.11
        for r in (doomed, fits):
            assert isinstance(gate.offer(r, 0.05), Enqueued)
        admitted = gate.finish(running.id, 0.11, service_ms=60.0)
        if refuse:
            assert [d.request_id for d in admitted.dropped] == [doomed.id]
            assert admitted.dropped[0].error.reason == "deadline_passed_in_queue"
            assert "less than a typical execution here and the trip back (medians 50.0 + 0.0 ms)" in (
                admitted.dropped[0].error.detail
            )
            assert [s.request_id for s in admitted.started] == [fits.id]
        else:  # the gate refuses nothing as infeasible: the doomed request starts (EDF: it is first)
            assert admitted.dropped == () and [s.request_id for s in admitted.started] == [doomed.id]


def test_the_answers_trip_back_counts_when_queued_work_is_judged():
    """Overload ladder at 10x (chaos): a saturated caller's process delays each call's trip to the gate
    by tens of ms, and the answer's trip back as much; work started with only its execution time left
    ended late (52 of 356 critical executions). The median trip (``note_trip``) is added to the time a
    queued request needs."""
    gate = AdmissionGate(1, CLASSES)
    first = req("standard", budget_ms=10_000)
    gate.offer(first, 0.0)
    gate.finish(first.id, 0.05, service_ms=50.0)
    for trip_ms in (30.0, float("nan"), -5.0, 40.0, 500.0):  # median of the valid ones: 40 ms
        gate.note_trip(trip_ms)
    running = req("standard", budget_ms=10_000, now=0.05)
    gate.offer(running, 0.05)
    late = req("critical", budget_ms=140, now=0.05)  # 80 ms left at 0.11: < 50 + 40
    fits = req("critical", budget_ms=160, now=0.05)  # 100 ms left at 0.11: >= 90
    for r in (late, fits):
        assert isinstance(gate.offer(r, 0.05), Enqueued)
    admitted = gate.finish(running.id, 0.11, service_ms=50.0)
    assert [d.request_id for d in admitted.dropped] == [late.id]
    assert "(medians 50.0 + 40.0 ms)" in admitted.dropped[0].error.detail
    assert [s.request_id for s in admitted.started] == [fits.id]


def test_a_model_not_yet_measured_here_is_judged_by_its_deadline_alone():
    """Review: with one model measured and a trip noted, a queued request of a model never executed here
    had the trip added to its need, and its drop read the unmeasured model's median (KeyError). Without a
    typical execution for its model, queued work is dropped only once its deadline has passed."""
    gate = AdmissionGate(1, CLASSES)
    first = req("standard", budget_ms=10_000)
    gate.offer(first, 0.0)
    gate.finish(first.id, 0.05, service_ms=50.0)  # model "default" measured
    gate.note_trip(40.0)
    running = req("standard", budget_ms=10_000, now=0.05)
    gate.offer(running, 0.05)
    other = req("critical", budget_ms=90, now=0.05)
    other = dataclasses.replace(other, model="other")  # 30 ms left at 0.11: above 0, below the trip
    assert isinstance(gate.offer(other, 0.05), Enqueued)
    admitted = gate.finish(running.id, 0.11, service_ms=50.0)
    assert admitted.dropped == () and [s.request_id for s in admitted.started] == [other.id]
