"""``agentic-ray sim``: table, JSON report, exit codes."""

from __future__ import annotations

import json

from agentic_ray.cli import main

SCENARIO = """\
name: cli
seed: 4
duration_s: 5
warmup_s: 1
classes: {critical: {budget_ms: 80, priority: 0}, batch: {budget_ms: 1000, priority: 2, shedding: first}}
replicas:
  - {name: gpu, count: 2, slots: 2, max_ongoing: 4, service: {default: {dist: exponential, mean_ms: 10}}}
workload:
  arrivals: {process: poisson, rate_rps: 150}
  mix: {critical: 0.3, batch: 0.7}
"""


def test_sim_writes_json_of_the_documented_shape(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(SCENARIO)
    out = tmp_path / "out.json"
    assert main(["sim", str(f), "--router", "agentic,pow2", "--seed", "9", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["scenario"] == "cli" and report["seed"] == 9
    assert set(report["results"]) == {"agentic", "pow2"}
    for res in report["results"].values():
        assert set(res["classes"]) == {"critical", "batch"}
        assert {"overall", "classes", "goodput_rps", "decision_us_p50", "decision_us_p99", "violations"} <= set(res)
        assert res["decision_us_p50"] > 0 and res["sim_requests_per_cpu_s"] > 0  # the CLI measures
    table = capsys.readouterr().out
    assert "agentic" in table and "pow2" in table and "SLO %" in table


def test_unknown_router_lists_registered_ones(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(SCENARIO)
    assert main(["sim", str(f), "--router", "agentic,nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "pow2" in err and "agentic" in err


def test_invalid_scenario_prints_each_problem_and_exits_2(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(SCENARIO.replace("duration_s: 5", "duration_s: -5").replace("rate_rps: 150", "rate_rps: 0"))
    assert main(["sim", str(f), "--router", "pow2"]) == 2
    err = capsys.readouterr().err
    assert f"{f}:3: duration_s:" in err
    assert "workload.arrivals.rate_rps" in err
    assert "Traceback" not in err


def test_missing_file_and_missing_router_flag_exit_2(tmp_path, capsys):
    assert main(["sim", str(tmp_path / "none.yaml"), "--router", "pow2"]) == 2
    try:
        rc = main(["sim", str(tmp_path / "none.yaml")])
    except SystemExit as exc:
        rc = exc.code
    assert rc == 2


def test_the_old_oracle_name_runs_with_a_note(tmp_path, capsys):
    from agentic_ray.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nduration_s: 1\nclasses: {standard: {budget_ms: 100}}\n"
        "replicas: [{name: a, service: {default: {dist: deterministic, mean_ms: 5}}}]\n"
        "workload: {arrivals: {process: poisson, rate_rps: 20}, mix: {standard: 1}}\n"
    )
    assert main(["sim", str(path), "--router", "oracle"]) == 0
    captured = capsys.readouterr()
    assert "renamed 'central_edf'" in captured.err and "oracle" in captured.out
