"""The report path in-process: a NodeAgent's reports through a zone to the GlobalCoordinator's state and
back out as the cluster view placement reads, pickled at every hop as Ray does; and a rolling restart
(agents and zones of wire version 1 reporting to new consumers)."""

from __future__ import annotations

import pickle

from agentic_ray.actors._node_agent import NodeAgentImpl
from agentic_ray.actors._worker import Ended, Started
from agentic_ray.control import (
    AgentReport,
    DriftDetector,
    GlobalState,
    NodeLease,
    PolicyRollout,
    ZoneReport,
    ZoneState,
    alive_nodes,
    cluster_view,
    leases_by_zone,
    plan_allocation,
)
from agentic_ray.policies import load_policy


def hop(value):
    return pickle.loads(pickle.dumps(value, protocol=5))


def setup():
    policy = load_policy("examples/policies/fraud.yaml")
    table = [
        {"NodeID": n, "Alive": True, "Labels": {"zone": "eu-west"}, "Resources": {"CPU": 2.0}} for n in ("n1", "n2")
    ]
    st = GlobalState(PolicyRollout.first(policy, "fraud.yaml", 0.0), DriftDetector(), 0.0)
    st.nodes = alive_nodes(table)
    agents = {}
    for info in st.nodes.values():
        st.agent_started(info, "agent-" + info.node_id, 0.0)
        agents[info.node_id] = NodeAgentImpl(info.node_id, info.agent_attrs())
        agents[info.node_id].set_policy(policy)
    return st, agents, ZoneState("eu-west", stale_after_s=5.0)


def test_agent_reports_reach_the_view_and_leases_come_back_down():
    st, agents, zone = setup()
    agents["n1"].record_batch([Started("critical")] * 3 + [Ended("critical", "fraud", None, 4.0, 9.0, True, True, 1.0)])
    for agent in agents.values():
        report, full, _ = agent.next_report(now=1.0, last_full=float("-inf"), last_facts=None)
        assert full
        zone.on_report(hop(report), now=100.0)
    st.ingest(hop(zone.take_forward(now=100.0)), now=100.0)
    assert st.offered.finished == {("eu-west", "critical", "fraud"): 1}
    assert st.rollout.needs_push(st.reported_policies()) == [], "both agents report the active policy"
    view = hop(cluster_view(st, now=100.5))
    by_id = {n.node_id: n for n in view.nodes}
    assert by_id["n1"].inflight == 2 and by_id["n1"].service_ms == {"critical": 4.0} and by_id["n2"].reported
    # an allocation round: each agent adopts its lease, and its next snapshot shows the caps
    allocation = plan_allocation(st.policy, st.reported_nodes(), st.snapshots, {"critical": 5.0}, None, 100.0, 1.0)
    for node_id, lease in leases_by_zone(allocation, st.nodes)["eu-west"].items():
        assert agents[node_id].set_lease(hop(lease)) == allocation.revision
    assert agents["n1"].snapshot().caps == allocation.leases["n1"]
    assert agents["n1"].stats()["lease"]["revision"] == 1


def test_rolling_restart_old_agents_and_zones_report_to_new_consumers():
    st, agents, zone = setup()
    agents["n1"].record_batch([Started("standard"), Ended("standard", None, None, 2.0, 3.0, True, True, 1.0)])
    report, _, _ = agents["n1"].next_report(now=1.0, last_full=float("-inf"), last_facts=None)
    v1_report = hop(report.to_dict())  # what an agent of wire version 1 sends: a dict
    zone.on_report(AgentReport.from_wire(v1_report), now=100.0)  # as ZoneCoordinator.report does
    v1_payload = hop(zone.take_forward(now=100.0).to_dict())  # what a zone of wire version 1 sends
    st.ingest(ZoneReport.from_wire("eu-west", v1_payload), now=100.0)  # as GlobalCoordinator.zone_report does
    assert st.snapshots["n1"] == report.snapshot and st.offered.finished == {("eu-west", "standard", None): 1}
    # an old zone pushes a lease as four positional arguments (NodeAgent.set_lease reads both forms)
    assert agents["n1"].set_lease(NodeLease.from_wire({"standard": 3}, 100.0, 3.0, 9)) == 9
    assert agents["n1"].snapshot().caps == {"standard": 3}
