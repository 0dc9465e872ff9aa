"""Every kind of bad policy input gives PolicyValidationError with field paths, lines and all problems."""

from __future__ import annotations

import textwrap

import pytest

from agentic_ray.errors import PolicyError, PolicyValidationError
from agentic_ray.policies import load_policy, parse_policy
from agentic_ray.policies.loader import MAX_POLICY_BYTES

HEAD = """\
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: t}
default_class: standard
"""

CLASSES = """\
classes:
  critical: {priority: 0, budget_ms: 100, shedding: never}
  standard: {priority: 1, budget_ms: 500}
"""


def problems_of(text: str) -> list[tuple[str, str, int | None]]:
    with pytest.raises(PolicyValidationError) as info:
        parse_policy(textwrap.dedent(text), source="p.yaml")
    assert isinstance(info.value, PolicyError)
    assert all(p.source == "p.yaml" for p in info.value.problems)
    return [(p.path, p.reason, p.line) for p in info.value.problems]


def test_valid_minimal_policy_parses() -> None:
    policy = parse_policy(HEAD + CLASSES)
    assert policy.name == "t" and set(policy.classes) == {"critical", "standard"}


def test_malformed_yaml_reports_the_line() -> None:
    probs = problems_of(HEAD + "classes:\n  a: [1, 2\n  b: c\n")
    assert len(probs) == 1
    path, reason, line = probs[0]
    assert path == "" and "malformed YAML" in reason and line is not None and line >= 6


def test_unknown_keys_wrong_types_and_bad_budgets_are_all_listed_with_lines() -> None:
    text = HEAD + textwrap.dedent(
        """\
        classes:
          critical: {priority: 0, budget_ms: 0}
          standard:
            priority: "high"
            budget_ms: -3
            colour: blue
        surprise: 1
        """
    )
    probs = {(p, line) for p, _, line in problems_of(text)}
    assert ("classes.critical.budget_ms", 6) in probs
    assert ("classes.standard.priority", 8) in probs
    assert ("classes.standard.budget_ms", 9) in probs
    assert ("classes.standard.colour", 10) in probs
    assert ("surprise", 11) in probs


def test_unknown_key_reason_and_string_number_is_a_type_error() -> None:
    probs = problems_of(HEAD + "classes:\n  standard: {priority: 1, budget_ms: '100', x: 1}\n")
    reasons = {p: r for p, r, _ in probs}
    assert reasons["classes.standard.x"] == "unknown key"
    assert "number" in reasons["classes.standard.budget_ms"]


def test_missing_fields_are_named() -> None:
    probs = problems_of("apiVersion: agentic-ray/v1\nkind: Policy\nclasses: {}\n")
    paths = {p for p, _, _ in probs}
    assert {"metadata", "default_class", "classes"} <= paths


def test_wrong_api_version_and_kind() -> None:
    probs = problems_of(HEAD.replace("agentic-ray/v1", "agentic-ray/v2").replace("Policy", "Polcy") + CLASSES)
    assert {p for p, _, _ in probs} == {"apiVersion", "kind"}
    assert {line for _, _, line in probs} == {1, 2}


def test_stage_budgets_over_the_workflow_budget() -> None:
    text = (
        HEAD
        + CLASSES
        + textwrap.dedent(
            """\
        workflows:
          rag:
            budget_ms: 100
            stages:
              - {name: retrieve, share: 0.5}
              - {name: generate, budget_ms: 60}
          over:
            stages: [{name: a, share: 0.7}, {name: b, share: 0.6}]
          both:
            stages: [{name: a, share: 0.1, budget_ms: 5}, {name: a, budget_ms: 1}]
        """
        )
    )
    probs = problems_of(text)
    by_path = {p: (r, line) for p, r, line in probs}
    assert "110" in by_path["workflows.rag.stages"][0] and by_path["workflows.rag.stages"][1] == 11
    assert "over 1" in by_path["workflows.over.stages"][0]
    assert "exactly one" in by_path["workflows.both.stages[0]"][0]
    assert "duplicate stage" in by_path["workflows.both.stages[1].name"][0]


def test_duplicate_rule_ids_and_undefined_references() -> None:
    text = (
        HEAD.replace("standard", "gold")
        + CLASSES
        + textwrap.dedent(
            """\
        tenants:
          acme: {region: eu-west, class: platinum}
        workflows:
          rag: {class: bronze}
        rules:
          - id: r1
            match: {tenant: ghost, workflow: nowhere, class: [standard, silver]}
          - id: r1
        admission:
          classes:
            diamond: {queue_bound: 3}
        """
        )
    )
    by_path = {p: (r, line) for p, r, line in problems_of(text)}
    assert by_path["default_class"] == ("undefined class 'gold'", 4)
    assert by_path["tenants.acme.class"][0] == "undefined class 'platinum'"
    assert by_path["workflows.rag.class"][0] == "undefined class 'bronze'"
    assert by_path["rules[0].match.tenant[0]"][0] == "undefined tenant 'ghost'"
    assert by_path["rules[0].match.workflow[0]"][0] == "undefined workflow 'nowhere'"
    assert by_path["rules[0].match.class[1]"][0] == "undefined class 'silver'"
    assert "duplicate rule id 'r1'" in by_path["rules[1].id"][0]
    assert by_path["rules[1].id"][1] == 15
    assert by_path["admission.classes.diamond"][0] == "undefined class 'diamond'"


