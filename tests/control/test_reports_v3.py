"""Wire version 3: Serve replica reports ride agent and zone reports, and leases carry replica caps."""

from __future__ import annotations

import pickle

import pytest

from agentic_ray.control import (
    AgentReport,
    LatencyHistogram,
    NodeLease,
    NodeSnapshot,
    ReplicaClassStats,
    ReplicaReport,
    ZoneReport,
)


def _replica(rid: str = "r1") -> ReplicaReport:
    latency = LatencyHistogram()
    for ms in (5.0, 9.0, 40.0):
        latency.record(ms)
    stats = ReplicaClassStats(offered=5, admitted=4, shed={"queue_full": 1}, completed=3, missed=1, latency=latency)
    return ReplicaReport("app/Model", rid, "n1", "eu-west", "cpu", 4, 3, "v2", "ab" * 32, 10.0, 10.5,
                         {"critical": stats})  # fmt: skip


def test_replica_reports_round_trip_in_agent_and_zone_reports():
    snap = NodeSnapshot("n1", "eu-west", "inc", 10.5)
    agent = pickle.loads(pickle.dumps(AgentReport(snap, {}, (_replica(),))))
    assert agent.replicas == (_replica(),)
    zone = pickle.loads(pickle.dumps(ZoneReport("eu-west", {"n1": snap}, {}, {}, {"r1": _replica()})))
    assert zone.replicas["r1"].classes["critical"].shed == {"queue_full": 1}
    assert zone.to_dict()["replicas"]["r1"]["classes"]["critical"]["offered"] == 5
    # Without replicas a report pickles as version 2, which older peers read.
    assert pickle.dumps(AgentReport(snap)).count(b"_agent_report_v2") == 1


def test_class_stats_merge_adds_counts_and_histograms():
    a, b = _replica().classes["critical"], _replica().classes["critical"]
    both = a.merge(b)
    assert (both.offered, both.completed, both.shed, both.latency.count) == (10, 6, {"queue_full": 2}, 6)


def test_leases_carry_replica_caps_and_check_them():
    lease = pickle.loads(pickle.dumps(NodeLease({"sheddable": 4}, 0.0, 3.0, 7, {"r1": {"sheddable": 2}})))
    assert lease.replica_caps == {"r1": {"sheddable": 2}}
    with pytest.raises(ValueError, match="replica_caps"):
        NodeLease({}, 0.0, 3.0, 1, {"r1": {"sheddable": -1}})
    with pytest.raises(ValueError, match="deployment"):
        ReplicaReport("Model", "r", "n", "z", "cpu", 1, 1, "v", None, 0.0, 1.0)
