"""Canonical hashing (formatting does not change it, meaning does), the JSON Schema, and diff_policies."""

from __future__ import annotations

import json
from pathlib import Path

from agentic_ray.policies import diff_policies, load_policy, parse_policy, policy_json_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"

BASE = """\
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: p}
default_class: standard
classes:
  standard: {priority: 1, budget_ms: 500}
  critical: {priority: 0, budget_ms: 100, shedding: never}
tenants:
  acme: {region: eu-west}
rules:
  - {id: eu, match: {tenant: acme}, require: {zone_prefix: eu-}}
  - {id: gpu, match: {model: "llama-*"}, require: {accelerators: [a100]}}
"""

REFORMATTED = """\
# same meaning, other key order, block style, defaults written out, ints as floats
kind: Policy
apiVersion: agentic-ray/v1
classes:
  critical:
    shedding: never
    budget_ms: 100.0
    priority: 0
  standard:
    budget_ms: 500
    priority: 1
    shedding: when_overloaded
default_class: standard
metadata:
  name: p
tenants:
  acme:
    region: eu-west
rules:
  - id: eu
    match:
      tenant: [acme]
    require:
      zone_prefix: eu-
  - id: gpu
    match: {model: llama-*}
    require: {accelerators: a100}
admission:
  retry: {ratio: 0.1}
"""


def test_formatting_and_defaults_do_not_change_the_hash() -> None:
    a, b = parse_policy(BASE), parse_policy(REFORMATTED)
    assert a.sha256 == b.sha256 and a.version == b.version == f"sha256:{a.sha256[:12]}"
    assert a.canonical() == b.canonical()
    assert diff_policies(a, b) == []


def test_meaning_changes_change_the_hash() -> None:
    base = parse_policy(BASE)
    for old, new in (
        ("budget_ms: 500", "budget_ms: 501"),
        ("accelerators: [a100]", "accelerators: [a100, h100]"),
        ("region: eu-west", "region: eu-west-2"),
    ):
        assert parse_policy(BASE.replace(old, new)).sha256 != base.sha256, new


def test_explicit_version_is_used() -> None:
    policy = parse_policy(BASE.replace("{name: p}", "{name: p, version: '7'}"))
    assert policy.version == "7"


def test_diff_reports_meaning_changes() -> None:
    old = parse_policy(BASE)
    new_text = (
        BASE.replace("budget_ms: 500}", "budget_ms: 400}")
        .replace('  - {id: gpu, match: {model: "llama-*"}, require: {accelerators: [a100]}}\n', "")
        .replace("require: {zone_prefix: eu-}", "require: {zone_prefix: [eu-, ch-]}")
        + "  - {id: spot, match: {class: standard}, prefer: {labels: {capacity: spot}}}\n"
    )
    new = parse_policy(new_text)
    changes = {(c.kind, c.path): c for c in diff_policies(old, new)}
    assert changes[("changed", "classes.standard.budget_ms")].old == 500.0
    assert changes[("changed", "classes.standard.budget_ms")].new == 400.0
    assert ("removed", "rules.gpu") in changes and ("added", "rules.spot") in changes
    assert changes[("changed", "rules.eu.require.zone_prefix")].new == ["eu-", "ch-"]
    assert len(changes) == 4


def test_diff_of_rule_reorder_and_class_added() -> None:
    old = parse_policy(BASE)
    lines = BASE.splitlines(keepends=True)
    swapped = "".join([*lines[:-2], lines[-1], lines[-2]])
    swapped = swapped.replace("classes:\n", "classes:\n  bulk: {priority: 3, budget_ms: 9000}\n")
    kinds = {(c.kind, c.path) for c in diff_policies(old, parse_policy(swapped))}
    assert kinds == {("reordered", "rules"), ("added", "classes.bulk")}


def test_examples_diff_and_schema() -> None:
    minimal = load_policy(EXAMPLES / "minimal.yaml")
    platform = load_policy(EXAMPLES / "platform.yaml")
    assert len(platform.rules) >= 20
    changes = diff_policies(minimal, platform)
    assert sum(c.kind == "added" and c.path.startswith("rules.") for c in changes) == len(platform.rules)
    schema = policy_json_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    assert {"apiVersion", "kind", "metadata", "classes", "default_class"} <= set(schema["required"])
    assert "class" in schema["$defs"]["MatchSpec"]["properties"]


def test_to_yaml_round_trips_to_the_same_hash() -> None:
    for policy in (load_policy(EXAMPLES / "platform.yaml"), load_policy(EXAMPLES / "minimal.yaml")):
        again = parse_policy(policy.to_yaml())
        assert again.sha256 == policy.sha256 and again.version == policy.version


def test_costs_by_accelerator_price_replicas_and_an_empty_table_keeps_the_hash():
    from agentic_ray.policies import parse_policy as load_policy_text

    base = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: costs}
default_class: standard
classes:
  standard: {priority: 1, budget_ms: 500}
"""
    plain = load_policy_text(base)
    assert plain.sha256 == load_policy_text(base + "costs: {}\n").sha256
    priced = load_policy_text(base + "costs: {gpu: 3, cpu: 0.5}\n")
    assert priced.sha256 != plain.sha256
    assert (priced.replica_cost("gpu"), priced.replica_cost("cpu"), priced.replica_cost("tpu")) == (3.0, 0.5, 2.0)
    assert (plain.replica_cost("cpu"), plain.replica_cost("gpu")) == (1.0, 2.0)
