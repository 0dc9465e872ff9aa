"""The chaos benchmark's verdicts on hand-checkable figures (no Ray: pure functions of its module)."""

from __future__ import annotations

import pytest

from tests._bench import load_benchmark

bench = load_benchmark("chaos")


def _samples(**series: list[float]) -> list[dict[str, float]]:
    n = len(next(iter(series.values())))
    return [{"t": 60.0 + 10.0 * i, **{k: v[i] for k, v in series.items()}} for i in range(n)]


def test_slope_is_the_least_squares_trend_per_second():
    assert bench._slope(_samples(x=[0.0, 10.0, 20.0, 30.0]), "x") == pytest.approx(1.0)
    assert bench._slope(_samples(x=[1.0, 6.0, 1.0, 1.0, 6.0, 1.0]), "x") == pytest.approx(0.0, abs=0.03)


def _soak(table: list[float], rss: list[float]) -> dict:
    return {"growth": {"driver_rss_mb": (max(rss[1:]) - rss[0]) / rss[0], "router_calls": 5.0},
            "table_entries_per_1k_requests": {"router_calls": bench._slope(_samples(x=table), "x") / 40.0 * 1000},
            "rotated": True, "lost": 0, "hung": 0}  # fmt: skip


def test_soak_floors_judge_resources_by_growth_and_tables_by_trend():
    """The soak published 'growth 5.0' (500 %) for a table holding work in flight (1 -> 6 entries) and
    failed; a table is now judged by entries added per 1,000 requests: a leak of one per request at
    40 requests/s adds 1,000; in-flight work that comes and goes adds none."""
    in_flight = [1.0, 6.0, 0.0, 2.0, 6.0, 1.0]
    leak = [400.0 * i for i in range(6)]  # one entry per request at 40 requests/s, sampled every 10 s
    flat_rss = [100.0, 101.0, 102.0, 103.0, 104.0, 104.0]  # 4 %
    f = bench.floors({"faults": {}, "ladder": [], "soak": _soak(in_flight, flat_rss)})
    assert f == {"soak_flat": True, "soak_tables_flat": True, "soak_logs_rotate": True, "soak_nothing_lost": True}
    assert not bench.floors({"faults": {}, "ladder": [], "soak": _soak(leak, flat_rss)})["soak_tables_flat"]
    grown = [100.0, 102.0, 104.0, 106.0, 108.0, 110.0]  # 10 %
    assert not bench.floors({"faults": {}, "ladder": [], "soak": _soak(in_flight, grown)})["soak_flat"]


def test_a_series_starting_at_zero_has_no_relative_growth_and_a_resource_so_is_not_flat():
    """The soak printed ``inf`` for the router's sent table (0 at warm-up, a few later): not JSON."""
    g = bench._growth(_samples(router_sent=[0.0, 2.0, 0.0], store=[0.0, 0.0, 0.0], rss=[100.0, 103.0, 102.0]))
    assert g == {"router_sent": None, "store": 0.0, "rss": 0.03}
    soak = {"growth": {"object_store_used_mb": None}, "table_entries_per_1k_requests": {"x": 0.0}, "rotated": True}
    assert not bench.floors({"faults": {}, "ladder": [], "soak": soak})["soak_flat"]


def _step(load: float, offered: float, goodput: float) -> dict:
    return {"path": "handle", "load": load, "offered_rps": offered, "goodput_rps": goodput, "reject_p99_ms": 1.0,
            "retry_ratio": 0.0}  # fmt: skip


def test_ladder_goodput_is_judged_against_the_peak_or_what_a_step_offered():
    """The published full run: 31.2 at 0.5x (31.6 offered) is all a half-capacity step can carry; 53.4 at
    10x is 0.908 of the 58.8 peak. The 0.5x step read as a miss against the peak before."""
    rows = [_step(0.5, 31.6, 31.2), _step(1, 60.4, 56.4), _step(2, 125.9, 58.8), _step(4, 239.4, 57.7),
            _step(10, 602.1, 53.4)]  # fmt: skip
    assert bench.floors({"faults": {}, "ladder": rows})["ladder_handle_goodput"]
    rows[-1] = _step(10, 602.1, 52.8)  # 0.898 of the peak
    assert not bench.floors({"faults": {}, "ladder": rows})["ladder_handle_goodput"]
    rows[-1] = _step(10, 602.1, 53.4)
    rows[0] = _step(0.5, 31.6, 28.0)  # a collapse below capacity still counts: 0.886 of its offer
    assert not bench.floors({"faults": {}, "ladder": rows})["ladder_handle_goodput"]


