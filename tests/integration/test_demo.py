"""``agentic-ray demo`` end to end: the three paths complete a short run on the demo's own private Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agentic_ray.cli import main

CLASS_FIELDS = {"requests", "completed", "shed", "failed", "mean_ms", "p50_ms", "p99_ms", "p999_ms", "slo_attainment"}


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_demo_runs_every_path_and_writes_the_sim_shaped_report(tmp_path):
    out = tmp_path / "demo.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # unset: the demo must cope
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "agentic_ray", "demo", "--duration", "3", "--rate", "20", "--seed", "3",
         "--json", str(out)],
        capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["scenario"] == "demo" and report["seed"] == 3
    assert set(report["results"]) == {"agentic", "tuned", "default"}
    assert report["results"]["default"]["serve_options"] == {}  # Serve as users get it
    assert report["results"]["tuned"]["serve_options"]["max_ongoing_requests"] == 2  # the demo's gpu slots
    for path, res in report["results"].items():
        assert {"overall", "classes", "goodput_rps", "decision_us_p50", "decision_us_p99"} <= set(res)
        assert set(res["overall"]) >= CLASS_FIELDS
        assert res["overall"]["requests"] > 0
        assert res["overall"]["completed"] > 0, path
        assert res["overall"]["failed"] == 0, (path, res.get("shed_reasons"))
        for stats in res["classes"].values():
            assert set(stats) >= CLASS_FIELDS
            assert stats["requests"] == stats["completed"] + stats["shed"] + stats["failed"]
    assert report["results"]["agentic"]["decision_us_p50"] is not None
    assert report["results"]["default"]["overall"]["shed"] == 0  # Serve's default router never sheds
    assert "tuned" in proc.stdout and "default" in proc.stdout and "SLO" in proc.stdout
    assert "[agentic]" in proc.stderr or "Ray up" in proc.stderr  # progress is shown


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--duration", "-1"], "--duration"),
        (["--rate", "0"], "--rate"),
        (["--paths", "fastest"], "--paths"),
        (["--rounds", "0"], "--rounds"),
    ],
)
def test_demo_usage_errors_exit_2_before_starting_ray(argv, needle, capsys):
    assert main(["demo", *argv]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_llm_demo_streams_through_both_paths_and_reports_token_attainment(tmp_path):
    out = tmp_path / "llm.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "agentic_ray", "demo", "--workload", "llm", "--duration", "3", "--json", str(out)],
        capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["scenario"] == "demo-llm" and "synthetic token streamer" in report["service"]
    for path in ("agentic", "default"):
        res = report["results"][path]
        assert res["overall"]["completed"] > 0 and res["overall"]["failed"] == 0, res.get("shed_reasons")
        for name, stats in res["classes"].items():
            assert stats["ttft_attainment"] is not None and stats["ttft_p50_ms"] > 0, (path, name)
    assert "SYNTHETIC" in proc.stderr and "synthetic token streamer" in proc.stdout
    assert "chat within token budgets: agentic TTFT" in proc.stdout


def test_llm_demo_usage_errors_exit_2_before_starting_ray(capsys):
    assert main(["demo", "--workload", "llm", "--plot", "x.png"]) == 2
    assert "--plot" in capsys.readouterr().err


def test_a_refused_demo_leaves_the_callers_auth_mode_alone(monkeypatch):
    """The demo disables Ray's auth for its private Ray only; run in-process, it restores the variable."""
    import os

    from agentic_ray.cli import main

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert main(["demo", "--paths", "nobody"]) == 2
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_round_order_rotates_so_each_path_leads_in_turn():
    from agentic_ray.demo._live import round_order

    paths = ["agentic", "tuned", "default"]
    assert [round_order(paths, k)[0] for k in range(3)] == paths
    assert round_order(paths, 1) == ["tuned", "default", "agentic"]


def test_serve_options_default_is_serves_own_and_tuned_bounds_the_queue():
    from agentic_ray.demo import demo_scenario_path
    from agentic_ray.demo._live import serve_options
    from agentic_ray.sim import load_scenario

    sc = load_scenario(demo_scenario_path())
    assert serve_options("default", sc) == {}
    slots = max(g.slots for g in sc.replicas)
    total = sum(g.count * g.slots for g in sc.replicas)
    assert serve_options("tuned", sc) == {"max_ongoing_requests": slots, "max_queued_requests": 2 * total}
