"""Scenario validation: every problem reported with its field path and YAML line."""

from __future__ import annotations

import pytest

from agentic_ray.errors import ConfigValidationError, ScenarioValidationError
from agentic_ray.sim import load_scenario, parse_scenario, scale_load

GOOD = """\
name: ok
duration_s: 30
warmup_s: 5
classes: {critical: {budget_ms: 100, priority: 0}}
replicas:
  - name: gpu
    count: 2
    slots: 4
    max_ongoing: .inf
    service:
      default: {dist: lognormal, mean_ms: 10, cv: 0.5}
      big: {dist: bimodal, fast_ms: 5, slow_ms: 100, slow_fraction: 0.1}
    faults: [{at_s: 10, kind: slowdown, factor: 5, for_s: 2}, {at_s: 20, kind: crash, replica: 1}]
workload:
  arrivals: {process: ramp, from_rps: 10, to_rps: 100}
  mix: {critical: 1}
  models: {default: 0.5, big: 0.5}
"""


def _problems(text: str) -> dict[str, tuple[int | None, str]]:
    with pytest.raises(ScenarioValidationError) as info:
        parse_scenario(text, "bad.yaml")
    assert isinstance(info.value, ConfigValidationError)
    return {p.path: (p.line, p.reason) for p in info.value.problems}


def test_good_scenario_parses():
    sc = parse_scenario(GOOD)
    assert sc.replicas[0].max_ongoing == float("inf")
    assert sc.measured_s == 25 and sc.replica_count == 2


def test_every_schema_problem_has_path_and_line():
    bad = (
        GOOD.replace("duration_s: 30", "duration_s: 0")
        .replace("slots: 4", "slots: 0")
        .replace("from_rps: 10", "from_rps: -1")
        .replace("mean_ms: 10, cv", "cv")
    )
    problems = _problems(bad)
    assert problems["duration_s"][0] == 2
    assert problems["replicas[0].slots"][0] == 8
    assert problems["workload.arrivals.from_rps"][0] == 15
    assert problems["replicas[0].service.default.mean_ms"][0] == 11
    assert len(problems) == 4


def test_unknown_fields_and_processes_are_refused():
    problems = _problems(
        GOOD.replace("count: 2", "count: 2\n    colour: red").replace("process: ramp", "process: zigzag")
    )
    assert "replicas[0].colour" in problems
    assert any(p.startswith("workload.arrivals") for p in problems)


def test_semantic_problems():
    problems = _problems(
        GOOD.replace("warmup_s: 5", "warmup_s: 30")
        .replace("mix: {critical: 1}", "mix: {critical: 1, gold: 1}")
        .replace("kind: slowdown, factor: 5,", "kind: slowdown,")
        .replace("replica: 1}", "replica: 7}")
        .replace("default: {dist", "small: {dist")
    )
    assert problems["warmup_s"][0] == 3
    assert problems["workload.mix.gold"][0] == 16
    assert "slowdown" in problems["replicas[0].faults[0].factor"][1]
    assert "index 7" in problems["replicas[0].faults[1].replica"][1]
    assert "'default'" in problems["replicas[0].service"][1]


def test_classes_or_policy_required_and_files_must_exist():
    problems = _problems(
        GOOD.replace("classes: {critical: {budget_ms: 100, priority: 0}}\n", "policy: nope.yaml\n").replace(
            "{process: ramp, from_rps: 10, to_rps: 100}", "{process: trace, file: no.csv}"
        )
    )
    assert "file not found" in problems["policy"][1]
    assert "file not found" in problems["workload.arrivals.file"][1]
    problems = _problems(GOOD.replace("classes: {critical: {budget_ms: 100, priority: 0}}\n", ""))
    assert "required" in problems["classes"][1]


def test_yaml_syntax_error_has_a_line():
    problems = _problems("name: x\nreplicas: [\n")
    ((line, reason),) = problems.values()
    assert line is not None and "invalid YAML" in reason


def test_not_a_mapping():
    assert "mapping" in _problems("- 1\n- 2\n")[""][1]


def test_load_scenario_resolves_paths_from_its_folder(tmp_path):
    (tmp_path / "a.csv").write_text("at_s\n1\n")
    (tmp_path / "s.yaml").write_text(
        GOOD.replace("{process: ramp, from_rps: 10, to_rps: 100}", "{process: trace, file: a.csv}")
    )
    sc = load_scenario(tmp_path / "s.yaml")
    assert sc.workload.arrivals.file == str(tmp_path / "a.csv")


def test_scale_load_multiplies_rates():
    sc = scale_load(parse_scenario(GOOD), 2.0)
    assert (sc.workload.arrivals.from_rps, sc.workload.arrivals.to_rps) == (20, 200)
    with pytest.raises(ValueError):
        scale_load(sc, 0)
