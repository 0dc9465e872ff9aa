"""The actions planner on a manual clock: alert -> action -> clear -> (restore steps) -> revert, the hold,
the guards (never the last replica or node, never above max_replicas), dry run and policy changes."""

from __future__ import annotations

import pytest

from agentic_ray.control import Alert
from agentic_ray.control._actions import ActionPlanner, Evidence, ReplicaEvidence
from agentic_ray.policies import parse_policy

BASE = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: loop, version: "1"}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 100, shedding: never}
  standard: {priority: 1, budget_ms: 500}
  sheddable: {priority: 2, budget_ms: 2000, shedding: first}
"""


def planner(actions: str) -> ActionPlanner:
    policy = parse_policy(BASE + "actions:\n" + actions)
    return ActionPlanner(policy.actions, policy.classes)


def burn(qos: str = "critical", workflow: str | None = "serve:app/Model", since: float = 0.0) -> Alert:
    return Alert("burn_rate", qos, workflow, "3s/1s", 5.0, 2.0, since)


def events(records) -> list[tuple[str, str]]:
    return [(r.event, r.target) for r in records]


def replicas(slow: str | None = "r2", n: int = 3, deployment: str = "app/Model") -> Evidence:
    reps = tuple(
        ReplicaEvidence(f"r{i}", deployment, f"n{i}", "eu-west", 100.0 if f"r{i}" == slow else 20.0, 30)
        for i in range(n)
    )
    return Evidence(reps, {f"n{i}": "eu-west" for i in range(n)}, {deployment: n})


TIGHTEN = """
  rules:
    - id: shed-less
      when: {alert: burn_rate, class: critical, deployment: app/Model}
      do: tighten_admission
      factor: 0.2
      hold_s: 5
      restore_step: 0.5
      restore_every_s: 1
"""


def test_tighten_cuts_at_once_holds_and_restores_step_by_step():
    p = planner(TIGHTEN)
    ev = replicas(None)
    out = p.evaluate([burn()], ev, 0.0)
    assert events(out) == [("alert", "deployment:app/Model"), ("action", "deployment:app/Model")]
    assert out[1].detail["factor"] == 0.2 and out[1].detail["classes"] == ["sheddable", "standard"]
    assert p.overlay().serve_caps == {"app/Model": {"classes": {"sheddable": 0.2, "standard": 0.2}, "zone": None}}
    assert p.evaluate([burn()], ev, 1.0) == []  # nothing new while the alert is active
    out = p.evaluate([], ev, 2.0)  # cleared before the hold ends: still in force
    assert events(out) == [("clear", "deployment:app/Model")]
    assert p.overlay().serve_caps["app/Model"]["classes"]["standard"] == 0.2
    assert p.evaluate([], ev, 4.9) == []
    out = p.evaluate([], ev, 5.0)  # the hold passed: half of the cut back
    assert [(r.event, r.detail["factor"]) for r in out] == [("restore", 0.6)]
    assert p.overlay().serve_caps["app/Model"]["classes"]["standard"] == pytest.approx(0.6)
    assert p.evaluate([], ev, 5.5) == []
    out = p.evaluate([], ev, 6.0)
    assert [(r.event, r.detail["factor"]) for r in out] == [("revert", 1.0)]
    assert p.overlay().serve_caps == {} and p.entries == {}
    assert [r.event for r in p.log] == ["alert", "action", "clear", "restore", "revert"]
    assert all(r.rule == "shed-less" and r.alert == burn().id for r in p.log)


def test_an_alert_back_during_the_restore_cuts_again():
    p = planner(TIGHTEN)
    ev = replicas(None)
    p.evaluate([burn()], ev, 0.0)
    p.evaluate([], ev, 1.0)
    assert [r.event for r in p.evaluate([], ev, 5.0)] == ["restore"]
    out = p.evaluate([burn()], ev, 5.2)
    assert [(r.event, r.detail["factor"], r.detail["reason"]) for r in out] == [("action", 0.2, "alert active again")]
    assert p.overlay().serve_caps["app/Model"]["classes"]["standard"] == 0.2


def test_tighten_on_the_task_path_caps_the_nodes_of_its_zone():
    p = planner("""
  rules:
    - id: tasks
      when: {alert: p99_over_budget, class: standard, zone: eu-west}
      do: tighten_admission
