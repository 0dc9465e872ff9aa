"""The example KubeRay manifest labels its Ray nodes so that the example policies can place everything:
every placement rule, and every tenant's requests in every class (with and without PII), have a node."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from agentic_ray.policies import NodeAttrs, RequestMeta, load_policy

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "examples" / "kuberay" / "raycluster.yaml"
POLICIES = [REPO / "examples" / "policies" / name for name in ("platform.yaml", "fraud.yaml")]


def _nodes() -> dict[str, NodeAttrs]:
    spec = yaml.safe_load(MANIFEST.read_text())["spec"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    out = {}
    for name, group in groups:
        raw = group["rayStartParams"]["labels"]
        labels = dict(pair.split("=", 1) for pair in raw.split(","))
        out[name] = NodeAttrs(node_id=name, zone=labels.pop("zone"), accelerator=labels.pop("accelerator"),
                              labels=labels)  # fmt: skip
    return out


def test_every_group_has_zone_and_accelerator_labels():
    nodes = _nodes()
    assert len(nodes) >= 4
    assert {n.zone[:7] for n in nodes.values()} >= {"eu-west", "us-east"}


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_every_rule_can_be_satisfied_by_some_node(path):
    policy = load_policy(path)
    nodes = _nodes().values()
    for rule in policy.rules:
        if not rule.require.empty:
            assert any(rule.require.holds(n) for n in nodes), f"{path.name}: no node satisfies rule {rule.id}"


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_every_tenant_class_and_data_class_has_an_allowed_node(path):
    policy = load_policy(path)
    nodes = list(_nodes().values())
    impossible = {(s["tenant"], s["class"], s["data_class"]) for s in policy.unplaceable_shapes() if not s["workflow"]}
    checked = 0
    for tenant, qos, data in itertools.product(policy.tenants, policy.classes, (None, "pii")):
        if (tenant, qos, data) in impossible:
            continue  # the policy itself forbids it everywhere ('policy check' warns); not the manifest's fault
        c = policy.classify(RequestMeta(tenant=tenant, qos=qos, data_class=data), 0.0, check_entitlement=False)
        assert any(c.allows(n) for n in nodes), f"{path.name}: nowhere to run {tenant}/{qos}/{data}"
        checked += 1
    assert checked >= len(policy.tenants) * len(policy.classes)


def test_every_ray_container_sets_what_the_serve_proxies_read():
    """A cluster's proxies get no job environment: the front door, the gRPC transport and the workers'
    niceness that ``agentic_ray.init()`` sets up for a local Ray must be in every node's container."""
    from agentic_ray._ray_env import prepare

    spec = yaml.safe_load(MANIFEST.read_text())["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    containers = [c for g in groups for c in g["template"]["spec"]["containers"]]
    assert len(containers) == len(groups) >= 4
    wanted: dict[str, str] = {}
    prepare(wanted)
    for container in containers:
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert {k: env.get(k) for k in wanted} == wanted, container["name"]
