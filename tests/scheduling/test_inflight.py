"""The front door's in-flight limit with a bounded priority queue (``scheduling.inflight``): pure."""

from __future__ import annotations

import math

import pytest

from agentic_ray.scheduling.inflight import InflightQueue, WaitForecast


def test_admits_up_to_the_limit_then_the_most_urgent_waiter_first():
    q: InflightQueue[str] = InflightQueue(limit=2, max_waiting=8)
    assert q.arrive("a", 0, 10.0) == (True, []) and q.arrive("b", 0, 10.0) == (True, [])
    assert q.arrive("late-shed", 2, 9.0) == (False, [])  # waits
    assert q.arrive("urgent", 0, 50.0) == (False, [])
    assert q.arrive("early-shed", 2, 5.0) == (False, [])
    assert q.arrive("std", 1, 99.0) == (False, [])
    assert (q.inflight, q.waiting) == (2, 4)
    # priority first, then deadline, then arrival
    assert q.release(0) == ["urgent"] and q.release(0) == ["std"]
    assert q.release(0) == ["early-shed"] and q.release(1) == ["late-shed"]
    assert q.release(2) == [] and q.release(2) == [] and (q.inflight, q.waiting) == (0, 0)


def test_one_admitted_now_counts_against_the_limit():
    q: InflightQueue[str] = InflightQueue(limit=1, max_waiting=8)
    q.admit_now(0)
    assert q.arrive("shed", 2, 1.0) == (False, [])
    q.admit_now(0)
    assert q.inflight == 2 and q.release(0) == [] and q.release(0) == ["shed"]


def test_less_urgent_work_inside_does_not_hold_more_urgent_work_back():
    q: InflightQueue[str] = InflightQueue(limit=2, max_waiting=8)
    assert q.arrive("shed1", 2, 1.0) == (True, []) and q.arrive("shed2", 2, 1.0) == (True, [])
    assert q.arrive("shed3", 2, 1.0) == (False, [])
    # only critical work counts against a critical arrival: two go in past the sheddable ones
    assert q.arrive("crit1", 0, 9.0) == (True, []) and q.arrive("crit2", 0, 9.0) == (True, [])
    assert q.arrive("crit3", 0, 9.0) == (False, [])
    assert q.arrive("std", 1, 1.0) == (False, [])  # standard counts the critical ones: 2 of 2
    assert (q.inflight, q.inflight_upto(0), q.inflight_upto(1), q.waiting) == (4, 2, 2, 3)
    # a sheddable one ending frees no room for the waiters (each counts 2 critical at least)
    assert q.release(2) == []
    assert q.release(0) == ["crit3"]  # room for critical: the most urgent waiter goes in
    assert q.release(0) == ["std"]  # standard counts one critical now, not the sheddable one
    assert q.release(0) == []  # sheddable counts every one: one of each is in
    assert q.release(1) == ["shed3"] and (q.inflight, q.waiting) == (2, 0)
    # a waiter of the same or a more urgent priority is not overtaken by an arrival
    q2: InflightQueue[str] = InflightQueue(limit=1, max_waiting=8)
    q2.arrive("in", 1, 1.0)
    q2.arrive("std-waiting", 1, 1.0)
    assert q2.arrive("shed", 2, 1.0) == (False, [])
    assert q2.arrive("crit", 0, 1.0) == (True, [])  # no critical waiter, no critical inside


def test_same_priority_and_deadline_go_in_arrival_order():
    q: InflightQueue[int] = InflightQueue(limit=4, max_waiting=8)
    for i in range(-4, 0):
        q.arrive(i, 1, 0.0)
    for i in range(1, 5):  # four wait: not more than the limit, so not a standing queue
        q.arrive(i, 1, 1.0)
    assert [q.release(1)[0] for _ in range(4)] == [1, 2, 3, 4]


def test_a_standing_queue_serves_the_latest_deadline_first_and_refuses_its_oldest():
    q: InflightQueue[str] = InflightQueue(limit=1, max_waiting=3)
    q.arrive("in", 2, 0.0)
    for name, deadline in (("b", 2.0), ("c", 3.0), ("d", 4.0)):  # three wait for one place: standing
        assert q.arrive(name, 2, deadline) == (False, [])
    assert q.arrive("e", 2, 5.0) == (False, ["b"])  # full: the oldest goes, the newest waits
    assert q.arrive("x", 3, 9.0) == (False, ["x"])  # less urgent than every waiter: refused itself
    assert q.release(2) == ["e"] and q.release(2) == ["d"]  # latest deadline first
    assert q.release(2) == ["c"] and q.waiting == 0
    # a more urgent waiter still goes first, and one waiter per place is not standing: earliest first
    q.arrive("s1", 2, 8.0)
    q.arrive("s2", 2, 7.0)
    assert q.arrive("crit", 0, 9.0) == (True, [])  # no critical work in: in past the sheddable waiters
    assert q.release(2) == [] and q.release(0) == ["s1"]  # s1, s2: two for one place: standing
    q.arrive("s3", 2, 1.0)
    assert q.release(2) == ["s2"]  # s2, s3: standing, the latest deadline
    assert q.release(2) == ["s3"]
    # not standing: an arrival into a full queue refuses the latest deadline (or itself)
    q2: InflightQueue[str] = InflightQueue(limit=2, max_waiting=2)
    q2.arrive("i1", 0, 0.0)
    q2.arrive("i2", 0, 0.0)
    q2.arrive("w1", 2, 1.0)
    q2.arrive("w2", 2, 3.0)
    assert q2.arrive("w3", 2, 2.0) == (False, ["w2"]) and q2.arrive("w4", 2, 4.0) == (False, ["w4"])
    assert q2.release(0) == ["w1"] and q2.release(0) == ["w3"]


