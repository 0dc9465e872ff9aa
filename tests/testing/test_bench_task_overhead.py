"""``benchmarks/task_overhead.py``'s published figures (nearest-rank p99, median ratios, floors), pinned on
cases checked by hand."""

from __future__ import annotations

import pytest

from tests._bench import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("task_overhead")


def test_summary_is_median_and_nearest_rank_p99_in_ms(bench):
    values = [i / 1000.0 for i in range(1, 101)]  # 1..100 ms
    s = bench.summary(values)
    assert s["n"] == 100 and s["median"] == pytest.approx(50.5) and s["p99"] == pytest.approx(99.0)
    assert s["mean"] == pytest.approx(50.5)
    assert bench.pct([3.0, 1.0, 2.0], 0.5) == 2.0 and bench.pct([5.0], 0.99) == 5.0


def _variant(median: float, p99: float) -> dict:
    return {"median": median, "p99": p99}


def test_ratios_divide_agentic_by_its_plain_counterpart_and_floors_read_them(bench):
    seq = {"plain": _variant(1.0, 2.0), "agentic": _variant(1.2, 3.0), "agentic_no_placed": _variant(1.1, 0),
           "plain_with_context": _variant(1.05, 0), "plain_1arg": _variant(2.0, 0),
           "agentic_1arg": _variant(2.5, 0)}  # fmt: skip
    pipe = {"plain": _variant(10.0, 20.0), "agentic": _variant(11.0, 30.0), "agentic_no_placed": _variant(10.5, 0),
            "plain_with_context": _variant(10.0, 0), "plain_1arg": _variant(20.0, 0),
            "agentic_1arg": _variant(22.0, 0)}  # fmt: skip
    r = bench.ratios(seq, pipe)
    assert r["ratios"] == pytest.approx(
        {"sequential_median": 1.2, "sequential_p99": 1.5, "pipelined_median": 1.1, "pipelined_p99": 1.5}
    )
    assert r["ratios_without_placement_accounting"] == pytest.approx(
        {"sequential_median": 1.1, "pipelined_median": 1.05}
    )
    assert r["ratios_plain_with_context"] == pytest.approx({"sequential_median": 1.05, "pipelined_median": 1.0})
    assert r["ratios_one_argument"] == pytest.approx({"sequential_median": 1.25, "pipelined_median": 1.1})
    f = bench.floors({**r, "decision_us": {"p99": 100.0}})
    # 1.2 and 1.1 meet "<= 1.2" (the boundary is in); one argument 1.25 misses; 100 us meets "<= 100"
    assert f == {"median_ratio_le_1.2": True, "decision_p99_le_100us": True, "one_argument_median_ratio_le_1.2": False}
    pipe["agentic"] = _variant(12.1, 30.0)  # pipelined 1.21: the no-op floor misses on either mode
    f = bench.floors({**bench.ratios(seq, pipe), "decision_us": {"p99": 100.1}})
    assert f["median_ratio_le_1.2"] is False and f["decision_p99_le_100us"] is False