def test_the_soak_loses_nothing_over_handles_or_http():
    soak = _soak([1.0, 2.0, 1.0, 2.0], [100.0, 100.0, 100.0, 100.0])
    soak["http"] = {"lost": 0, "hung": 0}
    assert bench.floors({"faults": {}, "ladder": [], "soak": soak})["soak_nothing_lost"]
    soak["http"]["hung"] = 1
    assert not bench.floors({"faults": {}, "ladder": [], "soak": soak})["soak_nothing_lost"]
    soak["http"]["hung"], soak["lost"] = 0, 2
    assert not bench.floors({"faults": {}, "ladder": [], "soak": soak})["soak_nothing_lost"]


def test_refusal_p99_counts_refusals_only_and_can_leave_the_callers_own_out():
    from agentic_ray.testing.ledger import Ledger

    ledger = Ledger(1.0)
    answers = [("Overloaded:throttled", 0.0001)] * 90 + [("Overloaded:queue_full", 0.004)] * 9
    answers += [("Overloaded:class_cap", 0.020), ("BudgetExhausted:deadline_passed_in_queue", 0.5)]
    for i, (detail, took) in enumerate(answers):
        ledger.sent(i, "standard", 100.0, 101.0)
        ledger.answered(i, 100.0 + took, "typed", detail)
    # 100 refusals (the expired one is not a refusal): the 99th slowest is a 4 ms queue_full
    assert bench.refusal_p99_ms(ledger) == pytest.approx(4.0)
    # past the caller: 10 refusals, the p99 is the slowest, the 20 ms class_cap
    assert bench.refusal_p99_ms(ledger, skip=bench.CALLER_REFUSALS) == pytest.approx(20.0)
    # per reason (the expired request is no refusal): each its own nearest-rank p99
    assert bench.refusal_p99_by_reason(ledger) == {
        "Overloaded:class_cap": pytest.approx(20.0),
        "Overloaded:queue_full": pytest.approx(4.0),
        "Overloaded:throttled": pytest.approx(0.1),
    }


def test_quantile_is_the_nearest_rank():
    from agentic_ray.testing.chaos import quantile_ms

    values = [float(v) for v in range(100, 0, -1)]  # 1..100 in reverse: sorted first
    assert quantile_ms(values, 0.99) == 99.0 and quantile_ms(values, 0.5) == 50.0
    assert quantile_ms([7.0], 0.99) == 7.0 and quantile_ms([3.0, 1.0], 1.0) == 3.0
    assert quantile_ms([], 0.99) != quantile_ms([], 0.99)  # NaN


def test_host_loop_is_the_time_the_loop_took_and_the_table_names_it():
    """Each result records how fast the host ran Python before the run (a 10M-iteration loop), so figures
    from a slow host are not read against a fast one's."""
    from agentic_ray.testing.chaos import host_loop_s

    ticks = iter([10.0, 10.45])
    assert host_loop_s(1000, timer=lambda: next(ticks)) == pytest.approx(0.45)
    assert host_loop_s(1000) > 0.0
    with pytest.raises(ValueError, match="iterations"):
        host_loop_s(0)
    meta = {"cpus": 2, "platform": "p", "loadavg": [0.1], "quick": True, "wall_s": 1.0, "host_loop_s": 0.56}
    table = bench.markdown({"faults": {}, "ladder": [], "soak": None, "floors": {}}, meta)
    assert "loop took 0.56 s before the run" in table


def test_wakeup_lag_measures_how_late_a_thread_of_this_process_runs():
    """A thread of this process holding the GIL delays the probe's wake-ups: the lag reads it (Python's
    switch interval, 5 ms by default, at least), where an idle process reads little."""
    import sys
    import time

    from agentic_ray.testing.chaos import quantile_ms, wakeup_lag

    with wakeup_lag() as idle:
        time.sleep(0.3)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.02)  # 20 ms: a pure-Python busy loop keeps the GIL that long at a time
    try:
        with wakeup_lag() as busy:
            end = time.perf_counter() + 0.5
            while time.perf_counter() < end:
                pass
    finally:
        sys.setswitchinterval(previous)
    assert len(idle) > 10 and busy
    assert max(busy) >= 10.0  # a wake-up waited for the GIL at least half the switch interval
    assert quantile_ms(busy, 0.5) > quantile_ms(idle, 0.5)


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--only", "kill_everything"], "--only"),
        (["--levels", "1,two"], "--levels"),
        (["--paths", "grpc"], "--paths"),
        (["--switch-interval-ms", "0"], "--switch-interval-ms"),
        (["--switch-interval-ms", "500"], "--switch-interval-ms"),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag_before_any_work(argv, field, capsys):
    """A usage error is refused before the benchmark starts Ray (exit 2, the flag named, no traceback),
    and a refused switch interval leaves the interpreter's as it was."""
    import sys

    before = sys.getswitchinterval()
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2
    assert field in capsys.readouterr().err
    assert sys.getswitchinterval() == before
