"""Adaptive throttling (SRE book ch. 21) on hand-checked counts, a manual clock and stub draws."""

from __future__ import annotations

import pytest

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.throttle import MIN_REQUESTS, AdaptiveThrottle, ClassThrottles, refusal_probability


class Draw:
    """A stand-in for ``random.Random`` whose draws are fixed."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_while_the_backend_accepts_everything_nothing_is_refused():
    t = AdaptiveThrottle(k=2.0, window_s=2.0)
    assert t.probability(0.0) == 0.0  # a cold throttle lets the first request through
    for i in range(50):
        assert not t.refuse(i * 0.01, Draw(0.0))
        t.outcome(i * 0.01, accepted=True)
    assert t.probability(0.5) == 0.0


def test_refusal_probability_is_requests_minus_k_accepts_over_requests_plus_one():
    t = AdaptiveThrottle(k=2.0, window_s=2.0)
    for accepted in [True, True] + [False] * 8:
        t.outcome(1.0, accepted)
    assert (t.requests, t.accepts) == (10, 2)
    assert t.probability(1.0) == pytest.approx((10 - 2 * 2) / 11)  # 6/11
    # up to k times the accepts, nothing is refused: 4 requests, 2 accepted
    u = AdaptiveThrottle(k=2.0, window_s=2.0)
    for accepted in (True, True, False, False):
        u.outcome(1.0, accepted)
    assert u.probability(1.0) == 0.0


def test_a_local_refusal_counts_as_attempted_and_a_request_let_through_does_not_yet():
    t = AdaptiveThrottle(k=2.0, window_s=2.0)
    t.outcome(0.0, True)
    for _ in range(8):
        t.outcome(0.0, False)
    # 9 requests, 1 accept: p = (9 - 2) / 10 = 0.7
    assert t.refuse(0.0, Draw(0.69)) is True
    assert t.requests == 10  # the refused one counts
    # p = (10 - 2) / 11 = 0.727: a draw above it lets the request through, uncounted until its outcome
    assert t.refuse(0.0, Draw(0.73)) is False
    assert t.requests == 10


def test_the_window_slides_old_counts_out():
    t = AdaptiveThrottle(k=2.0, window_s=2.0, buckets=4)  # buckets of 0.5 s
    for _ in range(8):
        t.outcome(10.0, False)
    assert t.probability(10.0) == pytest.approx(8 / 9)
    t.outcome(11.0, False)
    t.outcome(11.0, True)
    assert (t.requests, t.accepts) == (10, 1)
    # at 12.0 the bucket of [10.0, 10.5) has left the window; that of 11.0 stays
    assert t.probability(12.0) == 0.0  # 2 requests, 1 accept: 2 <= 2 x 1
    assert (t.requests, t.accepts) == (2, 1)
    assert t.probability(100.0) == 0.0  # long after, nothing is left
    assert (t.requests, t.accepts) == (0, 0)


def test_recovery_lowers_the_probability_within_a_window():
    t = AdaptiveThrottle(k=2.0, window_s=1.0, buckets=10)
    now = 0.0
    for _ in range(100):  # the backend refuses everything for a second
        t.outcome(now, False)
        now += 0.01
    assert t.probability(now) > 0.9
    for _ in range(100):  # then accepts everything that reaches it
        t.outcome(now, True)
        now += 0.01
    assert t.probability(now) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"k": 0.5}, "k"), ({"k": float("nan")}, "k"), ({"window_s": 0}, "window_s"), ({"buckets": 0}, "buckets"),
     ({"buckets": True}, "buckets")],
)  # fmt: skip
def test_bad_settings_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        AdaptiveThrottle(**kwargs)


def _throttle(accepted: int, refused: int, now: float = 1.0) -> AdaptiveThrottle:
    t = AdaptiveThrottle(k=2.0, window_s=2.0)
    for ok in [True] * accepted + [False] * refused:
        t.outcome(now, ok)
    return t


def test_misses_of_a_more_urgent_class_raise_the_refusal_of_a_class_the_backend_refuses_anyway():
    critical = _throttle(accepted=1, refused=9)  # misses 0.9
    sheddable = _throttle(accepted=4, refused=6)  # backend misses 0.6 >= 1 - 1/k; own p = (10 - 8) / 11
    assert sheddable.probability(1.0) == pytest.approx(2 / 11)
    assert critical.miss_ratio(1.0) == pytest.approx(0.9)
    assert refusal_probability(sheddable, [critical], 1.0) == pytest.approx(0.9)


def test_a_class_the_backend_accepts_is_not_refused_for_another_class_misses():
    # In a closed loop a refused client comes straight back: refusing a class the backend serves would add
    # load, not remove it (the latch measured with 120 closed-loop HTTP clients).
    critical = _throttle(accepted=0, refused=10)
    standard = _throttle(accepted=6, refused=4)  # backend misses 0.4 < 0.5
    assert refusal_probability(standard, [critical], 1.0) == 0.0


def test_the_class_own_probability_is_a_floor_and_few_urgent_samples_do_not_count():
    critical = _throttle(accepted=0, refused=MIN_REQUESTS - 1)  # too few to count
    standard = _throttle(accepted=1, refused=9)  # own p = (10 - 2) / 11
    assert critical.miss_ratio(1.0) == 0.0
    assert refusal_probability(standard, [critical], 1.0) == pytest.approx(8 / 11)
    assert refusal_probability(standard, [], 1.0) == pytest.approx(8 / 11)


def test_local_refusals_do_not_count_as_backend_misses():
    t = _throttle(accepted=5, refused=0)
    for _ in range(20):
        assert t.refuse(1.0, Draw(0.0), p=1.0)
    assert (t.requests, t.reached, t.accepts) == (25, 5, 5)
    assert t.miss_ratio(1.0) == 0.0  # the backend accepted all it saw


CLASSES = {
    "critical": QosClass("critical", 0, 150.0, Shedding.NEVER),
    "standard": QosClass("standard", 1, 800.0, Shedding.WHEN_OVERLOADED),
    "sheddable": QosClass("sheddable", 2, 5000.0, Shedding.FIRST),
}


def _gates(draw: float = 0.0) -> ClassThrottles:
    gates = ClassThrottles(k=2.0, window_s=2.0)
    gates.rng = Draw(draw)  # type: ignore[assignment]
    return gates


def test_class_throttles_refuse_a_class_the_backend_refuses_and_count_it():
    gates = _gates(draw=0.5)
    for _ in range(9):
        gates.outcome("d", "standard", 1.0, accepted=False)
    gates.outcome("d", "standard", 1.0, accepted=True)
    # 10 requests, 1 accept: p = (10 - 2) / 11 = 0.727 > draw 0.5
    assert gates.admit("d", CLASSES, CLASSES["standard"], 1.0) == pytest.approx(8 / 11)
    assert gates.refused == {("d", "standard"): 1}
    assert gates.stats(1.0)["d"]["standard"] == {
        "requests": 11, "accepts": 1, "probability": round(9 / 12, 4), "refused_total": 1,
    }  # fmt: skip
    assert gates.throttle("d", "standard").requests == 11
    assert gates.admit("other", CLASSES, CLASSES["standard"], 1.0) is None  # per backend
    assert gates.admit("d", CLASSES, CLASSES["sheddable"], 1.0) is None  # per class: sheddable has no counts


def test_class_throttles_never_refuse_a_never_shed_class():
    gates = _gates(draw=0.0)
    for _ in range(20):
        gates.outcome("d", "critical", 1.0, accepted=False)
    assert gates.admit("d", CLASSES, CLASSES["critical"], 1.0) is None
    assert gates.refused == {}


def test_class_throttles_need_min_requests_in_the_window_before_refusing():
    # One refused call of a quiet caller: the book's formula alone would refuse the next one with p = 1/2.
    gates = _gates(draw=0.0)
    for _ in range(MIN_REQUESTS - 1):
        gates.outcome("d", "standard", 1.0, accepted=False)
    assert gates.admit("d", CLASSES, CLASSES["standard"], 1.0) is None
    gates.outcome("d", "standard", 1.0, accepted=False)
    assert gates.admit("d", CLASSES, CLASSES["standard"], 1.0) is not None
    assert gates.admit("d", CLASSES, CLASSES["standard"], 4.0) is None  # the window slid past them


def test_class_throttles_refuse_less_urgent_work_by_a_more_urgent_class_misses():
    gates = _gates(draw=0.85)
    for ok in [True] + [False] * 9:  # critical misses 0.9
        gates.outcome("d", "critical", 1.0, ok)
    for ok in [True] * 4 + [False] * 6:  # sheddable: backend misses 0.6, own p = 2/11 < draw
        gates.outcome("d", "sheddable", 1.0, ok)
    assert gates.admit("d", CLASSES, CLASSES["sheddable"], 1.0) == pytest.approx(0.9)


def test_class_throttles_start_afresh_for_a_new_owner():
    gates = _gates(draw=0.0)
    owner, other = object(), object()
    gates.bind("d", owner)
    for _ in range(10):
        gates.outcome("d", "standard", 1.0, accepted=False)
    gates.bind("d", owner)  # the same owner keeps its counts
    assert gates.admit("d", CLASSES, CLASSES["standard"], 1.0) is not None
    gates.bind("d", other)
    assert gates.throttle("d", "standard").requests == 0
    assert gates.admit("d", CLASSES, CLASSES["standard"], 1.0) is None


def test_class_throttles_refuse_bad_settings_at_construction():
    with pytest.raises(ValueError, match="window_s"):
        ClassThrottles(window_s=0.0)
