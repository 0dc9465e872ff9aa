"""``benchmarks/closed_loop.py``'s published summary, pinned on a case checked by hand."""

from __future__ import annotations

import math

import pytest

from tests._bench import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("closed_loop")


def _run(loop: str, attainment: float, first: float | None = 1.0) -> dict:
    return {"loop": loop, "critical_attainment": attainment,
            "recovery_after_alert": {"first_s": first, "stays_s": 20.0}}  # fmt: skip


def test_mean_and_t_interval_per_loop_setting(bench):
    runs = [_run("off", 0.90, None), _run("on", 0.97), _run("on", 0.99), _run("off", 1.00)]
    s = bench.summary(runs)
    # off: mean 0.95, stdev 0.0707107, n = 2, t(0.975, 1) = 12.71: 12.71 * 0.0707107 / sqrt(2) = 0.6355
    assert s["off"]["runs"] == 2 and s["off"]["critical_attainment_mean"] == pytest.approx(0.95)
    assert s["off"]["ci95_half_width"] == pytest.approx(0.6355, abs=1e-4)
    # on: mean 0.98, stdev 0.0141421: 12.71 * 0.0141421 / sqrt(2) = 0.1271
    assert s["on"]["critical_attainment_mean"] == pytest.approx(0.98)
    assert s["on"]["ci95_half_width"] == pytest.approx(0.1271, abs=1e-4)
    assert s["off"]["first_99_after_alert_s"] == [None, 1.0]


def test_one_run_has_no_interval(bench):
    s = bench.summary([_run("off", 0.9), _run("on", 0.95)])
    assert s["on"]["ci95_half_width"] is None and not math.isnan(s["on"]["critical_attainment_mean"])
