"""The caller's estimate of its own outstanding tasks per node, and what placement does with it.
Pure: manual clock, real policy, no Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentic_ray.control._outstanding import OutstandingEstimate
from agentic_ray.control._placement import NodeView, choose_node
from agentic_ray.errors import AdmissionError, Overloaded
from agentic_ray.policies import NodeAttrs, RequestMeta, load_policy

FRAUD = load_policy(Path(__file__).resolve().parents[2] / "examples" / "policies" / "fraud.yaml")


def _node(node_id, zone="eu-west", closed=()):
    labels = {"zone": zone, "accelerator": "cpu"}
    return NodeView(NodeAttrs(node_id, zone, "cpu", labels), {"CPU": 2.0}, 0, frozenset(closed))


def test_a_sequential_caller_never_has_more_than_one_outstanding():
    est = OutstandingEstimate(min_s=0.002)
    now = 0.0
    for _ in range(1000):
        assert est.count("a", now) <= 1
        est.add("a", now, service_s=0.0001, cpus=2)
        now += 0.0025  # the previous task finished (Ray round trip ~1-2 ms) before the next call
    assert est.count("a", now) == 0


def test_a_burst_accumulates_and_queueing_stretches_expected_finish():
    est = OutstandingEstimate(min_s=0.002)
    for i in range(100):
        est.add("a", i * 50e-6, service_s=0.001, cpus=2)  # 100 tasks in 5 ms on 2 CPUs of 1 ms each
    assert est.count("a", 0.005) >= 95  # only the first few are due; FIFO on 2 workers: the last ~100 ms later
    assert 0 < est.count("a", 0.05) < 100
    assert est.count("a", 0.2) == 0


def test_without_a_service_estimate_a_task_counts_until_a_newer_view_covers_it():
    est = OutstandingEstimate()
    est.add("a", 1.0, service_s=None)
    est.add("a", 2.0, service_s=None)
    assert est.count("a", 100.0) == 2
    est.forget_before("a", 1.5)
    assert est.count("a", 100.0) == 1
    assert est.at(100.0).get("a") == 1 and est.at(100.0).get("b", 0) == 0


def test_min_s_must_be_positive():
    with pytest.raises(ValueError, match="min_s"):
        OutstandingEstimate(min_s=0)


def _switches(local_load_for, calls=1000):
    """Node switches of a sequential caller placing EU pii tasks on two equal EU nodes."""
    c = FRAUD.classify(RequestMeta(tenant="bank-eu", data_class="pii"), now=0.0)
    nodes = [_node("eu1"), _node("eu2"), _node("us1", "us-east")]
    last, switches, now = None, 0, 0.0
    for _ in range(calls):
        load, record = local_load_for(now)
        p = choose_node(c, nodes, qos="critical", local_load=load, rotation=7, local_node_id="eu1")
        record(p.node_id)
        switches += last is not None and p.node_id != last
        last = p.node_id
        now += 0.0012
    return switches


def test_sequential_calls_stay_on_one_node_with_the_estimate_but_alternated_with_the_old_count():
    est = OutstandingEstimate()
    new = _switches(lambda now: (est.at(now), lambda node: est.add(node, now, 0.0001, 2)))
    placed: dict[str, int] = {}  # the former rule: every task placed since the view counts
    old = _switches(lambda now: (placed, lambda node: placed.__setitem__(node, placed.get(node, 0) + 1)))
    assert new == 0
    assert old >= 100  # every 8 placements (2 CPUs x 4) it moved to the other node


def test_a_sheddable_class_is_refused_when_every_eligible_node_closed_it():
    c = FRAUD.classify(RequestMeta(qos="sheddable"), now=0.0)
    nodes = [_node("eu1", closed={"sheddable"}), _node("us1", "us-east", closed={"sheddable"})]
    with pytest.raises(Overloaded) as info:
        choose_node(c, nodes, qos="sheddable", shed_when_closed=True, retry_after_s=0.25)
    assert isinstance(info.value, AdmissionError)
    assert info.value.reason == "node_caps" and info.value.retry_after_s == 0.25
    assert "2 eligible" in str(info.value)
    # One node still open: placed there. A class that is never shed: placed on a closed node anyway.
    nodes[1] = _node("us1", "us-east")
    assert choose_node(c, nodes, qos="sheddable", shed_when_closed=True).node_id == "us1"
    closed = [_node("eu1", closed={"critical"})]
    critical = FRAUD.classify(RequestMeta(qos="critical", tenant="bank-eu"), now=0.0)
    assert choose_node(critical, closed, qos="critical", shed_when_closed=False).node_id == "eu1"
