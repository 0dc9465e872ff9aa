"""The wire metadata ``agentic_ray.serve.call`` sends, and how a carried deadline meets the class's.
No Ray: manual times."""

from __future__ import annotations

from agentic_ray._budget import Deadline, deadline_scope
from agentic_ray.policies import RequestMeta, default_policy
from agentic_ray.serve._call import CALL_ID, call_meta
from agentic_ray.serve._meta import to_request


def test_budget_ms_becomes_an_absolute_deadline_and_each_call_gets_an_id():
    kwargs = {"qos": "critical", "budget_ms": 80, "other": 1}
    meta = call_meta(kwargs, now=100.0)
    assert kwargs == {"other": 1}  # the agentic keywords moved into the metadata
    assert meta["deadline"] == 100.08 and meta["qos"] == "critical"
    assert meta[CALL_ID] != call_meta({}, now=100.0)[CALL_ID]


def test_the_enclosing_scope_wins_when_it_is_earlier_and_only_then():
    with deadline_scope(Deadline(100.05)):
        assert call_meta({"budget_ms": 80}, now=100.0)["deadline"] == 100.05
        assert call_meta({"budget_ms": 20}, now=100.0)["deadline"] == 100.02
        assert call_meta({}, now=100.0)["deadline"] == 100.05
    assert "deadline" not in call_meta({}, now=100.0)  # no scope, no budget: the class decides


def test_a_carried_deadline_can_shorten_the_class_budget_but_never_extend_it():
    policy = default_policy()
    classification = policy.classify(RequestMeta(qos="critical"), 100.0)
    own = classification.deadline
    assert to_request(classification, "r1", 100.0, own - 0.05, None).deadline == own - 0.05
    assert to_request(classification, "r2", 100.0, own + 60.0, None).deadline == own
    assert to_request(classification, "r3", 100.0, None, None).deadline == own
