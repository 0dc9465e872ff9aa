"""The typed wire values: JSON projections, pickling, reading version-1 dicts, validation."""

from __future__ import annotations

import pickle

import pytest

from agentic_ray.control import WIRE_VERSION, AgentReport, ClassSummary, NodeLease, NodeSnapshot, ZoneReport
from tests.control._fixtures import snapshot, summary

SNAP = snapshot(
    "n1",
    at=12.5,
    started_at=3.0,
    attrs={"zone": "eu-west"},
    inflight=4,
    inflight_by_class={"critical": 3},
    queued_by_class={"critical": 1},
    closed_classes=("sheddable",),
    service_ms={"critical|fraud": 12.0},
    accelerator={"kind": "cpu", "gpus": []},
    policy_sha="abc",
    caps={"critical": 8, "sheddable": 1},
)


def test_snapshot_projects_to_the_json_of_wire_version_1_and_back():
    d = SNAP.to_dict()
    assert d == {
        "node_id": "n1",
        "zone": "eu-west",
        "attrs": {"zone": "eu-west"},
        "incarnation": "inc-n1",
        "started_at": 3.0,
        "at": 12.5,
        "inflight": 4,
        "inflight_by_class": {"critical": 3},
        "queued_by_class": {"critical": 1},
        "closed_classes": ["sheddable"],
        "service_ms": {"critical|fraud": 12.0},
        "accelerator": {"kind": "cpu", "gpus": []},
        "policy_sha": "abc",
        "caps": {"critical": 8, "sheddable": 1},
        "process": {},
    }
    assert NodeSnapshot.from_wire(d) == SNAP and NodeSnapshot.from_wire(SNAP) is SNAP
    with pytest.raises(KeyError, match="incarnation"):
        NodeSnapshot.from_dict({"node_id": "n1", "at": 0.0})


def test_reports_pickle_to_equal_values():
    s = summary("critical", "fraud", [5.0, 7.0, 300.0], late=2)
    report = AgentReport(SNAP, {s.key: s})
    zone = ZoneReport("eu-west", {"n1": SNAP}, {s.key: s}, {"n1": ("a", "b")})
    for value in (SNAP, report, zone, AgentReport(SNAP), NodeLease({"critical": 2}, 1.0, 3.0, 7)):
        back = pickle.loads(pickle.dumps(value, protocol=5))
        assert back == value and type(back) is type(value)
    back = pickle.loads(pickle.dumps(report))
    assert back.summaries[s.key].latency.quantile(0.99) == s.latency.quantile(0.99)
    assert back.summaries[s.key] is not s  # a copy, merged into by the receiver


def test_report_types_pickle_under_a_versioned_constructor():
    """The pickled form names ``_<type>_v2`` (version 3 only when Serve replicas ride along: then
    ``_v3``, tests/control/test_reports_v3.py; a snapshot alone ``_v4``, since it carries the agent's
    process): a later wire version keeps those names loading."""
    assert WIRE_VERSION == 4
    assert SNAP.__reduce__()[0].__name__ == "_node_snapshot_v4"
    for value in (AgentReport(SNAP), ZoneReport("z")):
        assert value.__reduce__()[0].__name__.endswith("_v2")


def test_snapshots_carry_the_agents_process_and_older_agents_snapshots_still_load():
    """Wire version 4: ``process`` rides last in a snapshot's fields, alone and inside agent and zone
    reports; the fourteen fields of an agent of version 3 or older still build a snapshot (no process)."""
    from agentic_ray.control import _reports

    mine = snapshot("n2", at=1.0, process={"niceness": 15, "proxy": False})
    for value in (mine, AgentReport(mine), ZoneReport("z", {"n2": mine})):
        assert pickle.loads(pickle.dumps(value)) == value
    assert pickle.loads(pickle.dumps(AgentReport(mine))).snapshot.process == {"niceness": 15, "proxy": False}
    assert mine.to_dict()["process"] == {"niceness": 15, "proxy": False}
    assert NodeSnapshot.from_dict(mine.to_dict()) == mine
    old = _reports._snapshot_fields(SNAP)[:-1]  # what a version-3 agent sent
    assert len(old) == 14
    assert _reports._node_snapshot_v2(*old) == SNAP and SNAP.process == {}
    assert _reports._agent_report_v2(old, {}).snapshot == SNAP
    assert _reports._zone_report_v2("z", {"n1": old}, {}, {}).nodes["n1"] == SNAP
    del_process = {k: v for k, v in mine.to_dict().items() if k != "process"}  # a version-1 dict of old
    assert NodeSnapshot.from_dict(del_process).process == {}


def test_version_1_dicts_are_read_by_the_new_consumers():
    s = summary("standard", None, [1.0, 2.0])
    v1 = {"snapshot": SNAP.to_dict(), "summaries": {s.key: s.to_dict()}}
    report = AgentReport.from_wire(v1)
    assert report.snapshot == SNAP and report.summaries[s.key] == s
    assert AgentReport.from_wire(report) is report
    assert report.to_dict() == v1
    zone_v1 = {
        "nodes": {"n1": dict(SNAP.to_dict(), age_s=0.1)},
        "summaries": {s.key: s.to_dict()},
        "registrations": {"n1": ["a"]},
    }
    zone = ZoneReport.from_wire("eu-west", zone_v1)
    assert zone.zone == "eu-west" and zone.nodes["n1"] == SNAP and zone.registrations == {"n1": ("a",)}
    assert zone.summaries[s.key].count == 2


def test_lease_validation_and_the_version_1_positional_form():
    lease = NodeLease({"critical": 4}, granted_at=10.0, lease_s=3.0, revision=2)
    assert lease.expires_at == 13.0
    assert NodeLease.from_wire({"critical": 4}, 10.0, 3.0, 2) == lease
    assert NodeLease.from_wire(lease) is lease
    with pytest.raises(TypeError, match="version-1"):
        NodeLease.from_wire({"critical": 4}, 10.0)
    with pytest.raises(ValueError, match=r"caps\['critical'\]"):
        NodeLease({"critical": -1}, 0.0, 1.0, 1)
    with pytest.raises(ValueError, match="lease_s"):
        NodeLease({}, 0.0, 0.0, 1)


def test_class_summary_copy_is_independent():
    s = summary("critical", None, [1.0])
    c = s.copy()
    c.merge(summary("critical", None, [2.0, 3.0]))
    assert (s.count, s.latency.count) == (1, 1) and (c.count, c.latency.count) == (3, 3)
    assert isinstance(c, ClassSummary)
