"""The GlobalCoordinator's projections: the cluster view (typed and JSON) and ``status()``'s JSON."""

from __future__ import annotations

import json
import pickle

from agentic_ray.cli.status_cmd import format_status
from agentic_ray.control import (
    Allocation,
    ClusterView,
    DriftDetector,
    GlobalState,
    PolicyRollout,
    ViewNode,
    agents_info,
    cluster_view,
    policy_answer,
    status_json,
)
from tests.control._fixtures import fraud_policy, node, snapshot

STATUS_KEYS = {
    "at",
    "started_at",
    "restored",
    "policy",
    "history",
    "zones",
    "classes",
    "alerts",
    "alert_log",
    "allocation",
    "events",
    "decision_logs",
    "serve",
    "actions",
    "trial",
    "config",
    "unsatisfiable_rules",
    "process",
}
AGENT_KEYS = {
    "process",
    "node_id",
    "agent",
    "accelerator",
    "accelerator_state",
    "inflight_by_class",
    "closed_classes",
    "caps",
    "policy_sha",
    "incarnation",
    "report_age_s",
}


def two_nodes() -> GlobalState:
    st = GlobalState(PolicyRollout.first(fraud_policy(), "fraud.yaml", 0.0), DriftDetector(), started_at=1.0)
    st.nodes = {"a": node("a", cpus=4.0), "b": node("b", zone="us-east")}
    st.agent_started(st.nodes["a"], "agent-a", 1.0)
    st.agent_started(st.nodes["b"], "agent-b", 1.0)
    st.snapshots["a"] = snapshot(
        "a",
        at=9.0,
        inflight=5,
        inflight_by_class={"critical": 4},
        closed_classes=("sheddable",),
        service_ms={"critical|fraud": 10.0, "critical|-": 20.0, "standard|-": None},
        accelerator={"kind": "cpu"},
        policy_sha=st.policy.sha256,
        caps={"critical": 9},
    )
    st.registrations["a"] = ("i0", "inc-a")
    st.rollout.acknowledge("a", st.policy.sha256)
    return st


def test_cluster_view_projects_nodes_with_their_agents_figures():
    st = two_nodes()
    view = cluster_view(st, now=10.0)
    assert (view.at, view.policy_sha, view.revision) == (10.0, st.policy.sha256, 1)
    a, b = view.nodes
    assert a == ViewNode(
        "a", "eu-west", "cpu", {"zone": "eu-west"}, {"CPU": 4.0}, True, 5, ("sheddable",), {"critical": 15.0}, 1.0, True
    )
    assert (b.reported, b.age_s, b.inflight, b.service_ms) == (False, None, 0, {})
    nv = a.node_view()
    assert (nv.node_id, nv.cpus, nv.inflight, nv.closed_classes) == ("a", 4.0, 5, frozenset({"sheddable"}))
    assert nv.attrs.zone == "eu-west" and nv.service_ms == {"critical": 15.0}


def test_cluster_view_json_is_the_wire_version_1_view_and_reads_back():
    view = cluster_view(two_nodes(), now=10.0)
    d = view.to_dict()
    assert set(d) == {"at", "policy_sha", "policy_version", "revision", "nodes"}
    assert set(d["nodes"][0]) == {
        "node_id", "zone", "accelerator", "labels", "resources",
        "agent", "inflight", "closed_classes", "service_ms", "age_s", "reported",
    }  # fmt: skip
    assert d["nodes"][0]["closed_classes"] == ["sheddable"]
    json.dumps(d)
    assert ClusterView.from_wire(json.loads(json.dumps(d))) == view
    back = pickle.loads(pickle.dumps(view))
    assert back == view and back.__reduce__()[0].__name__ == "_cluster_view_v2"


