"""Token budgets of a class (``ttft_ms``, ``tpot_ms``): validated like every budget, compiled onto the
class, shown by ``policy explain``, and left out of the content hash when unset."""

from __future__ import annotations

import json
import textwrap

import pytest

from agentic_ray.cli import main
from agentic_ray.errors import PolicyValidationError
from agentic_ray.policies import RequestMeta, diff_policies, parse_policy

HEAD = """\
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: t}
default_class: chat
"""


def _problems(classes: str) -> dict[str, str]:
    with pytest.raises(PolicyValidationError) as info:
        parse_policy(HEAD + textwrap.dedent(classes), source="p.yaml")
    return {p.path: p.reason for p in info.value.problems}


def test_token_budgets_compile_onto_the_class() -> None:
    policy = parse_policy(HEAD + "classes:\n  chat: {priority: 0, budget_ms: 20000, ttft_ms: 500, tpot_ms: 40.5}\n")
    chat = policy.classes["chat"]
    assert (chat.ttft_ms, chat.tpot_ms) == (500.0, 40.5)
    assert policy.classify(RequestMeta(), 0.0).qos.ttft_ms == 500.0


@pytest.mark.parametrize(
    ("value", "needle"),
    [("0", "greater than 0"), ("-5", "greater than 0"), ("'300'", "number"), (".inf", "finite"), ("true", "number")],
)
def test_bad_token_budgets_name_the_field(value: str, needle: str) -> None:
    for field in ("ttft_ms", "tpot_ms"):
        problems = _problems(f"classes:\n  chat: {{priority: 0, budget_ms: 1000, {field}: {value}}}\n")
        assert f"classes.chat.{field}" in problems, problems
        assert needle in problems[f"classes.chat.{field}"].lower(), problems


def test_ttft_above_the_stream_budget_is_refused() -> None:
    problems = _problems("classes:\n  chat: {priority: 0, budget_ms: 1000, ttft_ms: 1500}\n")
    assert problems == {"classes.chat.ttft_ms": "1500 is above the class budget 1000 (the whole stream's)"}


def test_unset_token_budgets_keep_the_content_hash_and_diff_as_added() -> None:
    plain = parse_policy(HEAD + "classes:\n  chat: {priority: 0, budget_ms: 1000}\n")
    assert "ttft_ms" not in plain.canonical()["classes"]["chat"]
    # the hash this policy had before classes could set token budgets (computed on 4899c11)
    assert plain.sha256 == "2d0716e965ece2aa44b329f134718d1921054eba058169bfd7d097cd4ccff763"
    timed = parse_policy(HEAD + "classes:\n  chat: {priority: 0, budget_ms: 1000, ttft_ms: 200}\n")
    assert timed.sha256 != plain.sha256
    assert [(c.kind, c.path) for c in diff_policies(plain, timed)] == [("added", "classes.chat.ttft_ms")]
    # the canonical form round-trips (pickling a policy rebuilds it from there)
    import pickle

    assert pickle.loads(pickle.dumps(timed)).classes["chat"].ttft_ms == 200.0
    assert pickle.loads(pickle.dumps(plain)).sha256 == plain.sha256


def test_explain_shows_the_token_budgets(tmp_path, capsys) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "classes:\n  chat: {priority: 0, budget_ms: 20000, ttft_ms: 500, tpot_ms: 40}\n")
    assert main(["policy", "explain", str(path)]) == 0
    assert "streams    ttft 500 ms, tpot 40 ms" in capsys.readouterr().out
    assert main(["policy", "explain", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stream"] == {"ttft_ms": 500.0, "tpot_ms": 40.0}
