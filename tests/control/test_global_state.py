"""GlobalState: zone reports, offered load and drift input, membership records, drift results, restore."""

from __future__ import annotations

import pytest

from agentic_ray.control import (
    BurnWindow,
    DriftConfig,
    DriftDetector,
    GlobalState,
    PolicyRollout,
    ZoneReport,
    judged_budget_ms,
)
from agentic_ray.control._global_state import LOG_HEADS_KEPT
from agentic_ray.policies import load_policy
from agentic_ray.testing.clock import ManualClock
from tests.control._fixtures import REPO, fraud_policy, minimal_policy, node, snapshot, summary

DRIFT = DriftConfig(slo_target=0.9, windows=(BurnWindow(10.0, 2.0, 2.0),), p99_window_s=5.0, min_samples=3)


def state(policy=None, now: float = 0.0) -> GlobalState:
    return GlobalState(PolicyRollout.first(policy or fraud_policy(), "fraud.yaml", now), DriftDetector(DRIFT), now)


def test_judged_budget_is_the_stage_s_then_the_workflow_s_then_the_class_s():
    policy = fraud_policy()
    features = next(s for s in policy.workflows["fraud"].stages if s.name == "features")
    assert judged_budget_ms(policy, "critical", "fraud/features") == features.budget_ms == 45.0
    assert judged_budget_ms(policy, "critical", "fraud/nope") == 150.0  # unknown stage: the workflow's
    assert judged_budget_ms(policy, "critical", "fraud") == 150.0
    assert judged_budget_ms(policy, "standard", "etl") == 800.0  # unknown workflow: the class's
    assert judged_budget_ms(policy, "standard", None) == 800.0
    assert judged_budget_ms(policy, "nope", None) == float("inf")
    platform = load_policy(REPO / "examples" / "policies" / "platform.yaml")  # rag: 1200 ms, class standard: 800
    assert judged_budget_ms(platform, "standard", "rag/rerank") == 100.0
    assert judged_budget_ms(platform, "standard", "rag/nope") == 1200.0


def test_agents_started_and_dropped_are_recorded_with_events():
    st = state()
    st.nodes = {"n1": node("n1")}
    rec = st.agent_started(node("n1"), "agentic-agent-n1", now=1.0)
    assert st.agents == {"n1": rec} and rec.created_at == 1.0
    st.snapshots["n1"] = snapshot("n1", policy_sha=st.policy.sha256)
    assert st.reported_policies() == {"n1": st.policy.sha256} and st.reported_nodes() == {"n1": node("n1")}
    st.rollout.acknowledge("n1", st.policy.sha256)
    assert st.agent_dropped("n1", now=2.0) == rec
    assert st.agents == {} and st.snapshots == {} and st.rollout.acked == {}
    assert st.agent_dropped("n1", now=3.0) is None
    assert [e.to_dict() for e in st.events] == [
        {"at": 1.0, "kind": "agent_started", "node_id": "n1", "zone": "eu-west"},
        {"at": 2.0, "kind": "agent_dropped", "node_id": "n1", "zone": "eu-west"},
    ]


def test_a_zone_report_replaces_that_zone_s_snapshots_and_feeds_load_and_drift():
    st = state()
    for n, z in (("e1", "eu-west"), ("e2", "eu-west"), ("u1", "us-east")):
        st.agent_started(node(n, zone=z), "agent-" + n, now=0.0)
    st.snapshots["u1"] = snapshot("u1", zone="us-east")
    st.snapshots["e2"] = snapshot("e2")
    late = summary("critical", "fraud/features", [10.0] * 2, late=8)
    unknown = summary("nope", None, [1.0])
    report = ZoneReport(
        "eu-west",
        nodes={"e1": snapshot("e1"), "x9": snapshot("x9")},  # x9: no agent of ours
        summaries={late.key: late, unknown.key: unknown},
        registrations={"e1": ("i1", "i2")},
    )
    st.ingest(report, now=1.0)
    assert set(st.snapshots) == {"e1", "u1"}, "e2 (not in its zone's report) left, us-east untouched"
    assert st.registrations == {"e1": ("i1", "i2")}
    assert st.offered.finished == {("eu-west", "critical", "fraud/features"): 10, ("eu-west", "nope", None): 1}
    drift = st.drift.evaluate(1.0)
    assert {a.kind for a in drift.active} == {"p99_over_budget", "burn_rate"}
    assert drift.figures[late.key]["budget_ms"] == 45.0, "judged against the stage's budget"
    assert unknown.key not in drift.figures, "a class without a budget is not judged"
    st.record_drift(drift, now=1.0)
    assert len(st.alerts) == 2 and [e.event for e in st.alert_log] == ["raised", "raised"]
    assert st.figures[late.key]["samples"] == 10
    cleared = st.drift.evaluate(20.0)
    st.record_drift(cleared, now=20.0)
    assert st.alerts == () and [e.to_dict()["event"] for e in st.alert_log] == ["raised"] * 2 + ["cleared"] * 2
    assert st.alert_log[-1].to_dict()["at"] == 20.0 and "at" not in st.alert_log[0].to_dict()


