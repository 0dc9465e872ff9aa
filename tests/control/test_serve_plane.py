"""Serve on the control plane, the pure pieces: a replica's tally, the agent and zone passing replica
reports up, the GlobalCoordinator's per-deployment policy targets, refusals, status and drift keys."""

from __future__ import annotations

import pickle

import pytest

from agentic_ray.actors._node_agent import NodeAgentImpl
from agentic_ray.control import (
    ClassSummary,
    DriftConfig,
    GlobalState,
    NodeLease,
    ReplicaReport,
    ZoneReport,
    ZoneState,
    status_json,
)
from agentic_ray.control._serve_state import ServeMember, ServeState, refusal_reason
from agentic_ray.control._serve_tally import ServeTally, serve_drift_key

from ._fixtures import fraud_policy, node, snapshot

DEP = "app/Model"


def _report(tally: ServeTally, replica_id: str = "r1", version: str = "v1", sha: str | None = "sha-1",
            at: float = 1.0, since: float = 0.0) -> tuple[ReplicaReport, dict[str, ClassSummary]]:  # fmt: skip
    classes, summaries = tally.take()
    report = ReplicaReport(DEP, replica_id, "node-1", "eu-west", "cpu", 2, 2, version, sha, since, at, classes)
    return report, summaries


# -- the tally -------------------------------------------------------------------------------------------
def test_tally_counts_offered_load_outcomes_and_latency_since_the_previous_take():
    t = ServeTally(DEP)
    for _ in range(5):
        t.offer("standard")
    t.admit("standard")
    t.admit("standard")
    t.shed("standard", "queue_full")
    t.shed("standard", "class_cap")
    t.shed("standard", "class_cap")
    t.complete("standard", 40.0, ok=True, met=True)
    t.complete("standard", 900.0, ok=True, met=False)
    classes, summaries = t.take()
    c = classes["standard"]
    assert (c.offered, c.admitted, c.completed, c.missed, c.failed) == (5, 2, 2, 1, 0)
    assert c.shed == {"queue_full": 1, "class_cap": 2}
    assert c.latency.count == 2 and c.latency.quantile(0.5) >= 40.0
    # Drift: completions with their latency, sheds as refused (missed), under the deployment's key.
    key = f"standard|{serve_drift_key(DEP)}"
    assert set(summaries) == {key}
    s = summaries[key]
    assert (s.count, s.missed, s.errors) == (5, 4, 0)
    assert s.workflow == "serve:app/Model"
    # The next take has only what happened since.
    t.offer("standard")
    t.expire("standard", 20.0)
    classes, summaries = t.take()
    assert classes["standard"].offered == 1 and classes["standard"].expired == 1
    assert classes["standard"].completed == 0 and classes["standard"].latency.count == 0
    assert summaries[key].count == 1
    assert t.take() == ({}, {})


def test_a_request_naming_a_workflow_stage_is_judged_under_that_stage():
    t = ServeTally(DEP)
    t.offer("critical")
    t.complete("critical", 10.0, ok=True, met=True, workflow="fraud/score")
    _, summaries = t.take()
    assert list(summaries) == ["critical|fraud/score"]


# -- the agent and the zone ------------------------------------------------------------------------------
def test_the_agent_keeps_replica_reports_sends_new_ones_up_and_answers_caps_from_its_lease():
    agent = NodeAgentImpl("node-1", {"zone": "eu-west"}, {"report_interval_s": 0.5})
    t = ServeTally(DEP)
    t.offer("sheddable")
    t.complete("sheddable", 12.0, ok=True, met=True)
    report, summaries = _report(t)
    assert agent.record_replica(report, summaries) == ({}, None)  # no lease yet: no caps
    import time

    agent.set_lease(NodeLease({"sheddable": 4}, time.time(), 60.0, 1, replica_caps={"r1": {"sheddable": 2}}))
    caps, expires = agent.record_replica(report, {})
    assert caps == {"sheddable": 2} and expires > time.time()
    # The pending replica report makes the next tick send a (snapshot-only) report at once.
    sent, full, _ = agent.next_report(0.1, 0.0, agent.placement_facts(), 0.1)
    assert sent is not None and not full and [r.replica_id for r in sent.replicas] == ["r1"]
    full_report = agent.take_report()
    assert full_report.replicas == ()  # already sent
    assert f"sheddable|{serve_drift_key(DEP)}" in full_report.summaries  # completions merged into the delta
    assert agent.stats()["replicas"]["r1"]["deployment"] == DEP
    # An expired lease gives no caps: the gate runs uncapped rather than on stale quotas.
    agent.set_lease(NodeLease({}, time.time() - 120, 60.0, 2, replica_caps={"r1": {"sheddable": 2}}))
    assert agent.record_replica(report, {}) == ({}, None)


