"""``@agentic_ray.actor`` / ``@agentic_ray.method`` options, checked without Ray: typed errors at
decoration, and the classification of an actor and its methods' defaults against a policy."""

from __future__ import annotations

import pytest

import agentic_ray
from agentic_ray.errors import EntitlementError, NoEligibleNode, PolicyError
from agentic_ray.policies import parse_policy

POLICY = parse_policy(
    """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: actors, version: "1"}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 100, shedding: never}
  standard: {priority: 1, budget_ms: 800}
  sheddable: {priority: 2, budget_ms: 5000, shedding: first}
tenants:
  t-eu: {region: eu-west, class: standard}
entitlements: {anonymous: {allowed_classes: [critical, standard, sheddable]}}
rules:
  - id: eu-residency
    match: {tenant_region: "eu-*"}
    require: {zone_prefix: "eu-"}
  - id: critical-on-gpu
    match: {class: critical}
    require: {accelerators: [gpu]}
""",
    "test",
)


class Plain:
    def ping(self):
        return "pong"


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_queued_is_checked_at_decoration_and_in_options(bad):
    with pytest.raises(ValueError, match="max_queued"):
        agentic_ray.actor(max_queued=bad)(Plain)
    with pytest.raises(ValueError, match="max_queued"):
        agentic_ray.actor(Plain).options(max_queued=bad)


def test_other_bad_options_are_typed_errors_at_decoration():
    with pytest.raises(ValueError, match="budget_ms"):
        agentic_ray.actor(budget_ms=0)(Plain)
    with pytest.raises(ValueError, match="max_concurrency"):
        agentic_ray.actor(max_concurrency=0)(Plain)
    for placement in ({"label_selector": {"zone": "eu-west"}}, {"scheduling_strategy": "SPREAD"}):
        with pytest.raises(ValueError, match="placement"):
            agentic_ray.actor(**placement)(Plain)
    with pytest.raises(TypeError, match="qos"):
        agentic_ray.actor(qos=1)(Plain)
    with pytest.raises(TypeError, match="classes"):
        agentic_ray.actor(lambda: None)
    with pytest.raises(ValueError, match="budget_ms"):
        agentic_ray.method(budget_ms=-1)
    with pytest.raises(TypeError, match="qos"):
        agentic_ray.method(qos=["critical"])
    with pytest.raises(TypeError, match=r"\.remote"):
        agentic_ray.actor(Plain)()


def test_method_defaults_fall_back_key_by_key_to_the_actor():
    class Mixed:
        @agentic_ray.method(qos="sheddable")
        def background(self): ...

        @agentic_ray.method(budget_ms=50)
        def quick(self): ...

        def plain(self): ...

    cls = agentic_ray.actor(qos="standard", budget_ms=300)(Mixed)
    _, defaults = cls._classify_all(POLICY, 0.0)
    assert defaults == {
        "": ("standard", 300.0),
        "background": ("sheddable", 300.0),
        "quick": ("standard", 50.0),
        "plain": ("standard", 300.0),
    }


def test_a_method_class_needing_another_placement_is_refused_at_creation():
    class Urgent:
        @agentic_ray.method(qos="critical")
        def now(self): ...

    with pytest.raises(NoEligibleNode) as info:
        agentic_ray.actor(qos="standard")(Urgent)._classify_all(POLICY, 0.0)
    assert info.value.rule_ids == ("critical-on-gpu",)
    # placed as critical (on a gpu node), its methods may use any class
    classification, _ = agentic_ray.actor(qos="critical")(Urgent)._classify_all(POLICY, 0.0)
    assert classification.rule_ids == ("critical-on-gpu",)


def test_entitlement_and_unknown_names_are_refused():
    with pytest.raises(EntitlementError):
        agentic_ray.actor(tenant="t-eu", qos="critical")(Plain)._classify_all(POLICY, 0.0)
    classification, _ = agentic_ray.actor(tenant="t-eu")(Plain)._classify_all(POLICY, 0.0)
    assert classification.rule_ids == ("eu-residency",)
    with pytest.raises(PolicyError):
        agentic_ray.actor(qos="nope")(Plain)._classify_all(POLICY, 0.0)
    with pytest.raises(PolicyError):
        agentic_ray.actor(tenant="nobody")(Plain)._classify_all(POLICY, 0.0)