def test_contradictory_rules_on_the_same_selector() -> None:
    text = (
        HEAD
        + CLASSES
        + textwrap.dedent(
            """\
        tenants:
          acme: {region: eu-west-1}
        rules:
          - id: eu-only
            match: {tenant_region: "eu-*"}
            require: {zone_prefix: eu-}
          - id: acme-us
            match: {tenant: acme}
            require: {zone_prefix: [us-, ap-]}
          - id: gpu
            match: {class: critical}
            require: {accelerators: [a100]}
          - id: cpu
            match: {class: critical, model: "small-*"}
            require: {accelerators: [cpu]}
          - id: self-contradiction
            require: {zones: [us-east-1a], zone_prefix: eu}
          - id: fine-overlap
            match: {class: critical}
            require: {accelerators: [a100, h100]}
        """
        )
    )
    by_path: dict[str, str] = {}
    for path, reason, _ in problems_of(text):
        by_path[path] = by_path.get(path, "") + reason + "|"
    assert "contradicts rule 'eu-only'" in by_path["rules[1].require.zone_prefix"]
    assert "contradicts rule 'gpu'" in by_path["rules[3].require.accelerators"]
    assert "contradicts rule 'fine-overlap'" in by_path["rules[3].require.accelerators"]
    assert "no node can satisfy" in by_path["rules[4].require.zone_prefix"]
    assert not any(p.startswith("rules[5]") for p in by_path)
    assert len(by_path) == 3


def test_rules_that_can_never_match_together_are_not_contradictions() -> None:
    text = (
        HEAD
        + CLASSES
        + textwrap.dedent(
            """\
        rules:
          - {id: a, match: {class: critical}, require: {zones: [z1]}}
          - {id: b, match: {class: standard}, require: {zones: [z2]}}
        """
        )
    )
    assert [r.id for r in parse_policy(text).rules] == ["a", "b"]


def test_empty_file_and_non_mapping(tmp_path) -> None:
    assert problems_of("")[0][1].startswith("empty document")
    assert problems_of("# only a comment\n")[0][1].startswith("empty document")
    assert "expected a mapping" in problems_of("- a\n- b\n")[0][1]


def test_duplicate_yaml_keys_are_reported() -> None:
    probs = problems_of(HEAD + CLASSES + "default_class: critical\n")
    assert probs == [("default_class", "duplicate key", 8)]


def test_file_over_one_mib_and_non_utf8(tmp_path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_POLICY_BYTES + 1))
    with pytest.raises(PolicyValidationError) as info:
        load_policy(big)
    assert "1 MiB" in info.value.problems[0].reason
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes((HEAD + "# caf\xe9\n").encode("latin-1"))
    with pytest.raises(PolicyValidationError) as info:
        load_policy(bad)
    problem = info.value.problems[0]
    assert "not UTF-8" in problem.reason and problem.line == 5 and problem.source == str(bad)


def test_problem_format_has_file_line_path_reason() -> None:
    with pytest.raises(PolicyValidationError) as info:
        parse_policy(HEAD + "classes:\n  standard: {priority: 1, budget_ms: -1}\n", source="f.yaml")
    assert info.value.problems[0].format().startswith("f.yaml:6: classes.standard.budget_ms: ")


def test_lists_and_mappings_are_named_in_type_errors() -> None:
    probs = problems_of(HEAD + CLASSES + "rules: {id: a}\ntenants: [a]\n")
    assert ("rules", "Input should be a list", 8) in probs
    assert ("tenants", "Input should be a mapping", 9) in probs


def test_name_problems_are_listed_even_when_the_schema_check_fails() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: agentic-ray/v1
        kind: Policy
        metadata: {name: bad}
        default_class: gold
        classes:
          standard: {priority: 1, budget_ms: -1}
        tenants:
          t1: {region: eu, class: silver}
        rules:
          - {id: a, match: {tenant: ghost, class: [standard, bronze]}}
          - {id: a, bogus: 1}
        """
    )
    probs = problems_of(text)
    assert [(p, line) for p, _, line in probs] == [
        ("default_class", 4),
        ("classes.standard.budget_ms", 6),
        ("tenants.t1.class", 8),
        ("rules[0].match.tenant", 10),
        ("rules[0].match.class[1]", 10),
        ("rules[1].bogus", 11),
        ("rules[1].id", 11),
    ]


def test_alias_bombs_and_deep_nesting_are_refused_quickly() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    assert "expands to over" in problems_of("\n".join(lines) + "\n")[0][1]
    assert problems_of("[" * 5000 + "]" * 5000)[0][1] == "YAML nested too deeply"
