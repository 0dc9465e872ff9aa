"""classify / allows / prefers / explain on the example platform policy and the built-in default."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import agentic_ray.policies as policies
from agentic_ray.errors import PolicyError
from agentic_ray.policies import (
    Classification,
    NodeAttrs,
    RequestMeta,
    Shedding,
    StageBudget,
    default_policy,
    load_policy,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


@pytest.fixture(scope="module")
def platform():
    return load_policy(EXAMPLES / "platform.yaml")


def test_public_api_is_pinned() -> None:
    expected = {
        "BreakerSettings", "Classification", "CompiledRule", "NodeAttrs", "NodeSelector", "Policy",
        "PolicyChange", "PolicySpec", "QosClass", "RequestMeta", "RetrySettings", "Shedding", "StageBudget",
        "Tenant", "Workflow", "default_policy", "default_policy_text", "diff_policies", "load_policy",
        "parse_policy", "policy_json_schema",
    }  # fmt: skip
    assert set(policies.__all__) == expected
    assert all(hasattr(policies, name) for name in expected)


def test_default_policy() -> None:
    policy = default_policy()
    assert policy.default_class == "standard"
    assert [(c.name, c.priority, c.budget_ms, c.shedding) for c in policy.classes.values()] == [
        ("critical", 0, 100.0, Shedding.NEVER),
        ("standard", 1, 500.0, Shedding.WHEN_OVERLOADED),
        ("sheddable", 2, 2000.0, Shedding.FIRST),
    ]
    assert not policy.tenants and not policy.rules and policy.version == f"sha256:{policy.sha256[:12]}"
    decision = policy.classify(RequestMeta(tenant="anyone", model="m"), now=100.0)
    assert decision.qos.name == "standard" and decision.deadline == pytest.approx(100.5)
    assert decision.allows(NodeAttrs(zone="anywhere", accelerator="tpu"))
    assert policy.classify(RequestMeta(qos="critical", budget_ms=40), now=0).deadline == pytest.approx(0.04)


def test_class_and_budget_resolution(platform) -> None:
    c = platform.classify(RequestMeta(tenant="acme-eu"), now=10.0)
    assert (c.qos.name, c.budget_ms, c.class_source) == ("critical", 150.0, "tenant:acme-eu")
    assert c.deadline == pytest.approx(10.15)
    c = platform.classify(RequestMeta(tenant="acme-eu", workflow="rag"), now=0)
    assert (c.qos.name, c.budget_ms) == ("standard", 1200.0)  # workflow's class beats the tenant's
    assert c.stages == (StageBudget("retrieve", 300.0), StageBudget("rerank", 100.0), StageBudget("generate", 720.0))
    c = platform.classify(RequestMeta(qos="sheddable", tenant="acme-eu", workflow="rag", budget_ms=600), now=0)
    assert c.qos.name == "sheddable" and c.budget_ms == 600.0
    assert [s.budget_ms for s in c.stages] == pytest.approx([150.0, 50.0, 360.0])  # scaled to the request budget
    c = platform.classify(RequestMeta(workflow="rag", stage="rerank"), now=1.0)
    # Out of a workflow run: retrieve is taken to have used its nominal 300 ms, so 900 ms are left, and
    # rerank gets its share of them, 100 / (100 + 720): its nominal 100 ms plus its part of the 80 ms slack.
    assert c.stage_share == pytest.approx(100 / 820) and c.workflow_budget_ms == 1200.0
    assert c.budget_ms == pytest.approx(900 * 100 / 820) and c.deadline == pytest.approx(1.0 + 0.9 * 100 / 820)
    assert len(c.stages) == 3 and c.stages[1].budget_ms == 100.0  # nominal budgets, for drift
    last = platform.classify(RequestMeta(workflow="rag", stage="generate"), now=0.0)
    assert last.stage_share == 1.0 and last.budget_ms == pytest.approx(1200 - 300 - 100)
    c = platform.classify(RequestMeta(workflow="chat", tenant="acme-eu"), now=0)  # no budget of its own: the class's
    assert (c.qos.name, c.budget_ms, c.stages[1].budget_ms) == ("critical", 150.0, 120.0)
    assert c.qos.queue_bound == 32 and c.qos.max_queue_wait_ms == 30 and c.qos.hedge_after_ms == 60


@pytest.mark.parametrize(
    ("request_meta", "word"),
    [
        (RequestMeta(qos="gold"), "gold"),
        (RequestMeta(tenant="nobody"), "nobody"),
        (RequestMeta(workflow="nope"), "nope"),
        (RequestMeta(workflow="rag", stage="fly"), "fly"),
        (RequestMeta(stage="generate"), "generate"),
    ],
)
def test_unknown_names_raise_policy_error(platform, request_meta, word) -> None:
    with pytest.raises(PolicyError, match=word):
        platform.classify(request_meta, now=0)


def test_residency_and_gpu_rules(platform) -> None:
    c = platform.classify(RequestMeta(tenant="bolt-eu", model="llama-3-70b-instruct", data_class="pii"), now=0)
    assert c.rule_ids == ("eu-residency", "pii-eu-strict", "secret-no-spot", "gpu-llama-70b")
    good = NodeAttrs("n1", "eu-west-1a", "h100", {"capacity": "on-demand"})
    assert c.allows(good) and not c.refusing_rules(good)
    wrong_zone = NodeAttrs("n2", "eu-west-2a", "h100", {"capacity": "on-demand"})
    assert not c.allows(wrong_zone) and c.refusing_rules(wrong_zone) == ("pii-eu-strict",)
    us = NodeAttrs("n3", "us-east-1a", "cpu", {"capacity": "spot"})
    assert c.refusing_rules(us) == ("eu-residency", "pii-eu-strict", "secret-no-spot", "gpu-llama-70b")
    assert c.allowing_rules(good) == dict.fromkeys(c.rule_ids, True)
    us_req = platform.classify(RequestMeta(tenant="echo-us", model="bge-small"), now=0)
    assert us_req.rule_ids == ("us-residency", "cpu-embeddings-prefer")
    assert us_req.allows(NodeAttrs(zone="us-east-1b")) and not us_req.allows(NodeAttrs(zone="eu-west-1a"))
    assert us_req.prefers(NodeAttrs(zone="us-east-1b", accelerator="cpu")) == 1
    assert us_req.prefers(NodeAttrs(zone="us-east-1b", accelerator="l4")) == 0


def test_constraints_and_explain_name_the_rules(platform) -> None:
    c = platform.classify(RequestMeta(tenant="acme-eu", model="mixtral-8x7b"), now=0)
    cons = c.constraints()
    assert cons["require"] == {
        "accelerators": ["a100", "h100", "l4"],
        "labels": {"capacity": ["on-demand"]},
        "zone_prefix_all_of": [["eu-west"], ["eu-west-1"]],
    }
    assert set(cons["prefer"]) == {"critical-prefer-warm", "acme-dedicated"}
    report = c.explain(NodeAttrs(zone="eu-west-1c", accelerator="l4"))
    assert report["policy"] == {"name": "platform", "version": "2026.11.1", "sha256": platform.sha256}
    assert report["rule_ids"] == list(c.rule_ids)
    assert [r["id"] for r in report["rules"]] == list(c.rule_ids)
    assert report["allowed"] is False and report["refused_by"] == ["critical-on-demand"]


def test_decision_carries_policy_identity(platform) -> None:
    c = platform.classify(RequestMeta(), now=0)
    assert (c.policy_name, c.policy_version, c.policy_sha256) == ("platform", "2026.11.1", platform.sha256)
    assert len(platform.sha256) == 64


def test_cached_and_uncached_results_agree(platform) -> None:
    req = RequestMeta(tenant="contoso-us", model="sdxl-turbo", data_class="phi")
    first = platform.classify(req, now=1.0)
    second = platform.classify(req, now=2.0)
    assert first.rule_ids == second.rule_ids and second.deadline == pytest.approx(2.8)
    fresh = load_policy(EXAMPLES / "platform.yaml").classify(req, now=2.0)
    assert fresh == second


def test_classification_and_policy_pickle(platform) -> None:
    c = platform.classify(RequestMeta(tenant="bolt-eu", model="llama-3-70b", data_class="pii"), now=5.0)
    clone = pickle.loads(pickle.dumps(c))
    assert isinstance(clone, Classification) and clone == c
    nodes = [NodeAttrs(zone=z, accelerator=a, labels={"capacity": "on-demand"})
             for z in ("eu-west-1a", "us-east-1a") for a in ("h100", "cpu")]  # fmt: skip
    allows = pickle.loads(pickle.dumps(c.allows))  # a bound method survives too
    assert [allows(n) for n in nodes] == [c.allows(n) for n in nodes] == [True, False, False, False]
    p2 = pickle.loads(pickle.dumps(platform))
    assert p2.sha256 == platform.sha256 and p2.classify(RequestMeta(tenant="bolt-eu"), 0).rule_ids == ("eu-residency",)
