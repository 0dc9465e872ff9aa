"""``sim.metrics.bootstrap_ci``, the interval every benchmark verdict here reports (telemetry overhead,
the front door's bad-input ratio), on cases checked by hand."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from agentic_ray.sim.metrics import bootstrap_ci


def test_identical_samples_give_a_point_interval():
    assert bootstrap_ci([1.25] * 7, statistics.median, random.Random(0)) == (1.25, 1.25)


def test_two_samples_span_both_ends():
    """Resampled means of [0, 1] are 0, 0.5 or 1 with chances 1/4, 1/2, 1/4: far more than 2.5 % of 2,000
    resamples are all zeros and all ones, so the interval is the whole range."""
    assert bootstrap_ci([0.0, 1.0], statistics.mean, random.Random(3)) == (0.0, 1.0)


def test_a_block_is_resampled_whole_and_a_seed_repeats_the_interval():
    blocks = [([10.0], [10.0]), ([10.0], [12.0])]

    def ratio(chosen: list) -> float:
        return sum(d[0] for _, d in chosen) / sum(c[0] for c, _ in chosen)

    lo, hi = bootstrap_ci(blocks, ratio, random.Random(0))
    assert (lo, hi) == (1.0, 1.2)  # both blocks of one kind: 10/10 and 12/10
    assert bootstrap_ci(blocks, ratio, random.Random(0)) == (lo, hi)


def test_the_ends_are_the_nth_values_of_the_sorted_statistics():
    """A statistic that counts its calls makes the sorted values 0..199: the lower end is the
    int(0.025 * 200) = 5th smallest (4), the upper the int(0.975 * 200) + 1 = 196th (195)."""
    calls = itertools.count()
    assert bootstrap_ci([0.0], lambda _: float(next(calls)), random.Random(0), resamples=200) == (4.0, 195.0)
    # With ten resamples the lower end is clamped to the smallest, the upper is the tenth.
    calls = itertools.count()
    assert bootstrap_ci([0.0], lambda _: float(next(calls)), random.Random(0), resamples=10) == (0.0, 9.0)


def test_no_samples_or_no_resamples_is_an_error():
    with pytest.raises(ValueError, match="samples"):
        bootstrap_ci([], statistics.mean, random.Random(0))
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0], statistics.mean, random.Random(0), resamples=0)
