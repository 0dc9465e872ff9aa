"""Entitlements: who may ask for which class and budget; regulated data fails closed. Hand-checked cases."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from agentic_ray.errors import EntitlementError, PolicyValidationError
from agentic_ray.policies import RequestMeta, load_policy, parse_policy

PLATFORM = Path(__file__).resolve().parents[2] / "examples" / "policies" / "platform.yaml"

DOC = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: ent}
default_class: standard
classes:
  gold:      {priority: 0, budget_ms: 100, shedding: never}
  silver:    {priority: 0, budget_ms: 120}
  standard:  {priority: 1, budget_ms: 500}
  batch:     {priority: 2, budget_ms: 2000, max_budget_ms: 60000, shedding: first}
tenants:
  acme:  {region: eu-west, class: gold}
  bolt:  {region: eu-west}
  clamp: {region: us-east, class: standard, on_excess: clamp, max_budget_ms: 1000}
  only:  {region: us-east, allowed_classes: [batch]}
data_classes:
  pii: {requires_residency: true}
rules:
  - {id: eu, match: {tenant_region: "eu-*"}, require: {zone_prefix: eu-}}
"""


@pytest.fixture(scope="module")
def policy():
    return parse_policy(DOC)


def classify(policy, **request):
    return policy.classify(RequestMeta(**request), now=0.0)


def test_the_issue_example_is_refused_naming_the_entitlement():
    platform = load_policy(PLATFORM)
    with pytest.raises(EntitlementError) as info:
        platform.classify(RequestMeta(tenant="delta-us", qos="critical", budget_ms=600000), now=0.0)
    err = info.value
    assert (err.entitlement, err.holder, err.requested) == ("class", "tenant:delta-us", "critical")
    assert err.allowed == ["sheddable"] and err.rule.startswith("tenants.delta-us.class")
    with pytest.raises(EntitlementError) as info:
        platform.classify(RequestMeta(tenant="delta-us", budget_ms=600000), now=0.0)
    assert (info.value.entitlement, info.value.allowed) == ("budget", 5000.0)
    assert info.value.rule.startswith("classes.sheddable.budget_ms")


def test_a_tenant_gets_its_class_and_every_less_important_one(policy):
    assert classify(policy, tenant="acme", qos="gold").qos.name == "gold"
    assert classify(policy, tenant="acme", qos="silver").qos.name == "silver"  # same priority as gold
    assert classify(policy, tenant="acme", qos="batch").qos.name == "batch"
    with pytest.raises(EntitlementError, match="silver"):
        classify(policy, tenant="bolt", qos="silver")  # no class: the default class (standard) and lower
    assert classify(policy, tenant="bolt").qos.name == "standard"


def test_explicit_allowed_classes_replace_the_default(policy):
    assert classify(policy, tenant="only", qos="batch").qos.name == "batch"
    with pytest.raises(EntitlementError) as info:
        classify(policy, tenant="only")  # the default class is not in its list
    assert info.value.rule == "tenants.only.allowed_classes"


def test_anonymous_callers_get_the_default_class_and_lower(policy):
    assert classify(policy).qos.name == "standard"
    with pytest.raises(EntitlementError) as info:
        classify(policy, qos="gold")
    assert info.value.holder == "anonymous"
    granted = parse_policy(DOC + "entitlements: {anonymous: {allowed_classes: [gold, standard]}}\n")
    assert classify(granted, qos="gold").qos.name == "gold"


def test_a_request_may_shorten_its_budget_never_lengthen_it(policy):
    assert classify(policy, tenant="acme", budget_ms=40).budget_ms == 40.0
    with pytest.raises(EntitlementError) as info:
        classify(policy, tenant="acme", budget_ms=101)
    assert (info.value.entitlement, info.value.requested, info.value.allowed) == ("budget", 101.0, 100.0)
    # unless the class sets max_budget_ms
    assert classify(policy, tenant="acme", qos="batch", budget_ms=60000).budget_ms == 60000.0
    with pytest.raises(EntitlementError):
        classify(policy, tenant="acme", qos="batch", budget_ms=60001)


def test_clamp_mode_gives_what_is_allowed_and_records_it(policy):
    c = classify(policy, tenant="clamp", qos="gold", budget_ms=5000)
    assert c.qos.name == "standard" and c.budget_ms == 500.0  # class clamped, then its budget
    assert c.entitlement.verdict == "clamped" and c.entitlement.clamped == ("class", "budget")
    assert c.rule_ids[-1] == "entitlement:tenant:clamp"
    assert c.explain()["entitlement"]["requested_class"] == "gold"
    # the tenant's max_budget_ms caps even the class's own budget, without refusing
    c = classify(policy, tenant="clamp", qos="batch")
    assert c.budget_ms == 1000.0 and c.entitlement.verdict == "granted"
    assert "capped by tenants.clamp.max_budget_ms" in c.budget_source