def test_a_full_queue_refuses_the_least_urgent():
    q: InflightQueue[str] = InflightQueue(limit=2, max_waiting=2)
    q.arrive("running", 0, 1.0)
    q.arrive("running2", 0, 1.0)
    assert q.arrive("shed1", 2, 5.0) == (False, []) and q.arrive("std1", 1, 5.0) == (False, [])
    # full: a sheddable arrival is not more urgent than the least urgent waiter, so it is refused itself
    assert q.arrive("shed2", 2, 6.0) == (False, ["shed2"])
    # a more urgent arrival displaces the least urgent waiter
    assert q.arrive("std2", 1, 4.0) == (False, ["shed1"])
    assert q.waiting == 2 and q.leave("shed1") is False  # gone already
    assert q.arrive("std3", 1, 4.5) == (False, ["std1"])  # same priority: the later deadline goes
    assert q.arrive("std4", 1, 4.5) == (False, ["std4"])  # same key: the later arrival goes
    assert q.release(0) == ["std2"] and q.release(1) == ["std3"]
    assert InflightQueue(1, 0).arrive("a", 0, 1.0) == (True, [])
    zero: InflightQueue[str] = InflightQueue(1, 0)
    zero.arrive("a", 0, 1.0)
    assert zero.arrive("b", 0, 0.5) == (False, ["b"])  # no waiting at all: refused at once


def test_a_waiter_that_leaves_is_not_admitted_and_dead_waiters_are_skipped():
    q: InflightQueue[str] = InflightQueue(limit=2, max_waiting=4)
    q.arrive("running", 0, 1.0)
    q.arrive("running2", 0, 1.0)
    q.arrive("gone", 0, 1.0)
    q.arrive("dead", 1, 1.0)
    q.arrive("next", 1, 2.0)
    assert q.leave("gone") is True and q.leave("gone") is False
    assert q.release(0, alive=lambda t: t != "dead") == ["next"]
    assert (q.inflight, q.waiting) == (2, 0)


def test_resizing_admits_at_once_when_the_limit_grows_and_waits_when_it_shrinks():
    q: InflightQueue[int] = InflightQueue(limit=1, max_waiting=8)
    for i in range(4):
        q.arrive(i, 1, float(i))
    assert q.set_limit(3, 8) == [1, 2] and q.inflight == 3
    assert q.set_limit(1, 8) == [] and q.inflight == 3
    assert q.release(1) == [] and q.release(1) == [] and q.release(1) == [3]
    assert q.inflight == 1


@pytest.mark.parametrize(("limit", "max_waiting"), [(0, 1), (1, -1)])
def test_bad_sizes_are_refused(limit, max_waiting):
    with pytest.raises(ValueError, match="limit must be >= 1"):
        InflightQueue(limit, max_waiting)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        InflightQueue(1, 1).set_limit(limit, max_waiting)


def test_controlled_delay_allows_the_interval_until_the_queue_has_stood_that_long():
    from agentic_ray.scheduling.inflight import ControlledDelay

    delay = ControlledDelay(target_s=0.5, interval_s=2.0)
    delay.observe(0, now=10.0)  # an arrival finds the queue empty
    assert delay.max_wait_s(10.0) == 2.0 and not delay.standing(10.0)
    delay.observe(3, now=11.0)  # arrivals find waiters: it has not stood an interval yet
    assert delay.max_wait_s(11.0) == 2.0
    delay.observe(2, now=12.0)
    assert delay.standing(12.0) and delay.max_wait_s(12.0) == 0.5
    delay.observe(0, now=15.0)  # emptied: a burst waits the interval again
    assert delay.max_wait_s(15.0) == 2.0 and delay.max_wait_s(16.5) == 2.0 and delay.max_wait_s(17.0) == 0.5
    off = ControlledDelay(target_s=0.5, interval_s=float("inf"))  # never observed empty, and never standing
    assert off.max_wait_s(1e9) == float("inf")
    with pytest.raises(ValueError, match="target_s <= interval_s"):
        ControlledDelay(target_s=0.2, interval_s=0.1)


