"""Differential test: the compiled evaluator agrees with the reference interpreter (``reference.py``).

Seeded generation: 25 random policies (random classes, tenants, workflows and 12-30 rules drawn from a
small vocabulary so that rules overlap) plus the example platform policy; 750 random requests per
policy (some naming unknown classes, tenants, workflows or stages: both must raise PolicyError), each
classified request checked against 4 random nodes: over 10,000 classifications, 40,000 node checks.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from agentic_ray.errors import EntitlementError, PolicyError, PolicyValidationError
from agentic_ray.policies import NodeAttrs, Policy, RequestMeta, load_policy, parse_policy
from tests.policies.reference import reference_allows, reference_classify, reference_prefers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"

REGIONS = ["eu-west-1", "eu-west-2", "us-east-1", "ap-south-1"]
REGION_GLOBS = ["eu-*", "us-*", "*-1", "ap*", "eu-west-?"]
DATA_CLASSES = ["pii", "phi", "public"]
MODEL_GLOBS = ["llama-*", "*-70b", "mix*", "gpt?", "bge-[a-m]*"]
MODELS = ["llama-3-70b", "llama-3-8b", "mixtral-8x7b", "gpt4", "bge-small", "bge-xl", "phi-3"]
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-2a", "us-east-1a", "ap-south-1a"]
PREFIXES = ["eu", "eu-west", "eu-west-1", "us", "ap"]
ACCELERATORS = ["cpu", "l4", "a100", "h100"]
LABELS = {"capacity": ["spot", "on-demand"], "pool": ["warm", "batch", "acme"]}


def _some(rng: random.Random, values: list[str], k: int = 2) -> list[str]:
    return rng.sample(values, rng.randint(1, min(k, len(values))))


def _selector(rng: random.Random, p: float) -> dict:
    sel: dict = {}
    if rng.random() < p:
        sel["zones"] = _some(rng, ZONES, 3)
    if rng.random() < p:
        sel["zone_prefix"] = _some(rng, PREFIXES)
    if rng.random() < p:
        sel["accelerators"] = _some(rng, ACCELERATORS, 3)
    if rng.random() < p:
        key = rng.choice(sorted(LABELS))
        sel["labels"] = {key: _some(rng, LABELS[key])}
    return sel


def random_policy_doc(rng: random.Random) -> dict:
    classes = {f"c{i}": {"priority": i, "budget_ms": rng.choice([50, 100, 250.5, 1000])} for i in range(3)}
    for c in classes.values():
        if rng.random() < 0.3:
            c["max_budget_ms"] = c["budget_ms"] * rng.choice([1.0, 2.0, 10.0])
    tenants = {}
    for i in range(rng.randint(0, 5)):
        tenants[f"t{i}"] = {"region": rng.choice(REGIONS)}
        if rng.random() < 0.3:
            tenants[f"t{i}"]["class"] = rng.choice(sorted(classes))
        if rng.random() < 0.3:
            tenants[f"t{i}"]["allowed_classes"] = _some(rng, sorted(classes))
        if rng.random() < 0.3:
            tenants[f"t{i}"]["max_budget_ms"] = rng.choice([30.0, 200.0, 5000.0])
        if rng.random() < 0.3:
            tenants[f"t{i}"]["on_excess"] = rng.choice(["refuse", "clamp"])
    entitlements: dict = {"on_excess": rng.choice(["refuse", "clamp"])}
    if rng.random() < 0.5:
        entitlements["anonymous"] = {"allowed_classes": _some(rng, sorted(classes), 3)}
    workflows = {}
    for i in range(rng.randint(0, 3)):
        wf: dict = {"stages": [{"name": "s0", "share": 0.3}, {"name": "s1", "budget_ms": 10}]}
        if rng.random() < 0.5:
            wf["class"] = rng.choice(sorted(classes))
        if rng.random() < 0.5:
            wf["budget_ms"] = rng.choice([300, 800])
        workflows[f"w{i}"] = wf
    rules = []
    for i in range(rng.randint(12, 30)):
        match: dict = {}
        if tenants and rng.random() < 0.25:
            match["tenant"] = _some(rng, sorted(tenants))
        if rng.random() < 0.25:
            match["tenant_region"] = _some(rng, REGION_GLOBS)
        if rng.random() < 0.3:
            match["data_class"] = _some(rng, DATA_CLASSES)
        if rng.random() < 0.3:
            match["model"] = _some(rng, MODEL_GLOBS)
        if workflows and rng.random() < 0.2:
            match["workflow"] = _some(rng, sorted(workflows))
        if rng.random() < 0.25:
            match["class"] = _some(rng, sorted(classes))
        rules.append({"id": f"r{i}", "match": match, "require": _selector(rng, 0.2), "prefer": _selector(rng, 0.3)})
    return {
        "apiVersion": "agentic-ray/v1",
        "kind": "Policy",
        "metadata": {"name": "random"},
        "default_class": rng.choice(sorted(classes)),
        "classes": classes,
        "tenants": tenants,
        "workflows": workflows,
        "rules": rules,
        "entitlements": entitlements,
        "data_classes": {d: {"requires_residency": rng.random() < 0.3} for d in DATA_CLASSES},
    }


def random_request(rng: random.Random, policy: Policy) -> RequestMeta:
    def maybe(values: list, p: float = 0.6):
        return rng.choice(values) if values and rng.random() < p else None

    workflow = maybe([*sorted(policy.workflows), "w-unknown"], 0.4)
    stage = None
    if workflow is not None and rng.random() < 0.4:
        stage = rng.choice(["s0", "s1", "s-unknown"])
    return RequestMeta(
        qos=maybe([*sorted(policy.classes), "c-unknown"], 0.3),
        budget_ms=maybe([20.0, 400.0, 1500.0], 0.3),
        tenant=maybe([*sorted(policy.tenants), "t-unknown"], 0.7),
        data_class=maybe([*DATA_CLASSES, "other"], 0.5),
        model=maybe(MODELS, 0.7),
        workflow=workflow,
        stage=stage,
    )


def random_node(rng: random.Random) -> NodeAttrs:
    labels = {k: rng.choice(v) for k, v in LABELS.items() if rng.random() < 0.6}
    return NodeAttrs(node_id="n", zone=rng.choice([*ZONES, "default"]), accelerator=rng.choice(ACCELERATORS),
                     labels=labels)  # fmt: skip


def with_stream_budgets(doc: dict, rng: random.Random) -> dict:
    """Token budgets on about half the classes (from their own ``rng``, so the rest of the generated
    policies stays as it was before classes could set them)."""
    for c in doc["classes"].values():
        if rng.random() < 0.5:
            c["ttft_ms"] = rng.choice([0.5, 1.0]) * c["budget_ms"]
        if rng.random() < 0.5:
            c["tpot_ms"] = rng.choice([5.0, 25.5, 100.0])
    return doc


def _policies() -> list[Policy]:
    rng = random.Random(20261125)
    stream_rng = random.Random(16)
    out = [load_policy(EXAMPLES / "platform.yaml")]
    while len(out) < 26:
        try:
            out.append(parse_policy(_dump(with_stream_budgets(random_policy_doc(rng), stream_rng))))
        except PolicyValidationError:
            continue  # a generated policy with statically contradictory rules: draw another
    return out


def _dump(doc: dict) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


def test_compiled_agrees_with_reference_on_seeded_requests_and_nodes() -> None:
    rng = random.Random(7)
    classified = errors = node_checks = allowed = 0
    matched_any = clamped = streams = 0
    refused: dict[str, int] = {}
    for policy in _policies():
        for _ in range(900):
            request = random_request(rng, policy)
            now = rng.uniform(0, 1000)
            try:
                expected = reference_classify(policy.spec, request, now)
            except PolicyError as exc:
                with pytest.raises(type(exc)) as info:
                    policy.classify(request, now)
                if isinstance(exc, EntitlementError):
                    assert (info.value.entitlement, info.value.holder) == (exc.entitlement, exc.holder), request
                    refused[exc.entitlement] = refused.get(exc.entitlement, 0) + 1
                errors += 1
                continue
            got = policy.classify(request, now)
            classified += 1
            assert got.qos.name == expected["class"], request
            assert math.isclose(got.budget_ms, expected["budget_ms"]), request
            assert math.isclose(got.deadline, expected["deadline"]), request
            assert [(s.name, round(s.budget_ms, 6)) for s in got.stages] == [
                (n, round(b, 6)) for n, b in expected["stages"]
            ], request
            assert list(got.rule_ids) == expected["rule_ids"], request
            assert (got.qos.ttft_ms, got.qos.tpot_ms) == (expected["ttft_ms"], expected["tpot_ms"]), request
            streams += got.qos.ttft_ms is not None
            matched_any += bool(got.rule_ids)
            clamped += got.entitlement is not None and got.entitlement.verdict == "clamped"
            for _ in range(4):
                node = random_node(rng)
                ok = reference_allows(policy.spec, expected["rule_ids"], node)
                assert got.allows(node) == ok, (request, node)
                assert (not got.refusing_rules(node)) == ok
                assert got.prefers(node) == reference_prefers(policy.spec, expected["rule_ids"], node)
                node_checks += 1
                allowed += ok
    assert classified + errors >= 10_000
    assert classified >= 10_000 and node_checks >= 40_000
    # The generated cases exercise both outcomes, not only the trivial one.
    assert 0.1 < allowed / node_checks < 0.95
    assert matched_any > classified // 2
    # Entitlements were exercised every way: refused for class, budget and residency, and clamped.
    assert min(refused.get(k, 0) for k in ("class", "budget", "residency")) >= 100, refused
    assert clamped >= 500, clamped
    assert 0.2 < streams / classified < 0.8, streams  # classes with and without token budgets