""")
    ev = Evidence((), {"a": "eu-west", "b": "us-east"}, {})
    out = p.evaluate([Alert("p99_over_budget", "standard", "fraud", "2s", 900, 500, 0.0)], ev, 0.0)
    assert events(out) == [("alert", "zone:eu-west"), ("action", "zone:eu-west")]
    assert p.overlay().node_caps == {"a": {"sheddable": 0.5}}


def test_tighten_with_nothing_less_urgent_to_shed_is_a_skip_logged_once():
    p = planner("""
  rules:
    - id: t
      when: {alert: burn_rate, class: sheddable}
      do: tighten_admission
""")
    alert = burn("sheddable")
    out = p.evaluate([alert], replicas(None), 0.0)
    assert [(r.event, r.detail["reason"]) for r in out] == [
        ("skip", "no class less urgent than 'sheddable' may be shed")
    ]
    assert p.evaluate([alert], replicas(None), 1.0) == []


AVOID = """
  rules:
    - id: slow-replica
      when: {alert: burn_rate, class: critical}
      do: avoid_replica
      hold_s: 2
"""


def test_avoid_replica_picks_the_drifted_one_and_keeps_it_after_its_figures_fade():
    p = planner(AVOID)
    out = p.evaluate([burn()], replicas("r2"), 0.0)
    assert events(out) == [("alert", "replica:r2"), ("action", "replica:r2")]
    assert p.overlay().avoid_replicas == {"r2": 0.0}
    # Avoided, r2 gets no traffic: the evidence no longer shows it, the action stays while the alert does.
    assert p.evaluate([burn()], replicas(None), 1.0) == []
    assert p.overlay().avoid_replicas == {"r2": 0.0}
    assert events(p.evaluate([], replicas(None), 1.5)) == [("clear", "replica:r2")]
    assert events(p.evaluate([], replicas(None), 2.0)) == [("revert", "replica:r2")]
    assert p.overlay().avoid_replicas == {}


def test_avoid_replica_needs_a_real_outlier_and_never_takes_the_last_one():
    p = planner(AVOID)
    out = p.evaluate([burn()], replicas(None), 0.0)
    assert [r.event for r in out] == ["skip"] and "2x the others'" in out[0].detail["reason"]
    p = planner(AVOID)
    out = p.evaluate([burn()], replicas("r1", n=1), 0.0)
    assert out[0].event == "skip" and "no replica of the deployment" in out[0].detail["reason"]
    p = planner(AVOID)
    out = p.evaluate([burn(workflow=None)], replicas("r1"), 0.0)
    assert out[0].detail["reason"] == "the alert names no deployment"


def test_avoid_node_never_leaves_no_node():
    p = planner("""
  rules:
    - id: slow-node
      when: {alert: burn_rate, class: critical}
      do: avoid_node
      weight: 0.25
""")
    out = p.evaluate([burn()], replicas("r0"), 0.0)
    assert events(out)[-1] == ("action", "node:n0")
    assert p.overlay().avoid_nodes == {"n0": 0.25}
    p = planner("""
  rules:
    - id: slow-node
      when: {alert: burn_rate, class: critical}
      do: avoid_node
""")
    out = p.evaluate([burn()], replicas("r0", n=1), 0.0)
    assert out[0].event == "skip" and out[0].detail["reason"] == "it would leave no node un-avoided"


def test_scale_out_within_max_replicas_and_back_on_revert():
    p = planner("""
  rules:
    - id: more
      when: {alert: burn_rate, deployment: app/Model}
      do: scale_out
      replicas: 2
      max_replicas: 4
      hold_s: 1
