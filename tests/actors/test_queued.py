"""Placed-not-started accounting of a node agent. Pure: manual clock."""

from __future__ import annotations

from agentic_ray.control._queued import PlacedNotStarted


def test_placed_tasks_count_until_they_start_or_are_refused():
    q = PlacedNotStarted()
    for i in range(3):
        q.placed("sheddable", deadline_at=100.0 + i, now=0.0)
    assert q.count("sheddable", 1.0) == 3 and q.counts(1.0) == {"sheddable": 3}
    q.started("sheddable", 1.0)
    q.started("sheddable", 1.0)  # a "refused" event also ends the wait
    assert q.count("sheddable", 1.0) == 1 and q.count("critical", 1.0) == 0


def test_a_start_that_arrives_before_its_placement_cancels_it():
    q = PlacedNotStarted(unmatched_ttl_s=2.0)
    q.started("critical", now=0.0)  # the worker's batch beat the submitter's
    q.placed("critical", deadline_at=50.0, now=0.1)
    assert q.count("critical", 0.2) == 0
    q.started("critical", now=1.0)  # a task placed without a report: forgotten after the TTL
    q.placed("critical", deadline_at=50.0, now=5.0)
    assert q.count("critical", 5.0) == 1


def test_a_placed_task_that_never_starts_is_forgotten_after_its_deadline():
    q = PlacedNotStarted(grace_s=1.0)
    q.placed("standard", deadline_at=10.0, now=0.0)
    q.placed("standard", deadline_at=20.0, now=0.0)
    assert q.count("standard", 10.5) == 2
    assert q.count("standard", 11.5) == 1
    assert q.counts(30.0) == {}


def test_agent_gate_closes_on_queued_work():
    from agentic_ray.actors._node_agent import NodeAgentImpl
    from agentic_ray.actors._worker import Ended, Placed, Started
    from agentic_ray.control._reports import NodeLease

    agent = NodeAgentImpl("n" * 56, {"zone": "eu-west"})
    agent.set_lease(NodeLease({"sheddable": 2}, granted_at=0.0, lease_s=3.0, revision=1))
    far = 4e9  # deadline far in the future (wall clock)
    agent.record_batch([Placed("sheddable", far), Started("sheddable")])
    assert agent.admit("sheddable") and agent.snapshot().inflight == 1
    agent.record_batch([Placed("sheddable", far)])  # waiting in Ray's queue: counts against the cap
    assert not agent.admit("sheddable") and agent.closed_classes() == ["sheddable"]
    snap = agent.snapshot()
    assert snap.inflight == 2 and snap.queued_by_class == {"sheddable": 1}
    assert snap.inflight_by_class == {"sheddable": 1}
    agent.record_batch([Started("sheddable"), Ended("sheddable", None, None, 1.0, 2.0, True, True, 5.0)])
    assert agent.admit("sheddable") and agent.stats()["totals"]["placed"] == 2
