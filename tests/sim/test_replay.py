"""What-if replay: a decision log written the way the router and the replica gates write it (the
telemetry hook's records, with the router's ``arrive`` records) is exported as arrivals and replayed under
the scenario's policy and a changed one: the change shows in the shed counts, side by side."""

from __future__ import annotations

import csv
import random

from agentic_ray.cli import main
from agentic_ray.scheduling.events import DecisionEvent
from agentic_ray.sim import load_scenario
from agentic_ray.sim.replay import replay
from agentic_ray.telemetry.arrivals import COLUMNS, export_arrivals
from agentic_ray.telemetry.audit import open_decision_log
from agentic_ray.telemetry.hotpath import TelemetryHook

POLICY = """apiVersion: agentic-ray/v1
kind: Policy
metadata: {{name: replay, version: "{version}"}}
default_class: standard
classes:
  critical: {{priority: 0, budget_ms: 100, shedding: never}}
  standard: {{priority: 1, budget_ms: 300}}
  sheddable: {{priority: 2, budget_ms: {sheddable}, shedding: first}}
entitlements: {{anonymous: {{allowed_classes: [critical, standard, sheddable]}}}}
"""
SCENARIO = """name: replayed
seed: 3
duration_s: 5
network_ms: 0.5
policy: {policy}
replicas:
  - {{name: cpu, count: 2, zone: eu-west, slots: 1, max_ongoing: 4,
     service: {{default: {{dist: lognormal, mean_ms: 10, cv: 0.3}}}}}}
workload:
  arrivals: {{process: poisson, rate_rps: 100}}
  mix: {{critical: 0.3, standard: 0.4, sheddable: 0.3}}
"""


def record_log(path, n: int = 500, rps: float = 260.0) -> None:
    """A log as a live run leaves it: per request the router's arrive and route records, the gate's start
    and its completion (10 ms of service, from a seeded draw), at ``rps`` (above 2 x 1-slot capacity)."""
    hook = TelemetryHook(None, decision_log=open_decision_log(path), flush_interval_s=0)
    hook.register_policy("1", "0" * 64)
    rng, t = random.Random(1), 1000.0
    classes = ("critical", "standard", "sheddable")
    for i in range(n):
        t += rng.expovariate(rps)
        qos, rid = classes[i % 3], f"req-{i}"
        attrs = {"request": {"tenant": None, "workflow": None, "stage": None, "model": "default",
                             "data_class": "public"}}  # fmt: skip
        hook.push(("router", "arrive", rid, qos, "", None, None, 100.0, (), "1", None, t, attrs))
        hook.push(tuple(DecisionEvent("router", "route", rid, qos, "fastest", "r0", 10.0, 100.0, (), "1", 2.0, t)))
        hook.push(tuple(DecisionEvent("gate", "start", rid, qos, "slot_free", None, None, 99.0, (), "1", None, t)))
        service = rng.uniform(8.0, 12.0) / 1000.0
        hook.completion((rid, qos, True, service * 1000.0, 80.0, "r0", t + service))
        hook.flush()
    hook.decision_log.close()


def test_export_then_replay_shows_a_policy_change_in_the_shed_counts(tmp_path):
    log = tmp_path / "router-decisions.jsonl"
    record_log(log)
    rows = export_arrivals([log])
    assert len(rows) == 500 and rows[0]["at_s"] == 0.0
    assert rows[1]["class"] == "standard" and rows[1]["data_class"] == "public" and rows[1]["model"] == "default"
    assert 8.0 <= rows[1]["service_ms"] <= 12.0 and rows[1]["outcome"] == "completed"

    out = tmp_path / "arrivals.csv"
    assert main(["trace", "export", str(log), "--csv", str(out)]) == 0
    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == COLUMNS and len(table) == 500

    old = tmp_path / "old.yaml"
    old.write_text(POLICY.format(version="1", sheddable=2000))
    new = tmp_path / "new.yaml"
    new.write_text(POLICY.format(version="2", sheddable=25))  # sheddable work must now finish in 25 ms
    scenario_path = tmp_path / "scenario.yaml"
    scenario_path.write_text(SCENARIO.format(policy=old))
    report = replay(load_scenario(scenario_path), out, new)
    c = report["results"]["agentic"]["classes"]
    assert c["sheddable"]["requests"] == [166, 166]
    assert c["sheddable"]["shed"][1] > c["sheddable"]["shed"][0]
    assert c["sheddable"]["shed_change"] == c["sheddable"]["shed"][1] - c["sheddable"]["shed"][0] > 0
    assert c["critical"]["shed"] == [0, 0]  # never-shed work stays admitted under both
    assert all(v["placement_changes"] == 0 for v in c.values())  # no placement rule changed


def test_the_cli_prints_the_runs_side_by_side(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    record_log(log, n=120)
    out = tmp_path / "arrivals.csv"
    assert main(["trace", "export", str(log), "--csv", str(out)]) == 0
    old = tmp_path / "old.yaml"
    old.write_text(POLICY.format(version="1", sheddable=2000))
    new = tmp_path / "new.yaml"
    new.write_text(POLICY.format(version="2", sheddable=25))
    scenario_path = tmp_path / "scenario.yaml"
    scenario_path.write_text(SCENARIO.format(policy=old))
    capsys.readouterr()
    assert main(["sim", str(scenario_path), "--replay", str(out), "--policy", str(new)]) == 0
    text = capsys.readouterr().out
    assert "SLO % before" in text and "placement changes" in text and "agentic    sheddable" in text
    assert main(["sim", str(scenario_path), "--replay", str(out)]) == 2
    assert main(["trace", "export", str(tmp_path / "empty.jsonl"), "--csv", str(out)]) == 2
