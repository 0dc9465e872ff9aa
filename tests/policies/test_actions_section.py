"""The ``actions:`` policy section: shape and meaning errors name the rule; a policy without it hashes
as before; ``policy explain --alert`` says which rules answer an alert."""

from __future__ import annotations

import pytest

from agentic_ray.cli import main
from agentic_ray.errors import PolicyValidationError
from agentic_ray.policies import parse_policy

BASE = """apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: t, version: "1"}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 100, shedding: never}
  standard: {priority: 1, budget_ms: 500}
"""


def problems(actions: str) -> list[str]:
    with pytest.raises(PolicyValidationError) as info:
        parse_policy(BASE + "actions:\n  rules:\n" + actions)
    return [f"{p.path}: {p.reason}" for p in info.value.problems]


def test_unknown_alert_scope_and_action_are_errors_naming_the_rule():
    out = problems("    - {id: r1, when: {alert: latency, node: x}, do: reboot}\n")
    assert out == [
        "actions.rules[0].when.alert: rule 'r1': unknown alert 'latency'; expected 'burn_rate' or 'p99_over_budget'",
        "actions.rules[0].when.node: rule 'r1': unknown scope; expected class, workflow, stage, deployment or zone",
        "actions.rules[0].do: rule 'r1': unknown action 'reboot'; expected 'tighten_admission', 'avoid_replica', "
        "'avoid_node', 'scale_out' or 'notify'",
    ]


def test_meaning_errors_name_the_rule():
    out = problems(
        "    - {id: a, when: {alert: burn_rate, class: gold}, do: avoid_replica, factor: 0.5}\n"
        "    - {id: a, when: {alert: burn_rate, stage: s}, do: scale_out}\n"
        "    - {id: c, when: {alert: burn_rate, workflow: w, deployment: x/y}, do: notify}\n"
    )
    assert (
        "actions.rules[0].factor: rule 'a': factor is not a parameter of avoid_replica (it takes weight, "
        "drift_ratio, hold_s)" in out
    )
    assert "actions.rules[0].when.class: rule 'a': undefined class 'gold'" in out
    assert any(p.startswith("actions.rules[1].id: duplicate actions rule id 'a'") for p in out)
    assert "actions.rules[1].when.stage: rule 'a': a stage needs its workflow (when.workflow)" in out
    assert any("rule 'a': scale_out needs max_replicas" in p for p in out)
    assert "actions.rules[2].when.workflow: rule 'c': undefined workflow 'w'" in out
    assert "actions.rules[2].when.deployment: rule 'c': an alert is on a deployment or on a workflow, not both" in out


def test_a_policy_without_actions_hashes_as_before_and_compiles_defaults():
    plain = parse_policy(BASE)
    assert "actions" not in plain.canonical() and plain.actions.rules == ()
    # sha256 of this exact document before the section existed (pinned)
    assert plain.sha256 == "fcb5063f364f1e6939368691c81ea44d3098cb65610602d413399c48adecf4ee"
    with_actions = parse_policy(
        BASE + "actions:\n  rules:\n    - {id: t, when: {alert: burn_rate}, do: tighten_admission}\n"
    )
    assert with_actions.sha256 != plain.sha256
    rule = with_actions.actions.rules[0]
    assert dict(rule.params) == {
        "factor": 0.5,
        "classes": None,
        "hold_s": 10.0,
        "restore_step": 0.25,
        "restore_every_s": 2.0,
    }
    assert parse_policy(with_actions.to_yaml()).sha256 == with_actions.sha256


def test_explain_lists_the_rules_and_which_answer_an_alert(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(
        BASE + "actions:\n  dry_run: true\n  rules:\n"
        "    - {id: dep, when: {alert: burn_rate, class: critical, deployment: app/M}, do: avoid_replica}\n"
    )
    assert (
        main(
            [
                "policy",
                "explain",
                str(path),
                "-r",
                "qos=standard",
                "--alert",
                "kind=burn_rate,class=critical,deployment=app/M",
                "--alert",
                "kind=burn_rate",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "actions    1 rule(s) (dry run: logged, not done)" in out
    assert "  dep: burn_rate class=critical deployment=app/M -> avoid_replica weight=0 drift_ratio=2 hold_s=10" in out
    assert "alert      kind=burn_rate, class=critical, deployment=app/M: dep" in out
    assert "alert      kind=burn_rate: no actions rule answers it" in out
    assert main(["policy", "explain", str(path), "-r", "qos=standard", "--alert", "kind=slow"]) == 2
