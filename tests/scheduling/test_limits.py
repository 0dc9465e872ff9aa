"""DelayLimit: windowed AIMD on a delay signal, on a manual clock (no sleeps)."""

from __future__ import annotations

import pytest

from agentic_ray.scheduling.limits import DelayLimit, DelayLimitConfig

CFG = DelayLimitConfig(target_ms=10.0, increase_below=0.5, backoff=0.75, interval_s=0.2, min_samples=3)


def feed(limit: DelayLimit, delay_ms: float, start: float, n: int = 4, step: float = 0.07) -> float:
    """``n`` upstream samples of ``delay_ms``, ``step`` s apart from ``start``; returns the last time."""
    t = start
    for _ in range(n):
        limit.upstream(delay_ms, t)
        t += step
    return t - step


def test_starts_at_max_and_holds_without_a_full_window():
    limit = DelayLimit(8, CFG)
    assert limit.limit == 8
    assert limit.upstream(500.0, 0.0) == 8  # one sample: no decision yet
    assert limit.upstream(500.0, 0.1) == 8  # window not over


def test_high_delay_shrinks_by_backoff_once_per_window():
    limit = DelayLimit(8, CFG)
    feed(limit, 30.0, 0.0)  # samples at 0, .07, .14, .21: the window closes at .21
    assert limit.limit == 6  # floor(8 * 0.75)
    assert (limit.decreases, limit.delay_ms) == (1, 30.0)
    # The next window starts empty: the same congestion must be seen again before another cut.
    assert limit.upstream(30.0, 0.25) == 6


def test_cut_is_at_least_one_and_stops_at_the_floor():
    limit = DelayLimit(2, CFG)
    t = feed(limit, 50.0, 0.0)
    assert limit.limit == 1  # min(2 - 1, floor(1.5))
    feed(limit, 50.0, t + 0.01)
    assert limit.limit == 1  # min_limit


def test_low_delay_grows_by_one_per_window_up_to_max():
    limit = DelayLimit(4, CFG)
    t = feed(limit, 40.0, 0.0)
    assert limit.limit == 3
    t = feed(limit, 2.0, t + 0.01)
    assert limit.limit == 4
    feed(limit, 2.0, t + 0.01)
    assert limit.limit == 4  # max_limit


def test_delay_between_the_thresholds_holds():
    limit = DelayLimit(4, CFG)
    t = feed(limit, 40.0, 0.0)
    assert limit.limit == 3
    feed(limit, 7.0, t + 0.01)  # 5 <= 7 <= 10: hysteresis
    assert limit.limit == 3


def test_window_decides_on_the_larger_mean_of_lag_and_upstream():
    limit = DelayLimit(4, CFG)
    limit.lag(1.0, 0.0)
    limit.lag(1.0, 0.1)
    limit.upstream(25.0, 0.15)
    limit.upstream(25.0, 0.21)  # window closes: lag mean 1, upstream mean 25 -> cut
    assert limit.limit == 3 and limit.delay_ms == 25.0


def test_window_needs_min_samples():
    limit = DelayLimit(4, DelayLimitConfig(target_ms=10.0, interval_s=0.2, min_samples=5))
    feed(limit, 50.0, 0.0, n=4)
    assert limit.limit == 4
    limit.upstream(50.0, 0.3)
    assert limit.limit == 3


def test_non_finite_sample_counts_as_congestion():
    limit = DelayLimit(4, CFG)
    for t in (0.0, 0.1, 0.21):
        limit.upstream(float("nan"), t)
    assert limit.limit == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_ms": 0}, "target_ms"),
        ({"target_ms": float("inf")}, "target_ms"),
        ({"increase_below": 1.0}, "increase_below"),
        ({"backoff": 1.0}, "backoff"),
        ({"interval_s": 0}, "interval_s"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_limit": True}, "min_limit"),
        ({"max_pace_ms": -1.0}, "max_pace_ms"),
        ({"pace_start_ms": 0.0}, "pace_start_ms"),
        ({"pace_relax": 1.0}, "pace_relax"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DelayLimitConfig(**kwargs)


def test_bad_max_limit():
    with pytest.raises(ValueError, match="max_limit"):
        DelayLimit(0)


def test_at_the_floor_and_still_congested_the_limit_paces_when_asked():
    """Chaos noisy neighbour over HTTP: limit 1 everywhere and proxy delays of 100-490 ms; one slot still
    starts a call per service time. Pacing below the floor doubles the time between starts of work that
    may be shed, up to ``max_pace_ms``, and relaxes before the limit grows again."""
    plain = DelayLimit(2, CFG)
    t = feed(plain, 50.0, 0.0)
    feed(plain, 50.0, t + 0.01)
    assert (plain.limit, plain.pace_ms) == (1, 0.0)  # off by default
    cfg = DelayLimitConfig(target_ms=10.0, increase_below=0.5, interval_s=0.2, min_samples=3, pace_start_ms=5.0,
                           max_pace_ms=30.0, pace_relax=0.5)  # fmt: skip
    limit = DelayLimit(2, cfg)
    t = feed(limit, 50.0, 0.0)
    assert (limit.limit, limit.pace_ms) == (1, 0.0)  # the limit falls first
    paces = []
    for _ in range(4):
        t = feed(limit, 50.0, t + 0.01)
        paces.append(limit.pace_ms)
    assert paces == [5.0, 10.0, 20.0, 30.0]  # doubles from the start, capped
    relaxed = []
    for _ in range(4):
        t = feed(limit, 1.0, t + 0.01)
        relaxed.append((limit.pace_ms, limit.limit))
    assert relaxed == [(15.0, 1), (7.5, 1), (0.0, 1), (0.0, 2)]  # pace first (0 under the start), then limit