def test_regulated_data_without_residency_fails_closed(policy):
    with pytest.raises(EntitlementError) as info:
        classify(policy, data_class="pii")  # no tenant: no residency rule matches
    assert (info.value.entitlement, info.value.rule) == ("residency", "data_classes.pii.requires_residency")
    with pytest.raises(EntitlementError):
        classify(policy, tenant="clamp", data_class="pii")  # us-east: no rule keeps it in a zone
    assert classify(policy, tenant="bolt", data_class="pii").rule_ids == ("eu",)
    with pytest.raises(EntitlementError):  # not an entitlement of the caller: checked either way
        policy.classify(RequestMeta(data_class="pii"), now=0.0, check_entitlement=False)


def test_unchecked_classification_takes_the_request_as_granted(policy):
    c = policy.classify(RequestMeta(qos="gold", budget_ms=900), now=0.0, check_entitlement=False)
    assert (c.qos.name, c.budget_ms) == ("gold", 900.0)


def test_entitlement_error_pickles_and_renders_a_403_body():
    err = EntitlementError("class", "tenant:x", "gold", ["standard"], "tenants.x.class")
    again = pickle.loads(pickle.dumps(err))
    assert again.to_dict() == err.to_dict()
    assert err.to_dict()["error"] == "entitlement" and err.to_dict()["entitlement"] == "class"


BASE = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: base}
default_class: standard
classes:
  standard: {priority: 1, budget_ms: 500}
"""


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("tenants: {t: {region: r, allowed_classes: [nope]}}", "tenants.t.allowed_classes"),
        ("entitlements: {anonymous: {allowed_classes: [nope]}}", "entitlements.anonymous.allowed_classes"),
        ("entitlements: {on_excess: shrug}", "entitlements.on_excess"),
        ("data_classes: {pii: {requires_residency: yes please}}", "data_classes.pii.requires_residency"),
        ("tenants: {t: {region: r, max_budget_ms: -1}}", "tenants.t.max_budget_ms"),
    ],
)
def test_bad_entitlement_sections_name_the_field(extra, path):
    with pytest.raises(PolicyValidationError) as info:
        parse_policy(BASE + extra + "\n")
    assert any(p.path.startswith(path) for p in info.value.problems), info.value


def test_class_max_budget_below_its_budget_is_refused():
    with pytest.raises(PolicyValidationError, match="max_budget_ms"):
        parse_policy(DOC.replace("max_budget_ms: 60000", "max_budget_ms: 10"))


def test_policy_reports_uncovered_and_unplaceable_request_shapes():
    platform = load_policy(PLATFORM)
    uncovered = platform.uncovered_shapes()
    assert uncovered and all(s["tenant"] is None for s in uncovered)  # every tenant has a residency rule
    assert {s["data_class"] for s in uncovered} == {"pii", "phi"}
    impossible = platform.unplaceable_shapes()
    assert impossible and all((s["tenant"], s["data_class"]) == ("fable-eu", "pii") for s in impossible)
    assert {tuple(s["rule_ids"]) for s in impossible} == {("eu-residency", "pii-eu-strict", "fable-eu2")}
    assert {s["conflict"] for s in impossible} == {"zone_prefix"}


def test_unsatisfiable_rules_name_the_labels_a_node_would_need():
    from agentic_ray.policies import NodeAttrs, parse_policy

    policy = parse_policy(
        """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: labels}
classes: {standard: {priority: 0, budget_ms: 100}}
default_class: standard
rules:
  - {id: eu-gpu, match: {data_class: pii}, require: {zones: [eu-west, eu-north], accelerators: [gpu]}}
  - {id: rack, match: {data_class: pci}, require: {labels: {rack: [r2, r1]}}}
  - {id: soft, match: {data_class: pii}, prefer: {accelerators: [gpu]}}
"""
    )
    cpu_eu = NodeAttrs("n1", "eu-west", "cpu", {"rack": "r1"})
    assert [r["rule_id"] for r in policy.unsatisfiable_rules([cpu_eu])] == ["eu-gpu"]
    (rule,) = policy.unsatisfiable_rules([cpu_eu])
    assert rule["require"] == {"zones": ["eu-north", "eu-west"], "accelerators": ["gpu"]}
    labels = "zone=eu-north,accelerator=gpu"
    assert rule["hint"] == f"label a node {labels} (ray start --labels {labels})"
    bare = NodeAttrs("n2")
    assert [r["rule_id"] for r in policy.unsatisfiable_rules([bare])] == ["eu-gpu", "rack"]
    assert policy.unsatisfiable_rules([bare])[1]["hint"].startswith("label a node rack=r1 ")
    assert policy.unsatisfiable_rules([cpu_eu, NodeAttrs("n3", "eu-north", "gpu")]) == []