def test_router_sheds_are_merged_into_the_agents_summary_delta():
    agent = NodeAgentImpl("node-1", {"zone": "eu-west"})
    t = ServeTally(DEP)
    t.offer("standard")
    t.shed("standard", "cannot_meet_deadline", 0.3)
    classes, summaries = t.take()
    agent.record_router(DEP, "proxy:abc", classes, summaries)
    delta = agent.take_report().summaries[f"standard|{serve_drift_key(DEP)}"]
    assert (delta.count, delta.missed) == (1, 1)
    assert agent.stats()["routers"]["proxy:abc"]["classes"]["standard"]["shed"] == {"cannot_meet_deadline": 1}


def test_zone_forwards_the_latest_report_per_replica_once_and_it_pickles():
    from agentic_ray.control import AgentReport

    zone = ZoneState("eu-west", 5.0)
    t = ServeTally(DEP)
    t.offer("standard")
    first, _ = _report(t, at=1.0)
    t.offer("standard")
    second, _ = _report(t, at=2.0)
    zone.on_report(AgentReport(snapshot("node-1"), {}, (first,)), 1.0)
    zone.on_report(AgentReport(snapshot("node-1"), {}, (second,)), 2.0)
    forward = zone.take_forward(2.0)
    assert forward.replicas == {"r1": second}
    assert pickle.loads(pickle.dumps(forward)).replicas["r1"].at == 2.0
    assert zone.take_forward(2.1).replicas == {}


# -- the GlobalCoordinator's Serve state -----------------------------------------------------------------
def _member(kind: str, mid: str, sha: str = "sha-0", version: str = "v0", now: float = 0.0, classes=()):
    return ServeMember(kind, mid, DEP, "node-1", version, sha, now, tuple(classes))


def test_a_rollout_gives_registered_deployments_a_target_and_a_rollback_returns_it():
    serve = ServeState()
    assert serve.register(_member("router", "driver:1")).sha256 == "sha-0"  # the deploy-time policy
    assert serve.published() == {}
    verdicts = serve.apply("sha-1", "v1", ["critical", "standard"], revision=2, now=1.0)
    assert verdicts == {DEP: {"accepted": True, "reason": None}}
    assert serve.published() == {DEP: "sha-1"}
    assert serve.acks(DEP) == ([], ["driver:1"])
    serve.router_heartbeat(_member("router", "driver:1", "sha-1", "v1", now=1.5))
    assert serve.acks(DEP) == (["driver:1"], [])
    assert serve.rollback(2) == {DEP: {"policy_version": "v0", "rolled_back": True}}
    assert serve.published() == {DEP: "sha-0"}  # back to its own policy, published so members switch back
    assert serve.target(DEP).sha256 == "sha-0"


def test_a_deployment_refuses_a_policy_that_drops_a_class_its_callers_use_and_keeps_its_own():
    serve = ServeState()
    serve.register(_member("router", "driver:1", classes=["sheddable", "standard"]))
    verdicts = serve.apply("sha-2", "v2", ["critical", "standard"], revision=3, now=1.0)
    assert verdicts[DEP]["accepted"] is False and "sheddable" in verdicts[DEP]["reason"]
    assert serve.target(DEP).sha256 == "sha-0" and serve.published() == {}
    status = serve.status(2.0)["deployments"][DEP]
    assert status["refusal"]["version"] == "v2" and "sheddable" in status["refusal"]["reason"]
    assert status["policy_version"] == "v0"
    assert refusal_reason(["a", "b"], ["a"]) is None


def test_replica_reports_acknowledge_and_show_per_class_figures_in_status():
    serve = ServeState()
    serve.add_policy("sha-1", {"standard": 800.0})
    t = ServeTally(DEP)
    for _ in range(10):
        t.offer("standard")
    for _ in range(8):
        t.complete("standard", 50.0, ok=True, met=True)
    t.shed("standard", "queue_full")
    report, _ = _report(t, version="v1", sha="sha-1", at=2.0, since=0.0)
    serve.ingest_replicas([report], 2.0)
    row = serve.status(2.5)["deployments"][DEP]["replicas"][0]
    assert row["replica_id"] == "r1" and row["policy_version"] == "v1" and row["zone"] == "eu-west"
    c = row["classes"]["standard"]
    assert c["offered_rps"] == pytest.approx(5.0) and c["shed"] == 1 and c["budget_ms"] == 800.0
    assert 50.0 <= c["p99_ms"] <= 50.0 * 1.05
    assert serve.classes_seen(DEP) == {"standard"}
    # Silent members drop out; a deployment without members is forgotten after forget_after_s.
    serve.prune(2.0 + serve.stale_after_s + 1)
    assert serve.status(9.0)["deployments"][DEP]["replicas"] == []
    assert serve.prune(2.0 + serve.forget_after_s + 1) == [DEP]


def test_serve_targets_survive_the_checkpoint():
    serve = ServeState()
    serve.register(_member("replica", "r1"))
    serve.apply("sha-1", "v1", ["standard"], revision=2, now=1.0)
    again = ServeState()
    again.restore(serve.to_dict(), 5.0)
    assert again.published() == {DEP: "sha-1"}
    assert again.rollback(2)[DEP]["rolled_back"] is True