def test_without_lifo_a_standing_queue_stays_earliest_deadline_first_and_tells_positions():
    q: InflightQueue[str] = InflightQueue(limit=1, max_waiting=4, lifo=False)
    q.arrive("in", 2, 0.0)
    for name, deadline in (("b", 2.0), ("c", 3.0), ("d", 4.0)):  # three wait for one place
        assert q.arrive(name, 2, deadline) == (False, [])
    assert [q.position(n) for n in ("b", "c", "d")] == [0, 1, 2] and q.position("in") is None
    q.arrive("crit", 0, 9.0)  # in at once: no critical work in
    q.arrive("std", 1, 5.0)  # waits ahead of every sheddable waiter
    assert q.position("std") == 0 and q.position("d") == 3
    assert q.arrive("e", 2, 5.0) == (False, ["e"])  # full: the latest deadline of the lowest priority goes
    assert q.release(0) == ["std"]
    assert q.release(1) == [] and q.release(2) == ["b"] and q.release(2) == ["c"]  # earliest deadline first


def test_wait_forecast_drains_at_limit_over_path_time_less_more_urgent_arrivals():
    f = WaitForecast(tau_s=1.0)
    assert f.wait_s(3, 2, limit=4, path_s=0.1, now=0.0) == pytest.approx(0.1)  # 4 / 0.1 = 40 a second
    for _ in range(20):
        f.let_in(0, 0.0)  # critical at 20 a second (decayed over one second)
    f.let_in(2, 0.0)  # its own priority does not go ahead of it
    assert f.rate(0, 0.0) == pytest.approx(20.0) and f.rate(0, 1.0) == pytest.approx(20.0 / math.e)
    assert f.urgent_rate(2, 0.0) == pytest.approx(20.0) and f.urgent_rate(0, 0.0) == 0.0
    assert f.wait_s(3, 2, limit=4, path_s=0.1, now=0.0) == pytest.approx(4 / 20.0)  # 40 - 20 left
    assert f.wait_s(3, 0, limit=4, path_s=0.1, now=0.0) == pytest.approx(0.1)  # critical: nothing ahead
    for _ in range(40):
        f.let_in(2, 0.0)  # 41 sheddable let in a second: 61 in all, more than 40: the rate is what went in
    assert f.wait_s(3, 2, limit=4, path_s=0.1, now=0.0) == pytest.approx(4 / 41.0)  # 61 - 20
    g = WaitForecast(tau_s=1.0)
    for _ in range(100):
        g.let_in(0, 0.0)  # more urgent work takes all 100 a second: at least 5 % of it left, 5 a second
    assert g.wait_s(3, 2, limit=4, path_s=0.1, now=0.0) == pytest.approx(4 / 5.0)
    assert f.wait_s(3, 2, limit=4, path_s=0.0, now=0.0) == 0.0  # nothing measured: no forecast
    with pytest.raises(ValueError, match="tau_s"):
        WaitForecast(tau_s=0.0)


def test_lifo_may_hold_for_some_priorities_only():
    q: InflightQueue[str] = InflightQueue(limit=1, max_waiting=8, lifo=frozenset({0}))
    q.arrive("in-shed", 2, 0.0)
    q.arrive("in-crit", 0, 0.0)  # both in: the critical one counts only its own priority
    for name, deadline in (("c1", 1.0), ("c2", 2.0), ("s1", 1.0), ("s2", 2.0)):  # two of each wait: standing
        q.arrive(name, 0 if name.startswith("c") else 2, deadline)
    assert q.release(0) == ["c2"]  # priority 0 is LIFO: the latest deadline first
    assert q.release(0) == ["c1"] and q.release(0) == []
    assert q.release(2) == ["s1"]  # priority 2 is not: the earliest deadline first, though standing


def test_a_waiter_that_is_not_ready_holds_its_priority_back_not_the_less_urgent():
    blocked = {"s1"}  # its class has no room downstream now
    q: InflightQueue[str] = InflightQueue(limit=1, max_waiting=8, lifo=False)
    q.ready = lambda ticket: ticket not in blocked
    q.arrive("in", 1, 0.0)
    q.arrive("s1", 1, 1.0)  # standard, not ready
    q.arrive("s2", 1, 2.0)
    q.arrive("x1", 2, 1.0)  # sheddable
    assert q.release(1) == ["x1"]  # the standard block waits (its head has no room), the sheddable goes
    assert q.waiting == 2 and q.position("s1") == 0
    blocked.clear()
    assert q.release(2) == ["s1"]  # room again: the standard head first
    assert q.release(1) == ["s2"] and q.waiting == 0