def test_log_heads_are_anchored_and_bounded():
    st = state()
    clock = ManualClock(0.0)
    for i in range(LOG_HEADS_KEPT + 3):
        st.anchor_log_head(f"log-{i}", {"count": i, "hash": "h"}, clock.advance(1.0))
    assert len(st.log_heads) == LOG_HEADS_KEPT and "log-0" not in st.log_heads
    assert st.log_heads[f"log-{LOG_HEADS_KEPT + 2}"].to_dict() == {
        "count": LOG_HEADS_KEPT + 2,
        "hash": "h",
        "at": 203.0,
    }
    with pytest.raises(KeyError, match="count"):
        st.anchor_log_head("bad", {"hash": "h"}, 1.0)


def test_checkpoint_restores_policy_history_and_allocation():
    fraud, minimal = fraud_policy(), minimal_policy()
    fresh = GlobalState.restore(None, fraud, DRIFT, now=5.0)
    assert not fresh.restored and fresh.rollout.active.source == "<default policy>" and fresh.started_at == 5.0
    fresh.rollout.apply(minimal, "minimal.yaml", now=6.0)
    from agentic_ray.control import Allocation

    fresh.allocation = Allocation(4, {"n": {"critical": 3}}, 6.0, 3.0, {"critical": 1.0})
    ckpt = fresh.checkpoint({"report_interval_s": 0.5})
    import json

    again = GlobalState.restore(json.loads(json.dumps(ckpt)), fraud, DRIFT, now=9.0)
    assert again.restored and again.policy.sha256 == minimal.sha256 and again.rollout.active.revision == 2
    assert again.allocation == fresh.allocation and ckpt["config"] == {"report_interval_s": 0.5}
    assert GlobalState.restore({"history": [], "config": {}}, fraud, DRIFT, 0.0).restored is False


def test_zone_reports_with_replicas_become_the_round_s_demand_and_replica_caps():
    from agentic_ray.control import ReplicaClassStats, ReplicaReport, plan_allocation

    st = state()
    st.nodes = {"e1": node("e1", cpus=4.0)}
    st.agent_started(node("e1", cpus=4.0), "agent-e1", now=0.0)
    stats = ReplicaClassStats(offered=30, admitted=20, shed={"class_cap": 10}, completed=20)
    r1 = ReplicaReport("app/fraud", "r1", "e1", "eu-west", "cpu", 2, 2, "v", None, 9.5, 10.0, {"critical": stats})
    finished = summary("critical", "fraud", [5.0] * 4)
    st.ingest(ZoneReport("eu-west", {"e1": snapshot("e1")}, {finished.key: finished}, replicas={"r1": r1}), 10.0)
    st.ingest(ZoneReport("eu-west", {"e1": snapshot("e1")}, replicas={"r1": r1}), 10.1)  # the same report again
    demand = st.take_demand(now=11.0, first_window_s=1.0, stale_after_s=5.0)
    assert demand.rates_by_zone() == {"eu-west": {"critical": 4.0 + 30.0}}  # shed arrivals count: offered load
    a = plan_allocation(st.policy, st.reported_nodes(), st.snapshots, demand, None, 11.0, 1.0)
    assert set(a.replica_caps["e1"]) == {"r1"} and a.node_lease("e1").replica_caps == a.replica_caps["e1"]
    st.allocation = a  # the checkpoint keeps the node caps; the next round recomputes the replicas'
    assert "replica_caps" in a.to_dict() and "replica_caps" not in st.checkpoint({})["allocation"]
