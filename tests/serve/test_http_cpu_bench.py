"""``benchmarks/http_cpu.py``: CPU per request and its summary, on cases checked by hand."""

from __future__ import annotations

import math
import os

import pytest

from tests._bench import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("http_cpu")


def test_cpu_per_request_subtracts_the_idle_rate(bench):
    # 2.0 s spent over a 10 s window, idle at 0.05 s a second: (2.0 - 0.5) / 500 requests = 3 ms
    assert bench.per_request_ms(1.0, 3.0, 0.05, 10.0, 500) == pytest.approx(3.0)
    assert bench.per_request_ms(1.0, 1.2, 0.05, 10.0, 500) == 0.0  # less than idle: none, not negative
    assert math.isnan(bench.per_request_ms(1.0, 3.0, 0.05, 10.0, 0))


def test_this_process_cpu_is_read_from_proc(bench):
    before = bench.cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))  # burn some CPU
    assert bench.cpu_s(os.getpid()) > before >= 0.0
    assert math.isnan(bench.cpu_s(2**22 + 12345))  # no such process


def test_summary_is_the_mean_with_a_t_interval_per_arm(bench):
    rows = [{"arm": "handle", "proxy_ms": 0.0, "replicas_ms": r, "caller_ms": 5.0, "server_ms": 5.0 + r}
            for r in (3.0, 4.0, 5.0)]  # fmt: skip
    s = bench.summarize(rows)
    assert list(s) == ["handle"]
    mean, low, high = s["handle"]["replicas_ms"]
    # mean 4, sd 1, n 3: 4 +- 4.303 / sqrt(3) = 4 +- 2.484
    assert mean == 4.0 and low == pytest.approx(1.516, abs=1e-3) and high == pytest.approx(6.484, abs=1e-3)
    # twelve rounds of 0 and 2: mean 1, sd sqrt(12 / 11), t(11 df) 2.201: 1 +- 2.201 x 1.0445 / sqrt(12)
    mean, low, high = bench.t_interval([0.0, 2.0] * 6)
    assert mean == 1.0 and low == pytest.approx(1 - 0.66364, abs=1e-4) and high == pytest.approx(1.66364, abs=1e-4)
    one = bench.summarize(rows[:1])["handle"]["server_ms"]
    assert one[0] == 8.0 and math.isnan(one[1])
