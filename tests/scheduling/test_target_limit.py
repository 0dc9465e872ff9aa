"""``TargetLimit``: additive increase while the path's median is under target, proportional decrease over it."""

from __future__ import annotations

import pytest

from agentic_ray.scheduling.target_limit import TargetLimit


def _interval(limit: TargetLimit, path_s: float, inflight: int, now: float, n: int = 5) -> int:
    """``n`` answers of ``path_s`` at ``now`` (the last one ends the interval when it is long enough)."""
    for _ in range(n):
        out = limit.observe(path_s, inflight, now)
    return out


def test_it_starts_at_the_floor_and_grows_by_one_per_interval_while_busy_and_fast():
    lim = TargetLimit(0.05, 2, 6, interval_s=0.1)
    assert lim.limit == 2
    now = 0.0
    seen = []
    for _ in range(6):
        _interval(lim, 0.02, inflight=lim.limit, now=now)  # opens an interval
        seen.append(_interval(lim, 0.02, inflight=lim.limit, now=now + 0.5, n=1))  # ends it
        now += 1.0
    assert seen == [3, 4, 5, 6, 6, 6]  # one step per interval, never past the ceiling


def test_an_unused_limit_does_not_grow():
    lim = TargetLimit(0.05, 4, 10)
    for k in range(5):
        _interval(lim, 0.01, inflight=1, now=float(k))
        _interval(lim, 0.01, inflight=1, now=k + 0.5, n=1)
    assert lim.limit == 4  # one in flight of four: the limit is not what holds anything back


def test_a_slow_median_shrinks_it_in_proportion_by_at_most_half_and_never_under_the_floor():
    lim = TargetLimit(0.05, 20, 40)
    assert lim.set_bounds(2, 40) == 20  # as if grown there from a floor of 2
    _interval(lim, 0.0625, inflight=20, now=0.0)
    assert _interval(lim, 0.0625, inflight=20, now=0.5, n=1) == 16  # 20 x 0.05 / 0.0625
    _interval(lim, 1.0, inflight=16, now=1.0)
    assert _interval(lim, 1.0, inflight=16, now=1.5, n=1) == 8  # x 0.05 would be 0.8: at most half
    for k in range(2, 6):
        _interval(lim, 1.0, inflight=8, now=float(k))
        _interval(lim, 1.0, inflight=8, now=k + 0.5, n=1)
    assert lim.limit == 2


def test_the_median_decides_not_one_outlier():
    lim = TargetLimit(0.05, 6, 10)
    for path_s in (0.01, 0.01, 0.01, 2.0, 2.0):  # two slow of five
        lim.observe(path_s, 6, 0.0)
    assert lim.observe(0.01, 6, 0.5) == 7 and lim.last_median_s == pytest.approx(0.01)


def test_an_interval_needs_its_time_and_its_samples():
    lim = TargetLimit(0.05, 2, 10, interval_s=0.1, min_samples=5)
    for k in range(20):  # many fast answers, all within one interval's time
        lim.observe(0.01, 2, 0.05 * k / 20)
    assert lim.limit == 2
    lim = TargetLimit(0.05, 2, 10, interval_s=0.1, min_samples=5)
    lim.observe(0.01, 2, 0.0)
    assert lim.observe(0.01, 2, 5.0) == 2  # long enough, too few answers


def test_set_bounds_clamps_and_bad_arguments_are_refused():
    lim = TargetLimit(0.05, 9, 10)
    assert lim.set_bounds(2, 5) == 5
    assert lim.set_bounds(6, 3) == 6 and lim.max_limit == 6  # a ceiling under the floor is raised to it
    with pytest.raises(ValueError, match="min_limit"):
        lim.set_bounds(0, 4)
    assert (lim.min_limit, lim.max_limit) == (6, 6)  # unchanged
    for bad in ({"target_s": 0.0}, {"target_s": float("inf")}, {"interval_s": -1.0}, {"min_samples": 0},
                {"min_limit": 0}):  # fmt: skip
        kwargs = {"target_s": 0.05, "min_limit": 2, "max_limit": 4, **bad}
        with pytest.raises(ValueError):
            TargetLimit(kwargs.pop("target_s"), kwargs.pop("min_limit"), kwargs.pop("max_limit"), **kwargs)
