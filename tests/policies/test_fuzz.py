"""Fuzzing the policy loader: random mutations of valid YAML raise only ``PolicyError`` (never a crash of
another type), and a document that loads is classified without unexpected errors (hypothesis)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentic_ray.errors import PolicyError
from agentic_ray.policies import RequestMeta, parse_policy

SOURCES = [
    p.read_text() for p in sorted((Path(__file__).resolve().parents[2] / "examples" / "policies").glob("*.yaml"))
]
TOKENS = ["", " ", "\n", ":", "-", "{", "}", "[", "]", ",", "'", '"', "*", "&a", "!!python/object:os.system",
          "~", "null", "true", "1e309", "-1", "0", "nan", ".inf", "\t", "#", "|", ">", "%", "@", "\\u0000", "é",
          "??"]  # fmt: skip


@st.composite
def mutated_policy(draw) -> str:
    text = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 6))):
        if not text:
            break
        pos = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        token = draw(st.sampled_from(TOKENS) | st.text(max_size=4))
        if op == "insert":
            text = text[:pos] + token + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 20)) :]
        else:
            text = text[:pos] + token + text[pos + len(token) :]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_policy(), st.sampled_from([None, "critical", "standard", "sheddable"]),
       st.sampled_from([None, "acme-eu", "delta-us", "bank-eu"]), st.sampled_from([None, 1.0, 1e9]))  # fmt: skip
def test_mutated_policies_only_raise_policy_errors(text, qos, tenant, budget):
    try:
        policy = parse_policy(text, source="<fuzz>")
    except PolicyError:
        return
    with contextlib.suppress(PolicyError):
        policy.classify(RequestMeta(qos=qos, tenant=tenant, budget_ms=budget, data_class="pii"), now=0.0)
