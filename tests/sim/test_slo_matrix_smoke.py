"""Smoke run of ``benchmarks/slo_matrix.py --quick`` on one scenario (figures are not asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "slo_matrix.py"


def _load():
    spec = importlib.util.spec_from_file_location("slo_matrix", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_json_and_markdown(tmp_path, capsys):
    bench = _load()
    rc = bench.main(
        [
            "--quick",
            "--scenarios",
            "steady",
            "--routers",
            "agentic,pow2,clairvoyant",
            "--out",
            str(tmp_path),
            "--no-plots",
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "slo_matrix.json").read_text())
    assert report["quick"] is True
    doc = report["scenarios"]["steady"]
    assert set(doc["results"]) == {"agentic", "pow2", "clairvoyant"}
    assert doc["duration_s"] == 10.0  # 60 s compressed 6x
    assert doc["capacity_rps"] == 800.0
    assert [row["load"] for row in report["sweep"]] == [0.5, 1.0, 1.5]
    assert report["floors"]["sim_speed"]["agentic"]["min_requests_per_cpu_s"] > 0
    md = (tmp_path / "slo_matrix.md").read_text()
    assert "## steady" in md and "| agentic |" in md and "| pow2 |" in md


def test_compress_time_scales_faults_and_bursts():
    bench = _load()
    from agentic_ray.sim import load_scenario

    sc = load_scenario(bench.SCENARIO_DIR / "failure.yaml")
    small = bench.compress_time(sc, 0.5)
    assert small.duration_s == sc.duration_s / 2
    assert small.replicas[0].faults[0].at_s == sc.replicas[0].faults[0].at_s / 2
    surge = bench.compress_time(load_scenario(bench.SCENARIO_DIR / "surge.yaml"), 0.5)
    assert surge.workload.arrivals.burst_every_s == 10


def test_every_benchmark_scenario_is_valid():
    bench = _load()
    from agentic_ray.sim import load_scenario

    for name in bench.SCENARIOS:
        assert load_scenario(bench.SCENARIO_DIR / f"{name}.yaml").name == name
