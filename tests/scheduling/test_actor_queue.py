"""ActorQueue: one bound over all classes, least-critical displacement, never-shed never refused (pure)."""

from __future__ import annotations

import pytest

from agentic_ray.errors import BudgetExhausted, Overloaded
from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.actor_queue import ActorQueue, check_max_queued
from agentic_ray.scheduling.admission import Enqueued, Reject, Start

from .conftest import CLASSES, req


def _blocked(max_queued: int = 2, slots: int = 1, classes=CLASSES) -> tuple[ActorQueue, object]:
    queue = ActorQueue(slots, classes, max_queued)
    running = req("standard")
    assert isinstance(queue.offer(running, 0.0), Start)
    return queue, running


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None, "3"])
def test_max_queued_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_queued"):
        check_max_queued(bad)
    with pytest.raises(ValueError, match="max_queued"):
        ActorQueue(1, CLASSES, bad)


def test_critical_overtakes_queued_sheddable_calls():
    queue, running = _blocked(max_queued=10)
    shed = [req("sheddable") for _ in range(3)]
    for r in shed:
        assert isinstance(queue.offer(r, 0.0), Enqueued)
    critical = req("critical")
    assert isinstance(queue.offer(critical, 0.001), Enqueued)
    assert queue.queued_by_class() == {"sheddable": 3, "critical": 1}
    order = []
    current = running.id
    for t in (0.01, 0.02, 0.03, 0.04):
        (started,) = queue.finish(current, t).started
        current = started.request_id
        order.append(current)
    assert order == [critical.id, *(r.id for r in shed)]
    assert queue.queued() == 0


def test_full_queue_refuses_an_arrival_no_more_critical_than_what_waits():
    queue, _ = _blocked(max_queued=2)
    a, b = req("standard"), req("standard")
    queue.offer(a, 0.0)
    queue.offer(b, 0.0)
    for arrival in (req("standard"), req("sheddable")):
        res = queue.offer(arrival, 0.0)
        assert isinstance(res, Reject) and res.reason == "queue_full"
        assert isinstance(res.error, Overloaded) and res.error.retry_after_s is not None
        assert not queue.is_queued(arrival.id)
    assert queue.queued() == 2 and queue.snapshot().rejected_total == 2


def test_full_queue_evicts_the_least_critical_for_a_more_critical_arrival():
    queue, _ = _blocked(max_queued=2)
    std = req("standard")
    late_shed, early_shed = req("sheddable", budget_ms=5000), req("sheddable", budget_ms=3000)
    for r in (std, late_shed):
        queue.offer(r, 0.0)
    # standard arrival: the sheddable call with the latest deadline goes
    res = queue.offer(early_shed, 0.0)
    assert isinstance(res, Reject)  # sheddable vs sheddable: no displacement within a priority
    arrival = req("standard")
    res = queue.offer(arrival, 0.0)
    assert isinstance(res, Enqueued)
    (evicted,) = res.evicted
    assert evicted.request_id == late_shed.id and evicted.reason == "evicted"
    assert isinstance(evicted.error, Overloaded)
    assert queue.queued_by_class() == {"standard": 2}
    assert queue.snapshot().evicted_total == 1


def test_victim_is_latest_deadline_among_the_lowest_priority():
    queue, _ = _blocked(max_queued=3)
    s1, s2, s3 = req("sheddable", budget_ms=4000), req("sheddable", budget_ms=4500), req("sheddable", budget_ms=1000)
    for r in (s1, s2, s3):
        queue.offer(r, 0.0)
    res = queue.offer(req("critical"), 0.0)
    assert [d.request_id for d in res.evicted] == [s2.id]


def test_never_shed_is_never_refused_by_the_bound():
    queue, _ = _blocked(max_queued=2)
    c1, c2 = req("critical"), req("critical")
    queue.offer(c1, 0.0)
    queue.offer(c2, 0.0)
    # full of never-shed work: another critical call still waits, over the bound
    c3 = req("critical")
    res = queue.offer(c3, 0.0)
    assert isinstance(res, Enqueued) and res.evicted == ()
    assert queue.queued() == 3
    # a call that may be shed is refused (nothing less critical to evict)
    assert isinstance(queue.offer(req("standard"), 0.0), Reject)


def test_never_shed_class_bound_of_the_policy_does_not_refuse_it():
    classes = dict(CLASSES, critical=QosClass("critical", 0, 500, Shedding.NEVER, queue_bound=1))
    queue, _ = _blocked(max_queued=5, classes=classes)
    for _ in range(4):
        assert isinstance(queue.offer(req("critical", classes=classes), 0.0), Enqueued)


def test_policy_class_bound_below_max_queued_applies_to_classes_that_may_be_shed():
    classes = dict(CLASSES, sheddable=QosClass("sheddable", 2, 5000, Shedding.FIRST, queue_bound=1))
    queue, _ = _blocked(max_queued=5, classes=classes)
    assert isinstance(queue.offer(req("sheddable", classes=classes), 0.0), Enqueued)
    assert isinstance(queue.offer(req("sheddable", classes=classes), 0.0), Reject)
    assert isinstance(queue.offer(req("standard", classes=classes), 0.0), Enqueued)


def test_a_call_whose_deadline_passes_while_queued_never_starts():
    queue, running = _blocked(max_queued=4)
    short = req("standard", budget_ms=100)
    long = req("standard", budget_ms=1000)
    queue.offer(short, 0.0)
    queue.offer(long, 0.0)
    (dropped,) = queue.expire(0.2)
    assert dropped.request_id == short.id and dropped.reason == "deadline_passed_in_queue"
    assert isinstance(dropped.error, BudgetExhausted)
    assert [s.request_id for s in queue.finish(running.id, 0.3).started] == [long.id]
    assert queue.queued() == 0


def test_expired_calls_free_room_before_the_bound_is_checked():
    queue, _ = _blocked(max_queued=1)
    queue.offer(req("standard", budget_ms=100), 0.0)
    res = queue.offer(req("standard", now=0.5, budget_ms=1000), 0.5)
    assert isinstance(res, Enqueued) and len(res.dropped) == 1
    assert queue.queued() == 1


def test_cancel_and_finish_keep_the_mirror_in_step():
    queue, running = _blocked(max_queued=2)
    a, b = req("standard"), req("standard")
    queue.offer(a, 0.0)
    queue.offer(b, 0.0)
    assert queue.cancel(a.id) and not queue.cancel(a.id)
    assert queue.queued() == 1
    assert isinstance(queue.offer(req("standard"), 0.0), Enqueued)  # room again
    queue.finish(running.id, 0.1)
    assert queue.queued() == 1 and queue.is_executing(b.id)
    assert queue.finish(running.id, 0.1).started == ()  # idempotent


def test_service_estimates_are_kept_per_method():
    queue, running = _blocked(max_queued=4)
    queue.finish(running.id, 1.0, service_ms=900.0)  # "default" model: slow
    # a method not measured yet is not refused for the slow one's estimate
    fast = req("standard", now=1.0, model="health", budget_ms=50)
    assert isinstance(queue.offer(fast, 1.0), Start)
    queue.finish(fast.id, 1.01, service_ms=1.0)
    # the slow method is now refused when its budget is below its own estimate ...
    slow = req("standard", now=1.02, budget_ms=100)
    res = queue.offer(slow, 1.02)
    assert isinstance(res, Reject) and res.reason == "cannot_meet_deadline"
    # ... while the fast one is measured on its own
    assert isinstance(queue.offer(req("standard", now=1.03, model="health", budget_ms=50), 1.03), Start)