def test_status_keeps_its_json_shape():
    st = two_nodes()
    st.allocation = Allocation(2, {"a": {"critical": 9}}, 9.5, 3.0, {"critical": 1.5})
    st.anchor_log_head("pid:log", {"count": 3, "hash": "h"}, 9.0)
    status = status_json(st, 10.0, {"report_interval_s": 0.5}, lambda n: "agentic-agent-" + n[:12])
    assert set(status) == STATUS_KEYS
    json.dumps(status)
    assert status["process"] == {}  # none given
    assert status_json(st, 10.0, {}, str, {"niceness": 15, "proxy": False})["process"] == {"niceness": 15,
                                                                                        "proxy": False}  # fmt: skip
    assert status["policy"] == {
        "name": "fraud",
        "version": st.policy.version,
        "sha256": st.policy.sha256,
        "revision": 1,
        "source": "fraud.yaml",
        "acked": ["a"],
        "missing": ["b"],
    }
    assert status["history"] == [
        {"sha256": st.policy.sha256, "version": st.policy.version, "revision": 1, "source": "fraud.yaml",
         "applied_at": 0.0, "signed_by": [], "sequence": None}
    ]  # fmt: skip
    (a,) = status["zones"]["eu-west"]
    (b,) = status["zones"]["us-east"]
    assert set(a) == AGENT_KEYS == set(b)
    assert a["agent"] == "agentic-agent-a" and a["report_age_s"] == 1.0 and a["closed_classes"] == ["sheddable"]
    assert a["caps"] == {"critical": 9} and a["accelerator_state"] == {"kind": "cpu"}
    assert b == {
        "node_id": "b", "agent": "agentic-agent-b", "accelerator": "cpu", "accelerator_state": None,
        "inflight_by_class": {}, "closed_classes": [], "caps": {}, "policy_sha": None, "incarnation": None,
        "report_age_s": None, "process": {},
    }  # fmt: skip
    assert status["allocation"] == {
        "revision": 2, "leases": {"a": {"critical": 9}}, "granted_at": 9.5, "lease_s": 3.0,
        "arrival_rates_per_s": {"critical": 1.5},
    }  # fmt: skip
    assert status["decision_logs"] == {"pid:log": {"count": 3, "hash": "h", "at": 9.0}}
    assert status["unsatisfiable_rules"] == []  # an eu- and a us- node: both residency rules can hold
    assert [e["kind"] for e in status["events"]] == ["agent_started", "agent_started"]
    assert status["config"] == {"report_interval_s": 0.5} and status["restored"] is False
    text = format_status(status)
    assert "agents acked 1/2" in text and "eu-west: 1 agent(s)" in text


def test_agents_info_and_policy_answers():
    st = two_nodes()
    info = agents_info(st)
    assert info["a"] == {
        "name": "agent-a",
        "zone": "eu-west",
        "incarnation": "inc-a",
        "registrations": ["i0", "inc-a"],
        "acked_policy": st.policy.sha256,
        "reported": True,
    }
    assert info["b"]["reported"] is False and info["b"]["incarnation"] is None
    assert policy_answer(st, unchanged=True)["unchanged"] is True
    assert (policy_answer(st, ["b"])["acked"], policy_answer(st, ["b"])["missing"]) == (["b"], ["a"])
    assert (policy_answer(st)["acked"], policy_answer(st)["missing"]) == (["a"], ["b"])


def test_status_on_an_unlabelled_cluster_names_the_rules_no_node_satisfies():
    st = GlobalState(PolicyRollout.first(fraud_policy(), "fraud.yaml", 0.0), DriftDetector(), started_at=1.0)
    st.nodes = {"a": node("a", zone="default"), "b": node("b", zone="eu-west")}
    status = status_json(st, 10.0, {}, lambda n: n)
    assert status["unsatisfiable_rules"] == [
        {"rule_id": "us-residency", "require": {"zone_prefix": ["us-"]},
         "hint": "label a node zone=us-<name> (ray start --labels zone=us-<name>)"},
    ]  # fmt: skip
    st.nodes = {"a": node("a", zone="default")}
    assert [r["rule_id"] for r in status_json(st, 10.0, {}, lambda n: n)["unsatisfiable_rules"]] == [
        "eu-residency",
        "us-residency",
    ]  # the prefer-only rule constrains nothing
    text = format_status(status_json(st, 10.0, {}, lambda n: n))
    assert "rules no node satisfies  2" in text and "ray start --labels zone=eu-<name>" in text
