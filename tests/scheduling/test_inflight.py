"""The front door's in-flight limit with a bounded priority queue (``scheduling.inflight``): pure."""

from __future__ import annotations

import pytest

from agentic_ray.scheduling.inflight import InflightQueue


def test_admits_up_to_the_limit_then_the_most_urgent_waiter_first():
    q: InflightQueue[str] = InflightQueue(limit=2, max_waiting=8)
    assert q.arrive("a", 2, 10.0) == (True, []) and q.arrive("b", 2, 10.0) == (True, [])
    assert q.arrive("late-shed", 2, 9.0) == (False, [])  # waits
    assert q.arrive("urgent", 0, 50.0) == (False, [])
    assert q.arrive("early-shed", 2, 5.0) == (False, [])
    assert q.arrive("std", 1, 99.0) == (False, [])
    assert (q.inflight, q.waiting) == (2, 4)
    # priority first, then deadline, then arrival
    assert q.release() == ["urgent"] and q.release() == ["std"]
    assert q.release() == ["early-shed"] and q.release() == ["late-shed"]
    assert q.release() == [] and q.release() == [] and (q.inflight, q.waiting) == (0, 0)


def test_one_admitted_now_counts_against_the_limit():
    q: InflightQueue[str] = InflightQueue(limit=1, max_waiting=8)
    q.admit_now()
    assert q.arrive("shed", 2, 1.0) == (False, [])
    q.admit_now()
    assert q.inflight == 2 and q.release() == [] and q.release() == ["shed"]


def test_same_priority_and_deadline_go_in_arrival_order():
    q: InflightQueue[int] = InflightQueue(limit=1, max_waiting=8)
    q.arrive(0, 1, 1.0)
    for i in range(1, 5):
        q.arrive(i, 1, 1.0)
    assert [q.release()[0] for _ in range(4)] == [1, 2, 3, 4]


def test_a_full_queue_refuses_the_least_urgent():
    q: InflightQueue[str] = InflightQueue(limit=1, max_waiting=2)
    q.arrive("running", 0, 1.0)
    assert q.arrive("shed1", 2, 5.0) == (False, []) and q.arrive("std1", 1, 5.0) == (False, [])
    # full: a sheddable arrival is not more urgent than the least urgent waiter, so it is refused itself
    assert q.arrive("shed2", 2, 6.0) == (False, ["shed2"])
    # a more urgent arrival displaces the least urgent waiter
    assert q.arrive("std2", 1, 4.0) == (False, ["shed1"])
    assert q.waiting == 2 and q.leave("shed1") is False  # gone already
    assert q.arrive("std3", 1, 4.5) == (False, ["std1"])  # same priority: the later deadline goes
    assert q.arrive("std4", 1, 4.5) == (False, ["std4"])  # same key: the later arrival goes
    assert q.release() == ["std2"] and q.release() == ["std3"]
    assert InflightQueue(1, 0).arrive("a", 0, 1.0) == (True, [])
    zero: InflightQueue[str] = InflightQueue(1, 0)
    zero.arrive("a", 0, 1.0)
    assert zero.arrive("b", 0, 0.5) == (False, ["b"])  # no waiting at all: refused at once


def test_a_waiter_that_leaves_is_not_admitted_and_dead_waiters_are_skipped():
    q: InflightQueue[str] = InflightQueue(limit=1, max_waiting=4)
    q.arrive("running", 1, 1.0)
    q.arrive("gone", 0, 1.0)
    q.arrive("dead", 1, 1.0)
    q.arrive("next", 1, 2.0)
    assert q.leave("gone") is True and q.leave("gone") is False
    assert q.release(alive=lambda t: t != "dead") == ["next"]
    assert (q.inflight, q.waiting) == (1, 0)


def test_resizing_admits_at_once_when_the_limit_grows_and_waits_when_it_shrinks():
    q: InflightQueue[int] = InflightQueue(limit=1, max_waiting=8)
    for i in range(4):
        q.arrive(i, 1, float(i))
    assert q.set_limit(3, 8) == [1, 2] and q.inflight == 3
    assert q.set_limit(1, 8) == [] and q.inflight == 3
    assert q.release() == [] and q.release() == [] and q.release() == [3]
    assert q.inflight == 1


@pytest.mark.parametrize(("limit", "max_waiting"), [(0, 1), (1, -1)])
def test_bad_sizes_are_refused(limit, max_waiting):
    with pytest.raises(ValueError, match="limit must be >= 1"):
        InflightQueue(limit, max_waiting)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        InflightQueue(1, 1).set_limit(limit, max_waiting)
