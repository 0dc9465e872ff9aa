"""The wire metadata ``agentic_ray.serve.call`` sends, and how a carried deadline meets the class's.
No Ray: manual times."""

from __future__ import annotations

import multiprocessing
import re

import pytest

from agentic_ray._budget import Deadline, deadline_scope
from agentic_ray.policies import RequestMeta, default_policy
from agentic_ray.serve._call import CALL_ID, call_meta, new_call_id
from agentic_ray.serve._meta import class_and_deadline, to_request


def test_budget_ms_becomes_an_absolute_deadline_and_each_call_gets_an_id():
    kwargs = {"qos": "critical", "budget_ms": 80, "other": 1}
    meta = call_meta(kwargs, now=100.0)
    assert kwargs == {"other": 1}  # the agentic keywords moved into the metadata
    assert meta["deadline"] == 100.08 and meta["qos"] == "critical"
    assert meta[CALL_ID] != call_meta({}, now=100.0)[CALL_ID]


def _child_ids(queue: multiprocessing.Queue) -> None:
    queue.put([new_call_id() for _ in range(3)])


def test_call_ids_are_unique_in_a_process_and_across_a_fork():
    ids = [new_call_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_ids, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(30)
    assert not set(theirs) & set(ids)
    assert {i[:16] for i in theirs} != {ids[0][:16]}  # the child drew its own prefix, not the parent's


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


RAG = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: rag}
default_class: standard
classes:
  standard: {priority: 1, budget_ms: 1000}
workflows:
  rag:
    budget_ms: 1000
    stages: [{name: retrieve, share: 0.2}, {name: rerank, share: 0.3}, {name: generate, share: 0.5}]
"""


def test_a_stage_inside_a_workflow_run_gets_its_share_of_what_the_run_has_left():
    from agentic_ray._budget import workflow_scope
    from agentic_ray.policies import parse_policy

    policy = parse_policy(RAG)
    rerank = policy.classify(RequestMeta(workflow="rag", stage="rerank"), 0.0)
    assert rerank.stage_share == pytest.approx(0.375) and rerank.budget_ms == pytest.approx(300.0)  # 800 ms x 0.375
    # In a run with 600 ms left (retrieve was quick), rerank gets 0.375 of them: 225 ms from now.
    assert to_request(rerank, "r", 10.0, None, None, 10.6).deadline == pytest.approx(10.0 + 0.6 * 0.375)
    # A run deadline further away than the whole workflow budget cannot stretch the stage.
    assert to_request(rerank, "r", 10.0, None, None, 99.0).deadline == pytest.approx(10.0 + 1.0 * 0.375)
    with workflow_scope("rag", 10.6):
        meta = call_meta({"workflow": "rag"}, now=10.0)
    assert meta["workflow_deadline"] == 10.6 and meta["deadline"] == 10.6
    assert "workflow_deadline" not in call_meta({"workflow": "rag"}, now=10.0)  # no run: none carried


def test_the_door_and_the_handle_throttle_keep_the_earlier_of_the_class_and_the_carried_deadline():
    policy = default_policy()
    budget_s = policy.classes["critical"].budget_ms / 1000.0
    qos, deadline = class_and_deadline(policy, {"qos": "critical"}, 100.0)
    assert qos.name == "critical" and deadline == pytest.approx(100.0 + budget_s)
    earlier = 100.0 + budget_s / 2
    assert class_and_deadline(policy, {"qos": "critical", "deadline": earlier}, 100.0)[1] == earlier
    later = 100.0 + budget_s * 2  # a carried deadline never stretches the class's
    assert class_and_deadline(policy, {"qos": "critical", "deadline": later}, 100.0)[1] == pytest.approx(
        100.0 + budget_s
    )


def test_early_refusal_mode_reads_its_variable_and_names_a_bad_value_once(caplog):
    from agentic_ray.serve import _handle_throttle as throttle

    assert throttle.early_mode(None) == "room"  # the default: no room for the class anywhere
    assert [throttle.early_mode(v) for v in ("0", "room", "all")] == ["0", "room", "all"]
    with caplog.at_level("WARNING", logger="agentic_ray.serve._handle_throttle"):
        assert throttle.early_mode("true-ish") == "room"
        assert throttle.early_mode("true-ish") == "room"
    warnings = [r.getMessage() for r in caplog.records if "AGENTIC_CALL_EARLY_REFUSAL" in r.getMessage()]
    assert len(warnings) == 1 and "'true-ish'" in warnings[0] and "0, room, all" in warnings[0]
