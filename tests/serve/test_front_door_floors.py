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


def test_bad_input_is_judged_on_the_median_of_the_open_loop_pairs(bench):
    pairs = [(100.0, 104.0, {"400": 30}), (100.0, 120.0, {"400": 31})]  # ratios 1.04, 1.20
    more = [(50.0, 51.0, {"400": 29}), (80.0, 76.0, {"400": 30})]  # 1.02, 0.95
    rounds = [{"open_loop_pairs": pairs, "bad_statuses": {"400": 60}, "replicas_restarted": 0},
              {"open_loop_pairs": more, "bad_statuses": {"400": 58}, "replicas_restarted": 0}]  # fmt: skip
    f = bench.bad_input_floor(rounds)
    assert f["p99_ratios"] == [0.95, 1.02, 1.04, 1.2] and f["median_ratio"] == pytest.approx(1.03)
    assert f["met"]
    rounds[1]["open_loop_pairs"] = [(50.0, 53.0, {"400": 29}), (80.0, 85.0, {"400": 30})]  # 1.06, 1.0625
    assert not bench.bad_input_floor(rounds)["met"]  # median (1.06 + 1.0625) / 2 > 1.05
    rounds[1]["open_loop_pairs"] = more
    rounds[0]["replicas_restarted"] = 1
    assert not bench.bad_input_floor(rounds)["met"]
    rounds[0]["replicas_restarted"] = 0
    rounds[0]["bad_statuses"] = {"400": 59, "500": 1}
    assert not bench.bad_input_floor(rounds)["met"]  # a malformed request must get a 4xx
