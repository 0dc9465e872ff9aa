"""The chaos suite's pure pieces: HTTP records into the ledger, and version regressions."""

from __future__ import annotations

from agentic_ray.testing.chaos import VersionWatch, answer_kind, records_to_ledger
from agentic_ray.testing.ledger import Ledger

BUDGETS = {"critical": 100.0, "sheddable": 2000.0}


def test_http_statuses_map_to_outcomes():
    records = [
        {"qos": "critical", "sent_s": 0.0, "status": 200, "latency_ms": 50.0},
        {"qos": "sheddable", "sent_s": 0.0, "status": 429, "latency_ms": 1.0},
        {"qos": "critical", "sent_s": 0.0, "status": 504, "latency_ms": 90.0},
        {"qos": "critical", "sent_s": 0.0, "status": 500, "latency_ms": 5.0},
        {"qos": "critical", "sent_s": 0.0, "status": 0, "latency_ms": 15000.0, "timeout_ms": 15000.0},
        {"qos": "critical", "sent_s": 0.0, "status": 200, "latency_ms": 3000.0},
    ]
    led = Ledger(grace_s=1.0)
    records_to_ledger(records, led, 100.0, BUDGETS)
    t = led.tally(200.0)
    assert (t.ok, t.typed_error, t.untyped_error, t.lost, t.hung) == (1, 2, 1, 1, 1)


def test_typed_errors_are_agentic_ones():
    from agentic_ray.errors import Overloaded, ReplicaFailed

    assert answer_kind(Overloaded("x", reason="queue_full")) == ("typed", "Overloaded:queue_full")
    assert answer_kind(ReplicaFailed(cause="ActorDiedError")) == ("typed", "ReplicaFailed:replica_failed")
    assert answer_kind(RuntimeError("boom")) == ("untyped", "RuntimeError")


def _status(agent_sha: str, router_version: str) -> dict:
    return {
        "history": [{"sha256": "a", "version": "v1", "revision": 1}, {"sha256": "b", "version": "v2", "revision": 2}],
        "zones": {"eu": [{"node_id": "n1", "policy_sha": agent_sha}]},
        "serve": {"deployments": {"app/M": {"routers": [{"router_id": "r1", "policy_version": router_version}],
                                            "replicas": []}}},
    }  # fmt: skip


def test_version_watch_counts_a_member_going_back():
    watch = VersionWatch()
    watch.observe(_status("a", "v1"), 1.0)
    watch.observe(_status("b", "v2"), 2.0)
    assert watch.regressions == []
    watch.observe(_status("b", "v1"), 3.0)  # the router runs v1 again after v2
    assert [r["member"] for r in watch.regressions] == ["router:r1"]
    assert watch.highest == {"agent:n1": 2, "router:r1": 2}


def test_version_watch_ignores_policies_outside_the_history():
    watch = VersionWatch()
    watch.observe(_status("zzz", "deploy-time"), 1.0)
    assert watch.highest == {} and watch.regressions == []
