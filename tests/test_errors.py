"""The exception tree: hierarchy, messages and pickling (errors cross Ray process boundaries)."""

from __future__ import annotations

import pickle

import pytest

from agentic_ray import errors as E


def test_tree():
    assert issubclass(E.PolicyValidationError, E.PolicyError)
    assert issubclass(E.PolicyValidationError, E.ConfigValidationError)
    assert issubclass(E.ScenarioValidationError, E.ConfigValidationError)
    assert not issubclass(E.ScenarioValidationError, E.PolicyError)
    for cls in (E.BudgetExhausted, E.Overloaded, E.NoEligibleReplica, E.NoEligibleNode):
        assert issubclass(cls, E.AdmissionError)
    for cls in (E.ConfigValidationError, E.PolicyError, E.AdmissionError, E.CircuitOpen):
        assert issubclass(cls, E.AgenticRayError)


def test_problem_format():
    assert E.Problem("classes.critical.budget_ms", "must be > 0", 7, "p.yaml").format() == (
        "p.yaml:7: classes.critical.budget_ms: must be > 0"
    )
    assert E.Problem("", "empty file", None, "p.yaml").format() == "p.yaml: (document): empty file"


@pytest.mark.parametrize(
    "exc",
    [
        E.PolicyValidationError([E.Problem("a.b", "bad", 3, "f.yaml"), E.Problem("c", "worse")], "f.yaml"),
        E.ScenarioValidationError([E.Problem("x", "y")]),
        E.Overloaded("queue full", reason="queue_full", rule_ids=("r1",), retry_after_s=0.5),
        E.BudgetExhausted("deadline passed while queued", rule_ids=("r2", "r3")),
        E.NoEligibleNode("no node in eu-", rule_ids=("eu-pii",)),
        E.NoEligibleReplica(),
        E.CircuitOpen("replica-1", retry_after_s=2.0),
        E.PolicyError("unknown class 'gold'"),
    ],
)
def test_pickle_round_trip_keeps_fields(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert vars(back) == vars(exc)


def test_admission_error_message_names_reason_rules_and_retry():
    e = E.Overloaded("queue full for sheddable", reason="queue_full", rule_ids=("a", "b"), retry_after_s=1.5)
    assert e.reason == "queue_full" and e.retry_after_s == 1.5 and e.rule_ids == ("a", "b")
    assert "rules=a,b" in str(e) and "retry_after_s=1.5" in str(e)
    assert E.BudgetExhausted().reason == "budget_exhausted"
