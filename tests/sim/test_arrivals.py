"""Each arrival process produces its configured rate."""

from __future__ import annotations

import itertools
import random

import pytest

from agentic_ray.sim.arrivals import mmpp_arrivals, poisson_arrivals, ramp_arrivals, read_trace


def test_poisson_rate_and_exponential_gaps():
    t = poisson_arrivals(200.0, 500.0, random.Random(1))
    assert abs(len(t) / 500.0 - 200.0) / 200.0 < 0.01
    gaps = [b - a for a, b in itertools.pairwise(t)]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    assert abs(var**0.5 / mean - 1.0) < 0.02  # exponential: cv = 1
    assert all(0 <= x < 500.0 for x in t) and t == sorted(t)


@pytest.mark.parametrize("switching", ["exponential", "periodic"])
def test_mmpp_long_run_rate(switching):
    # 4000 short cycles, so the time spent bursting is close to its mean fraction
    base, burst, every, length = 20.0, 200.0, 1.0, 0.2
    t = mmpp_arrivals(base, burst, every, length, 4000.0, random.Random(2), switching)
    expected = (base * (every - length) + burst * length) / every
    assert abs(len(t) / 4000.0 - expected) / expected < 0.04
    assert t == sorted(t)


def test_mmpp_periodic_bursts_land_in_their_windows():
    t = mmpp_arrivals(50.0, 2000.0, 10.0, 2.0, 30.0, random.Random(3), "periodic")
    in_burst = sum(1 for x in t if x % 10.0 >= 8.0)
    assert abs(in_burst / 6.0 - 2000.0) / 2000.0 < 0.05  # three 2 s bursts
    assert abs((len(t) - in_burst) / 24.0 - 50.0) / 50.0 < 0.15


def test_ramp_rate_rises_linearly():
    t = ramp_arrivals(100.0, 900.0, 100.0, random.Random(4))
    assert abs(len(t) - 50_000) / 50_000 < 0.02  # mean rate 500
    first = sum(1 for x in t if x < 10.0) / 10.0  # rate ~ 140 on [0, 10)
    last = sum(1 for x in t if x >= 90.0) / 10.0  # rate ~ 860 on [90, 100)
    assert abs(first - 140) / 140 < 0.1 and abs(last - 860) / 860 < 0.05


def test_rates_and_durations_must_be_positive():
    with pytest.raises(ValueError):
        poisson_arrivals(0, 10, random.Random(0))
    with pytest.raises(ValueError):
        ramp_arrivals(10, 10, -1, random.Random(0))
    with pytest.raises(ValueError):
        mmpp_arrivals(1, 2, 5, 5, 10, random.Random(0))


def test_trace_reads_columns_and_ignores_extras(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("at_s,class,model,tenant,extra\n0.5,critical,m1,acme,x\n0.1,,,,y\n")
    recs = read_trace(f)
    assert [r.at_s for r in recs] == [0.1, 0.5]
    assert (recs[1].qos, recs[1].model, recs[1].tenant) == ("critical", "m1", "acme")
    assert recs[0].qos is None


def test_trace_bad_time_names_the_row(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("at_s\n1\nsoon\n")
    with pytest.raises(ValueError, match=":3: at_s"):
        read_trace(f)
