"""``benchmarks/telemetry_overhead.py``: the floor is met only when the bootstrap CI's upper end is."""

from __future__ import annotations

import random

import pytest

from tests._bench import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("telemetry_overhead")


def test_a_median_under_the_floor_with_a_wide_interval_is_not_a_pass(bench):
    rng = random.Random(3)
    wide = [rng.uniform(0.46, 6.32) if i % 3 == 0 else rng.uniform(0.9, 1.1) for i in range(21)]
    v = bench.ratio_verdict(wide)
    lo, hi = v["ci95"]
    assert lo <= v["median"] <= hi
    assert hi > 1.05 and not v["met"]


def test_a_tight_interval_under_the_floor_passes_and_one_over_it_fails(bench):
    rng = random.Random(4)
    v = bench.ratio_verdict([rng.gauss(0.99, 0.01) for _ in range(101)])
    assert v["met"] and v["narrow"] and v["ci95"][1] <= 1.05
    v = bench.ratio_verdict([rng.gauss(1.10, 0.01) for _ in range(101)])
    assert not v["met"] and v["narrow"]


def test_median_ci_is_seeded_and_brackets_the_median(bench):
    xs = [1.0, 1.02, 0.98, 1.5, 0.7, 1.01, 0.99]
    assert bench.median_ci(xs) == bench.median_ci(xs)
    med, lo, hi = bench.median_ci(xs)
    assert med == 1.0 and lo <= med <= hi
    with pytest.raises(ValueError):
        bench.median_ci([])