""")
    out = p.evaluate([burn()], replicas(None), 0.0)
    assert out[-1].event == "action" and out[-1].detail["replicas"] == 4 and out[-1].detail["from"] == 3
    assert p.overlay().scale == {"app/Model": 4}
    p.evaluate([], replicas(None), 0.5)
    out = p.evaluate([], replicas(None), 1.0)
    assert [(r.event, r.detail["replicas"]) for r in out] == [("revert", 3)]
    # At the ceiling: nothing to do, said once.
    ev = Evidence(replicas(None).replicas, {}, {"app/Model": 4})
    out = p.evaluate([burn()], ev, 2.0)
    assert [(r.event, r.detail["reason"]) for r in out] == [("skip", "app/Model is at max_replicas (4)")]


def test_scale_out_on_the_task_path_asks_for_bundles():
    p = planner(
        """
  rules:
    - id: cpus
      when: {alert: burn_rate, workflow: fraud}
      do: scale_out
      resources: {CPU: 2}
      replicas: 2
""".replace("workflow: fraud", "class: critical")
    )
    p.evaluate([burn(workflow=None)], Evidence(), 0.0)
    assert p.overlay().resources == ({"CPU": 2.0}, {"CPU": 2.0})


def test_notify_logs_and_reverts_when_cleared():
    p = planner("""
  rules:
    - id: page
      when: {alert: p99_over_budget}
      do: notify
""")
    alert = Alert("p99_over_budget", "standard", None, "60s", 900.0, 500.0, 0.0)
    assert [r.event for r in p.evaluate([alert], Evidence(), 0.0)] == ["alert", "action"]
    assert p.overlay() == p.overlay().__class__()
    assert [r.event for r in p.evaluate([], Evidence(), 1.0)] == ["clear", "revert"]


def test_dry_run_logs_everything_and_puts_nothing_in_force():
    p = planner("  dry_run: true\n" + TIGHTEN)
    out = p.evaluate([burn()], replicas(None), 0.0)
    assert [r.event for r in out] == ["alert", "action"] and all(r.dry_run for r in out)
    assert p.overlay().serve_caps == {}
    assert p.status()["dry_run"] is True and p.status()["active"][0]["rule"] == "shed-less"


def test_a_changed_rule_is_reverted_by_a_new_policy():
    p = planner(TIGHTEN)
    p.evaluate([burn()], replicas(None), 0.0)
    new = parse_policy(BASE + "actions:\n" + TIGHTEN.replace("factor: 0.2", "factor: 0.4"))
    out = p.reconfigure(new.actions, new.classes, 1.0)
    assert [(r.event, r.detail["reason"]) for r in out] == [("revert", "rule changed or removed")]
    assert p.entries == {}
    same = parse_policy(BASE + "actions:\n" + TIGHTEN.replace("factor: 0.2", "factor: 0.4"))
    p.evaluate([burn()], replicas(None), 2.0)
    assert p.reconfigure(same.actions, same.classes, 3.0) == [] and p.entries


def test_rules_match_by_class_workflow_stage_and_deployment():
    policy = parse_policy(
        BASE.replace(
            "classes:", "workflows:\n  fraud: {class: critical, stages: [{name: score, share: 0.5}]}\nclasses:"
        )
        + """actions:
  rules:
    - {id: stage, when: {alert: burn_rate, workflow: fraud, stage: score}, do: notify}
    - {id: wf, when: {alert: burn_rate, workflow: fraud}, do: notify}
    - {id: dep, when: {alert: burn_rate, deployment: app/Model}, do: notify}
    - {id: p99, when: {alert: p99_over_budget}, do: notify}
"""
    )
    ids = lambda *a: [r.id for r in policy.actions.matching(*a)]  # noqa: E731
    assert ids("burn_rate", "critical", "fraud/score") == ["stage", "wf"]
    assert ids("burn_rate", "critical", "fraud") == ["wf"]
    assert ids("burn_rate", "critical", "serve:app/Model") == ["dep"]
    assert ids("burn_rate", "critical", "serve:other/Model") == []
    assert ids("p99_over_budget", "standard", None) == ["p99"]
