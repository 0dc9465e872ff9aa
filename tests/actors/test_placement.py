"""Node choice from the cached view, and the residency-keeping fallback. Pure: real policies, no Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentic_ray.control._placement import NodeView, choose_node, fallback_placement, node_attrs_from_ray
from agentic_ray.errors import NoEligibleNode
from agentic_ray.policies import NodeAttrs, RequestMeta, default_policy, load_policy

FRAUD = load_policy(Path(__file__).resolve().parents[2] / "examples" / "policies" / "fraud.yaml")


def _node(node_id, zone, accel="cpu", inflight=0, cpus=2, closed=(), extra=None):
    labels = {"zone": zone, "accelerator": accel}
    resources = {"CPU": float(cpus), **(extra or {})}
    return NodeView(NodeAttrs(node_id, zone, accel, labels), resources, inflight, frozenset(closed))


NODES = [_node("eu1", "eu-west"), _node("eu2", "eu-west"), _node("us1", "us-east", "gpu", extra={"fake_gpu": 1})]


def _classify(**meta):
    return FRAUD.classify(RequestMeta(**meta), now=0.0)


def test_residency_only_eu_nodes_and_load_spreads():
    c = _classify(tenant="bank-eu", data_class="pii")
    placed: dict[str, int] = {}
    for i in range(40):
        p = choose_node(c, NODES, qos="critical", local_load=placed, rotation=i)
        placed[p.node_id] = placed.get(p.node_id, 0) + 1
        assert p.rule_ids == ("eu-residency",)
    assert set(placed) == {"eu1", "eu2"} and placed["eu1"] == placed["eu2"] == 20


def test_least_loaded_and_open_gate_win():
    c = _classify(tenant="bank-eu")
    nodes = [_node("eu1", "eu-west", inflight=20), _node("eu2", "eu-west", inflight=1), NODES[2]]
    assert choose_node(c, nodes, qos="critical").node_id == "eu2"
    nodes = [_node("eu1", "eu-west", inflight=20), _node("eu2", "eu-west", inflight=1, closed={"critical"})]
    assert choose_node(c, nodes, qos="critical").node_id == "eu1"


def test_consecutive_tasks_stay_on_the_local_node_in_batches():
    c = _classify(tenant="bank-eu")
    placed: dict[str, int] = {}
    order = []
    for _ in range(24):
        p = choose_node(c, NODES, qos="critical", local_load=placed, local_node_id="eu2")
        placed[p.node_id] = placed.get(p.node_id, 0) + 1
        order.append(p.node_id)
    # 2 CPUs x 4 per CPU: batches of 8, the caller's own node first.
    assert order == ["eu2"] * 8 + ["eu1"] * 8 + ["eu2"] * 8


def test_preference_ranks_before_load():
    c = _classify(tenant="bank-us", model="fraud-gbt-2")
    nodes = [_node("us-cpu", "us-east"), _node("us-gpu", "us-east", "gpu", inflight=10)]
    assert choose_node(c, nodes, qos="critical").node_id == "us-gpu"


def test_no_eligible_node_names_rules_and_task_constraints():
    c = _classify(tenant="bank-eu")
    with pytest.raises(NoEligibleNode) as info:
        choose_node(c, NODES, qos="critical", accelerator="gpu")
    assert info.value.rule_ids == ("eu-residency", "task.accelerator")
    with pytest.raises(NoEligibleNode) as info:
        choose_node(c, NODES, qos="critical", resources={"fake_gpu": 1})
    assert "task.resources" in info.value.rule_ids
    dead = [NodeView(n.attrs, n.resources, alive=False) for n in NODES]
    with pytest.raises(NoEligibleNode):
        choose_node(default_policy().classify(RequestMeta(), 0.0), dead, qos="standard")


def test_resources_filter_by_total_capacity():
    c = _classify(tenant="bank-us")
    assert choose_node(c, NODES, qos="critical", resources={"fake_gpu": 1}).node_id == "us1"


def test_fallback_keeps_residency_with_a_zone_selector():
    p = fallback_placement(_classify(tenant="bank-eu", data_class="pii"), NODES, qos="critical")
    assert p.node_id is None and p.label_selector == {"zone": "eu-west"} and p.reason == "fallback"
    mixed = [*NODES, _node("eu3", "eu-central")]
    assert fallback_placement(_classify(tenant="bank-eu"), mixed, qos="critical").label_selector == {
        "zone": "in(eu-central,eu-west)"
    }


def test_fallback_is_plain_ray_when_the_policy_allows_every_node():
    p = fallback_placement(_classify(), NODES, qos="standard")
    assert p.node_id is None and p.label_selector is None


def test_fallback_refuses_when_no_known_node_is_allowed():
    with pytest.raises(NoEligibleNode):
        fallback_placement(_classify(tenant="bank-eu"), [NODES[2]], qos="critical")


def test_node_attrs_from_ray_labels():
    a = node_attrs_from_ray("n1", {"zone": "eu-west", "accelerator": "gpu"}, {"CPU": 2})
    assert (a.zone, a.accelerator) == ("eu-west", "gpu")
    b = node_attrs_from_ray("n2", {"ray.io/availability-zone": "us-east-1a"}, {"GPU": 1})
    assert (b.zone, b.accelerator) == ("us-east-1a", "gpu")
    c = node_attrs_from_ray("n3", {}, {"CPU": 4})
    assert (c.zone, c.accelerator) == ("default", "cpu")


def test_exact_selector_makes_the_affinity_soft():
    c = _classify(tenant="bank-eu", data_class="pii")
    p = choose_node(c, NODES, qos="critical")
    assert p.soft and p.label_selector == {"zone": "eu-west"}
    # No rule: soft affinity without a selector (Ray may re-place anywhere).
    p = choose_node(_classify(), NODES, qos="standard")
    assert p.soft and p.label_selector is None


def test_inexact_selector_pins_hard():
    # A rule on a label the nodes do not carry cannot be written as a selector that Ray would check.
    from agentic_ray.policies import parse_policy

    text = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "fraud.yaml").read_text()
    text = text.replace(
        "rules:\n", "rules:\n  - id: gpu-only-eu\n    match: {tenant: bank-eu}\n    require: {accelerators: [gpu]}\n"
    )
    policy = parse_policy(text, "inline")
    nodes = [
        NodeView(NodeAttrs("a", "eu-west", "gpu", {"zone": "eu-west"}), {"CPU": 2.0}),
        NodeView(NodeAttrs("b", "eu-west", "cpu", {"zone": "eu-west"}), {"CPU": 2.0}),
    ]
    c = policy.classify(RequestMeta(tenant="bank-eu"), 0.0)
    p = choose_node(c, nodes, qos="critical")
    assert p.node_id == "a" and not p.soft and p.label_selector is None
    f = fallback_placement(c, nodes, qos="critical")
    assert f.node_id == "a" and f.reason == "fallback_pinned" and not f.soft


def test_selector_narrows_by_accelerator_only_when_zones_leak():
    from agentic_ray.control._placement import label_selector_for

    nodes = [*NODES, _node("us2", "us-east")]
    c = _classify(tenant="bank-us")
    assert label_selector_for(c, nodes) == ({"zone": "us-east"}, True)
    assert label_selector_for(c, nodes, accelerator="gpu") == ({"zone": "us-east", "accelerator": "gpu"}, True)
