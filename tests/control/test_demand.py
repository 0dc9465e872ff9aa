"""Offered load per round: tasks by conservation (finished + refused + backlog change), Serve from the
replicas' ``offered`` counts, both by the zone that observed them."""

from __future__ import annotations

import pytest

from agentic_ray.control import (
    ClassSummary,
    DemandStream,
    LatencyHistogram,
    OfferedDemand,
    OfferedLoad,
    ReplicaClassStats,
    ReplicaReport,
    ZoneReport,
)
from agentic_ray.control._demand import histogram_mean_ms
from tests.control._fixtures import snapshot


def finished(qos: str, workflow: str | None, n: int) -> ClassSummary:
    s = ClassSummary(qos, workflow)
    for _ in range(n):
        s.record(5.0, True, True)
    return s


def backlog(node_id: str, zone: str = "eu-west", running: int = 0, queued: int = 0, qos: str = "critical", inc="a"):
    return snapshot(
        node_id, zone=zone, incarnation=inc, inflight_by_class={qos: running}, queued_by_class={qos: queued}
    )


def rates(demand: OfferedDemand) -> dict[tuple, float]:
    return {(s.zone, s.qos, s.workflow, s.deployment): pytest.approx(s.rate_per_s) for s in demand.tasks + demand.serve}


def test_offered_tasks_are_finished_plus_refused_plus_the_backlog_s_growth():
    load = OfferedLoad()
    # round 1 (2 s back): 4 finished, and 8 still on the node (3 running, 5 queued): 12 offered
    load.observe(ZoneReport("eu-west", summaries={"c": finished("critical", None, 4)}))
    snaps = {"n1": backlog("n1", running=3, queued=5)}
    first = load.take(now=100.0, snapshots=snaps, first_window_s=2.0)
    assert first.window_s == 2.0 and rates(first) == {("eu-west", "critical", None, None): 6.0}
    # round 2, overloaded: the node finishes 10 a second (its throughput) while 16 arrive; the queue grows
    load.observe(ZoneReport("eu-west", summaries={"c": finished("critical", None, 10)}))
    snaps = {"n1": backlog("n1", running=3, queued=11)}
    assert rates(load.take(now=101.0, snapshots=snaps, first_window_s=2.0)) == {
        ("eu-west", "critical", None, None): 16.0
    }
    # round 3: arrivals stop, the queue drains: 6 finish and the backlog falls by 6, nothing offered
    load.observe(ZoneReport("eu-west", summaries={"c": finished("critical", None, 6)}))
    snaps = {"n1": backlog("n1", running=3, queued=5)}
    assert load.take(now=102.0, snapshots=snaps, first_window_s=2.0).tasks == ()


def test_offered_tasks_are_kept_per_zone_and_spread_over_workflows_by_their_counts():
    load = OfferedLoad()
    load.observe(
        ZoneReport("eu-west", summaries={"a": finished("critical", "fraud", 3), "b": finished("critical", None, 1)})
    )
    load.observe(ZoneReport("us-east", summaries={"c": finished("standard", None, 2)}))
    load.observe(ZoneReport("us-east", summaries={"d": finished("standard", "serve:app/llm", 50)}))  # Serve's own
    snaps = {"e1": backlog("e1", running=4), "u1": backlog("u1", zone="us-east", qos="sheddable", queued=7)}
    demand = load.take(now=10.0, snapshots=snaps, first_window_s=1.0)
    assert rates(demand) == {
        ("eu-west", "critical", "fraud", None): 3 + 4 * 3 / 4,  # 8 offered in eu-west, 3 of 4 finished were fraud
        ("eu-west", "critical", None, None): 1 + 4 * 1 / 4,
        ("us-east", "standard", None, None): 2.0,
        ("us-east", "sheddable", None, None): 7.0,  # nothing finished yet: all to the class
    }
    assert demand.rates_by_zone() == {
        "eu-west": {"critical": pytest.approx(8.0)},
        "us-east": {"standard": 2.0, "sheddable": 7.0},
    }
    assert demand.rates_per_s() == {"critical": pytest.approx(8.0), "standard": 2.0, "sheddable": 7.0}


def test_a_restarted_agent_s_backlog_counts_from_zero_and_a_gone_node_s_does_not_count():
    load = OfferedLoad()
    load.take(now=0.0, snapshots={"n1": backlog("n1", running=5), "n2": backlog("n2", running=9)}, first_window_s=1.0)
    demand = load.take(now=1.0, snapshots={"n1": backlog("n1", running=2, inc="b")}, first_window_s=1.0)
    assert rates(demand) == {("eu-west", "critical", None, None): 2.0}  # new incarnation: 2 new; n2 gone: 0


def replica(
    rid: str, since: float, at: float, offered: int, zone: str = "eu-west", latencies=(), **kw
) -> ReplicaReport:
    h = LatencyHistogram()
    for v in latencies:
        h.record(v)
    stats = ReplicaClassStats(offered=offered, admitted=offered, completed=len(latencies), latency=h)
    return ReplicaReport(
        kw.get("deployment", "app/llm"), rid, kw.get("node_id", "n-" + rid), zone, "cpu", kw.get("slots", 4), 4,
        "v1", None, since, at, {kw.get("qos", "critical"): stats},
    )  # fmt: skip


def test_serve_demand_is_the_replicas_offered_load_each_report_counted_once():
    load = OfferedLoad()
    r1 = replica("r1", 0.0, 0.5, 10, latencies=[20.0] * 4)
    load.observe(ZoneReport("eu-west", replicas={"r1": r1}))
    load.observe(ZoneReport("eu-west", replicas={"r1": r1}))  # the zone passed the same latest report again
    load.observe(ZoneReport("eu-west", replicas={"r1": replica("r1", 0.5, 1.0, 30, latencies=[40.0] * 4)}))
    load.observe(ZoneReport("us-east", replicas={"r2": replica("r2", 0.0, 1.0, 5, zone="us-east")}))
    demand = load.take(now=1.0, snapshots={}, first_window_s=1.0)
    assert rates(demand) == {
        ("eu-west", "critical", None, "app/llm"): 40.0,
        ("us-east", "critical", None, "app/llm"): 5.0,
    }
    r = demand.replicas["r1"]
    assert (r.node_id, r.zone, r.slots, r.deployment) == ("n-r1", "eu-west", 4, "app/llm")
    assert r.service_ms["critical"] == pytest.approx(30.0, rel=0.03)  # mean of 20s and 40s, within a bucket
    assert demand.replicas["r2"].service_ms == {}  # nothing completed yet
    # no report since: no Serve demand this round (as for tasks); once stale the replica is dropped
    quiet = load.take(now=2.0, snapshots={}, first_window_s=1.0)
    assert quiet.serve == () and quiet.replicas["r1"].service_ms["critical"] == r.service_ms["critical"]
    assert load.take(now=7.0, snapshots={}, first_window_s=1.0, stale_after_s=5.0).replicas.keys() == set()


def test_histogram_mean_and_demand_stream_validation():
    h = LatencyHistogram()
    assert histogram_mean_ms(h) is None
    for v in (10.0, 100.0):
        h.record(v)
    assert histogram_mean_ms(h) == pytest.approx(55.0, rel=0.03)
    with pytest.raises(ValueError, match="rate_per_s"):
        DemandStream("critical", -1.0)
    assert OfferedDemand.cluster_wide({"critical": 2.0, "standard": 0.0}).tasks == (DemandStream("critical", 2.0),)
