"""``benchmarks/http_front_door.py``: its medians over rounds and its floors, on cases checked by hand."""

from __future__ import annotations

import pytest

from tests._bench import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("http_front_door")


def _row(goodput: float, critical: float, standard: float = 1.0, sheddable: float = 1.0) -> dict:
    return {"goodput_rps": goodput, "critical_attainment": critical, "standard_attainment": standard,
            "sheddable_attainment": sheddable}  # fmt: skip


def test_goodput_at_60_is_judged_against_the_best_level(bench):
    rows = {"10": _row(223.3, 1.0), "60": _row(202.0, 1.0)}  # 202.0 / 223.3 = 0.9046
    f = bench.front_door_floors(rows)
    assert f["best_goodput_rps"] == 223.3 and f["goodput_60_ratio"] == pytest.approx(0.9046, abs=1e-4)
    assert f["goodput_met"]
    rows["60"] = _row(200.0, 1.0)  # 200.0 / 223.3 = 0.8957 < 0.9
    assert not bench.front_door_floors(rows)["goodput_met"]


def test_critical_must_reach_99_and_be_at_or_above_every_other_class(bench):
    assert bench.front_door_floors({"60": _row(200.0, 0.996, 0.99, 0.98)})["critical_met"]
    assert not bench.front_door_floors({"60": _row(200.0, 0.996, 1.0, 1.0)})["critical_met"]  # the published run
    assert not bench.front_door_floors({"60": _row(200.0, 0.985, 0.9, 0.9)})["critical_met"]


def test_summary_takes_the_median_over_rounds(bench):
    def run(goodput: float, critical: float) -> dict:
        return {"goodput_rps": goodput, "throughput_rps": goodput, "reject_p99_ms": float("nan"),
                "classes": {"critical": {"attainment": critical, "p99_ms": 50.0}}}  # fmt: skip

    raw = {"runs": {"agentic": {"60": [run(190.0, 0.99), run(210.0, 1.0), run(200.0, 0.98)]}}}
    row = bench.summarize(raw)["table"]["agentic"]["60"]
    assert row["goodput_rps"] == 200.0 and row["critical_attainment"] == 0.99
    assert row["standard_attainment"] == 0.0  # a class with no answers counts as missed, not as met


def test_the_bad_input_rate_is_half_the_best_goodput_within_bounds(bench):
    assert bench.bad_input_rate([120.0, 126.0, 99.0]) == 63.0
    assert bench.bad_input_rate([275.2, 266.4]) == bench.BAD_GOOD_RPS == 100.0  # a fast host: as before
    assert bench.bad_input_rate([10.0]) == 20.0 and bench.bad_input_rate([]) == 20.0


def _rec(sent_s: float, latency_ms: float, qos: str = "standard", status: int = 200) -> dict:
    return {"sent_s": sent_s, "latency_ms": latency_ms, "qos": qos, "status": status}


def test_window_pairs_pair_each_clean_window_with_the_dirty_one_after_it(bench):
    records = [_rec(0.5, 99.0), _rec(1.5, 99.0),  # pair 0: within the warm-up (2 s), left out
               _rec(2.2, 10.0), _rec(2.9, 12.0), _rec(3.1, 20.0), _rec(3.4, 30.0, "bad", 400),
               _rec(3.5, 40.0, status=429),  # a refusal: not a good answer
               _rec(4.5, 11.0)]  # pair 2 has no dirty answer: left out  # fmt: skip
    assert bench.window_pairs(records, 1.0, warmup_s=2.0) == [([10.0, 12.0], [20.0])]
    assert bench.window_pairs(records, 1.0) == [([99.0], [99.0]), ([10.0, 12.0], [20.0])]


def test_the_windowed_ratio_pools_pairs_and_bootstraps_whole_pairs(bench):
    same = [([10.0, 10.0], [10.2])] * 5  # every resample gives 10.2 / 10 = 1.02
    v = bench.windowed_ratio(same)
    assert v["ratio"] == v["ci95"][0] == v["ci95"][1] == 1.02 and v["verdict"] == "met" and v["pairs"] == 5
    assert bench.windowed_ratio([([10.0], [11.0])] * 5)["verdict"] == "exceeded"  # 1.10, all resamples
    # A: 10 / 10, B: 10 / 12. Pooled, the p99 of two answers is the larger: 12 / 10 = 1.2. Resamples AA
    # (a quarter of them) give 1.0, the rest 1.2: the interval [1.0, 1.2] holds the floor, unresolved.
    v = bench.windowed_ratio([([10.0], [10.0]), ([10.0], [12.0])])
    assert v["ratio"] == 1.2 and v["ci95"] == [1.0, 1.2] and v["verdict"] == "unresolved"
    assert bench.windowed_ratio([])["verdict"] == "unresolved"


def test_the_bad_input_floor_needs_the_interval_below_1_05_4xx_and_no_restart(bench):
    rounds = [{"window_pairs": [[[10.0], [10.2]]] * 3, "window_bad_statuses": {"400": 30},
               "bad_statuses": {"400": 60}, "replicas_restarted": 0},
              {"window_pairs": [[[10.0], [10.4]]] * 3, "window_bad_statuses": {"400": 29},
               "bad_statuses": {"400": 58}, "replicas_restarted": 0}]  # fmt: skip
    f = bench.bad_input_floor(rounds)
    # Pooled, the p99 is the largest dirty answer: 1.04 unless a resample holds round 0's pairs only (1.02,
    # 1 in 2^6 = 1.6 % of resamples: under the 2.5th percentile), so the interval is [1.04, 1.04].
    assert f["pairs"] == 6 and f["ratio"] == 1.04 and f["ci95"] == [1.04, 1.04] and f["met"]
    rounds[1]["window_pairs"] = [[[10.0], [10.6]]] * 3  # 1.06 likewise: its lower end is above the floor
    assert bench.bad_input_floor(rounds)["verdict"] == "exceeded" and not bench.bad_input_floor(rounds)["met"]
    rounds[1]["window_pairs"] = [[[10.0], [10.4]]] * 3
    rounds[0]["replicas_restarted"] = 1
    assert not bench.bad_input_floor(rounds)["met"]
    rounds[0]["replicas_restarted"] = 0
    rounds[0]["window_bad_statuses"] = {"400": 29, "500": 1}
    assert not bench.bad_input_floor(rounds)["met"]  # a malformed request must get a 4xx