def test_global_state_takes_zone_replicas_judges_serve_keys_by_class_and_shows_them():
    policy = fraud_policy()
    state = GlobalState.restore(None, policy, DriftConfig(p99_window_s=10.0, min_samples=5), 0.0)
    state.nodes = {"node-1": node("node-1")}
    t = ServeTally(DEP)
    for _ in range(10):
        t.offer("critical")
        t.complete("critical", 500.0, ok=True, met=False)  # over the 150 ms critical budget
    report, summaries = _report(t, version=policy.version, sha=policy.sha256)
    state.ingest(ZoneReport("eu-west", {"node-1": snapshot("node-1")}, summaries, {}, {"r1": report}), 1.0)
    state.record_drift(state.drift.evaluate(1.0), 1.0)
    alerts = [a for a in state.alerts if a.kind == "p99_over_budget"]
    assert alerts and alerts[0].deployment == DEP and alerts[0].to_dict()["deployment"] == DEP
    status = status_json(state, 1.0, {}, lambda n: n)
    assert status["serve"]["deployments"][DEP]["replicas"][0]["replica_id"] == "r1"
    assert "serve" in state.checkpoint({})


def test_a_router_heartbeat_sent_before_the_one_held_does_not_replace_it():
    """A heartbeat Ray retried on a restarted coordinator can arrive after a newer one: the router must not
    be shown back on its older policy (the chaos test's version regression)."""
    serve = ServeState()
    newer = ServeMember.from_dict({"kind": "router", "member_id": "rt", "deployment": DEP, "policy_version": "v3",
                                   "policy_sha": "sha-3", "sent_at": 20.0}, now=21.0)  # fmt: skip
    older = ServeMember.from_dict({"kind": "router", "member_id": "rt", "deployment": DEP, "policy_version": "v2",
                                   "policy_sha": "sha-2", "sent_at": 19.0}, now=22.0)  # fmt: skip
    serve.router_heartbeat(newer)
    serve.router_heartbeat(older)
    assert serve.routers["rt"].policy_version == "v3"
    later = ServeMember.from_dict({"kind": "router", "member_id": "rt", "deployment": DEP, "policy_version": "v4",
                                   "policy_sha": "sha-4", "sent_at": 23.0}, now=23.5)  # fmt: skip
    serve.router_heartbeat(later)
    assert serve.routers["rt"].policy_version == "v4"


def _registration(mid: str, process: object, kind: str = "router") -> dict:
    return {"kind": kind, "member_id": mid, "deployment": DEP, "policy_version": "v1", "policy_sha": "sha-1",
            "process": process}  # fmt: skip


def test_status_names_routers_in_proxies_without_the_door_and_processes_at_a_niceness_above_0():
    """What ``agentic-ray status`` warns of: a proxy started without the door's variable, and routers or
    replicas at Ray's default niceness (``_ray_env``); a router outside a proxy has no door to miss."""
    serve = ServeState()
    serve.register(ServeMember.from_dict(_registration("proxy-a", {"niceness": 15, "proxy": True, "door": False}), 1.0))
    serve.register(ServeMember.from_dict(_registration("proxy-b", {"niceness": 0, "proxy": True, "door": True}), 1.0))
    serve.register(ServeMember.from_dict(_registration("driver", {"niceness": 0, "proxy": False}), 1.0))
    serve.register(ServeMember.from_dict(_registration("rep-1", {"niceness": 15}, kind="replica"), 1.0))
    # A replica's report (through its agent) keeps what its registration said of its process.
    t = ServeTally(DEP)
    t.offer("standard")
    report, _ = _report(t, replica_id="rep-1", version="v1", sha="sha-1", at=2.0)
    serve.ingest_replicas([report], 2.0)
    status = serve.status(2.5)
    rows = {r["router_id"]: r["process"] for r in status["deployments"][DEP]["routers"]}
    assert rows["proxy-a"] == {"niceness": 15, "proxy": True, "door": False}
    assert status["deployments"][DEP]["replicas"][0]["process"] == {"niceness": 15}
    assert status["environment"] == [
        f"{DEP}: 1 router(s) in Serve proxies without the front door (proxy-a): the proxies started without "
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH",
        f"{DEP}: 2 at niceness 15 (replica rep-1, router proxy-a): started without RAY_worker_niceness=0",
    ]
    from agentic_ray.cli.status_cmd import format_serve

    lines = format_serve(status)
    assert sum("warning:" in line for line in lines) == 2


def test_a_members_process_keeps_only_known_fields_of_the_right_type():
    """A member of another version (or a bad value) must not break registration: unknown or mistyped
    fields are left out, the rest kept."""
    m = ServeMember.from_dict(_registration("r", {"niceness": True, "proxy": "yes", "door": False, "x": 1}), 1.0)
    assert m.process == {"door": False}
    assert ServeMember.from_dict(_registration("r", "not a mapping"), 1.0).process == {}
    assert ServeMember.from_dict(_registration("r", None), 1.0).process == {}
    serve = ServeState()
    serve.register(ServeMember.from_dict(_registration("r", {"niceness": 0, "proxy": True, "door": True}), 1.0))
    assert serve.status(1.5)["environment"] == []
