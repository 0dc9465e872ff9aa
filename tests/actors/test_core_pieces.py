"""Names, config, leases and the NodeAgent's logic in-process; the pure modules stay free of Ray."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentic_ray.actors._common import ControlPlaneConfig, agent_name, zone_name
from agentic_ray.actors._worker import Ended, Refused, Started
from agentic_ray.control._leases import static_caps
from agentic_ray.control._reports import NodeLease
from agentic_ray.policies import load_policy


def test_names():
    assert agent_name("a" * 56) == "agentic-agent-" + "a" * 12
    assert zone_name("eu-west") == "agentic-zone-eu-west"
    assert zone_name("us east/1") == "agentic-zone-us_east_1"


def test_config_round_trip_and_validation():
    cfg = ControlPlaneConfig(report_interval_s=0.25, burn_windows=[[4, 1, 2]])
    assert ControlPlaneConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.drift_config().windows[0].long_s == 4
    assert ControlPlaneConfig().report_interval_s == 0.5
    with pytest.raises(ValueError, match="report_interval_s"):
        ControlPlaneConfig(report_interval_s=0)


def test_static_caps_scale_with_cpus():
    policy = load_policy("examples/policies/fraud.yaml")
    caps = static_caps(policy, {"a": 2.0, "b": 0.0})  # a node without a CPU counts as one
    assert caps["a"] == {"critical": 128, "standard": 256, "sheddable": 512}
    assert caps["b"]["critical"] == 64


def test_node_agent_logic_in_process():
    from agentic_ray.actors._node_agent import NodeAgentImpl
    from agentic_ray.testing.nvml import FakeGpu, FakeNvml

    agent = NodeAgentImpl("n" * 56, {"zone": "eu-west"}, nvml=FakeNvml([FakeGpu(util_pct=40)]))
    assert agent.snapshot().accelerator["gpus"][0]["util_pct"] == 40.0
    assert agent.set_lease(NodeLease({"critical": 2}, granted_at=0.0, lease_s=3.0, revision=7)) == 7
    agent.record_batch([Started("critical"), Started("critical")])
    assert not agent.admit("critical") and agent.closed_classes() == ["critical"]
    assert agent.admit("standard")
    agent.record_batch([Ended("critical", "fraud", None, 12.0, 30.0, True, True, 120.0),
                        Refused("critical", "fraud", None, 200.0)])  # fmt: skip
    assert agent.admit("critical")
    report = agent.take_report()
    s = report.summaries["critical|fraud"]
    assert (s.count, s.missed) == (2, 1)
    assert report.snapshot.service_ms["critical|fraud"] == 12.0
    assert agent.take_report().summaries == {}
    stats = agent.stats()
    assert stats["totals"] == {"placed": 0, "started": 2, "finished": 1, "errors": 0, "missed": 0, "refused": 1}
    assert stats["lease"] == {"granted_at": 0.0, "expires_at": 3.0, "revision": 7} and stats["caps"] == {"critical": 2}


def test_node_agent_metrics_per_batch_counts_exact_histograms_sampled():
    from agentic_ray.actors._node_agent import HISTOGRAM_SAMPLES_PER_BATCH, NodeAgentImpl, spread_sample
    from agentic_ray.telemetry.metrics import AgenticMetrics, RecordingMetrics

    k = HISTOGRAM_SAMPLES_PER_BATCH
    assert spread_sample([1.0, 2.0], k) == [1.0, 2.0]
    assert spread_sample([float(i) for i in range(10)], 5) == [0.0, 2.0, 4.0, 6.0, 8.0]
    rec = RecordingMetrics()
    agent = NodeAgentImpl("node-a", {"zone": "eu-west"}, metrics=AgenticMetrics(rec, "agent"))
    n = 3 * k + 1
    agent.record_batch([Started("standard")] * n)
    ends = [Ended("standard", "wf", None, 1.0, float(i), True, True, 50.0 - i) for i in range(n)]
    ends += [Ended("standard", "wf", None, 1.0, 5.0, False, True, 50.0), Refused("standard", "wf", None, 9.0)] * 2
    agent.record_batch(ends)
    # counters are exact: one increment per (class, outcome) carrying the batch's count
    assert rec.value("agentic_completions", component="agent", qos="standard", outcome="ok") == 51  # budget left 50..0
    assert rec.value("agentic_completions", component="agent", qos="standard", outcome="late") == n - 51
    assert rec.value("agentic_completions", component="agent", qos="standard", outcome="error") == 2
    assert rec.value("agentic_rejected", component="agent", qos="standard", reason="deadline_passed") == 2
    assert rec.value("agentic_queue_depth", component="agent", qos="standard") == 0
    # histograms: at most k values per class and batch, spread over the batch in arrival order
    latencies = rec.value("agentic_observed_latency_ms", component="agent", qos="standard")
    assert len(latencies) == k and latencies[0] == 0.0 and latencies[-1] >= n - 4
    assert latencies == sorted(latencies)
    assert len(rec.value("agentic_budget_left_ms", component="agent", qos="standard")) == k
    totals = {"placed": 0, "started": n, "finished": n + 2, "errors": 2, "missed": 0, "refused": 2}
    assert agent.stats()["totals"] == totals


def test_allocate_caps_uses_the_budget_allocator_when_there_is_demand():
    from agentic_ray.control._leases import allocate_caps

    policy = load_policy("examples/policies/fraud.yaml")
    nodes = {"fast": 2.0, "slow": 2.0}
    service = {"fast": {"critical|fraud": 5.0}, "slow": {"critical|fraud": 50.0}}
    static = allocate_caps(policy, nodes, service, {})
    assert static == static_caps(policy, nodes)
    caps = allocate_caps(policy, nodes, service, {"critical": 20.0})
    # critical: 150 ms budget; cap = slots + floor(slots * (budget - service) / service) with no higher class
    assert caps["fast"]["critical"] == 2 + 2 * (150 - 5) // 5
    assert caps["slow"]["critical"] == 2 + 2 * (150 - 50) // 50
    assert caps["fast"]["standard"] == static["fast"]["standard"]  # no demand: static cap
    assert allocate_caps(policy, nodes, service, {"unknown": 3.0}) == static


def test_agent_sends_snapshots_between_full_reports_only_when_placement_facts_change():
    from agentic_ray.actors._node_agent import NodeAgentImpl

    agent = NodeAgentImpl("n" * 56, {"zone": "eu-west"}, {"report_interval_s": 0.5, "snapshot_interval_s": 0.1})
    full, is_full, facts = agent.next_report(now=10.0, last_full=float("-inf"), last_facts=None)
    assert full is not None and full.snapshot.node_id == "n" * 56 and is_full
    assert facts == agent.placement_facts()
    assert agent.next_report(now=10.1, last_full=10.0, last_facts=facts, last_sent=10.0)[0] is None  # no change
    heartbeat, is_full, _ = agent.next_report(now=10.3, last_full=10.0, last_facts=facts, last_sent=10.0)
    assert heartbeat.summaries == {} and not is_full  # unchanged, but half a report interval passed
    agent.record_batch([Started("critical"), Ended("critical", "fraud", None, 3.0, 5.0, True, True, 10.0)])
    agent.record_batch([Started("critical")])
    snap_only, is_full, new_facts = agent.next_report(now=10.2, last_full=10.0, last_facts=facts)
    assert snap_only.summaries == {} and snap_only.snapshot.inflight == 1 and not is_full
    assert new_facts != facts
    assert agent.delta, "a snapshot-only report keeps the summary delta for the next full report"
    full, is_full, _ = agent.next_report(now=10.5, last_full=10.0, last_facts=new_facts)
    assert is_full
    assert full.summaries["critical|fraud"].count == 1 and not agent.delta


def test_stage_keys_round_trip():
    from agentic_ray.control._summary import split_stage_key, stage_key

    assert stage_key("fraud", "score") == "fraud/score" and stage_key("fraud", None) == "fraud"
    assert stage_key(None, "score") is None
    assert split_stage_key("fraud/score") == ("fraud", "score") and split_stage_key("fraud") == ("fraud", None)


@pytest.mark.ray  # starts Ray in a subprocess
def test_accounting_thread_never_restarts_ray_after_shutdown():
    """Events buffered after ``ray.shutdown()`` are dropped: a Ray call from the thread would start a new
    Ray through Ray's auto-init (seen as a teardown failure once placements were reported)."""
    code = (
        "import os, time, tempfile, ray\n"
        "from agentic_ray.actors._worker import Placed, _Accountant\n"
        "ray.init(num_cpus=1, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix='agr-acct-'))\n"
        "acct = _Accountant()\n"
        "ray.shutdown()\n"
        "acct.add(Placed('critical', 0.0), 'n' * 56)\n"
        "time.sleep(4 * acct.FLUSH_S)\n"
        "assert not ray.is_initialized(), 'the accounting thread started Ray again'\n"
        "assert acct.dropped == 1 and not acct.events, (acct.dropped, list(acct.events))\n"
        "acct.stop()\n"
        "assert not acct._thread.is_alive()\n"
    )
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


@pytest.mark.ray  # starts Ray in a subprocess
def test_view_thread_never_restarts_ray_after_shutdown():
    """A plain ``ray.shutdown()`` after ``agentic_ray.init`` (not ``agentic_ray.shutdown``) leaves this
    process's view thread running: it must not call Ray then, or Ray's auto-init starts or joins a cluster
    behind the caller's back and the next ``init`` fails ("ray.init twice"; seen in CI)."""
    code = (
        "import os, time, tempfile, ray\n"
        "from agentic_ray.actors import _view_cache\n"
        "ray.init(num_cpus=1, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix='agr-view-'))\n"
        "cache = _view_cache.ClusterViewCache()\n"
        "calls = []\n"
        "fetch = cache.fetch_view\n"
        "def counted(*a, **k):\n"
        "    calls.append(ray.is_initialized())  # False: a call after shutdown, which auto-inits Ray\n"
        "    return fetch(*a, **k)\n"
        "cache.fetch_view = counted\n"
        "cache.last_used = time.monotonic() - 2 * _view_cache.VIEW_IDLE_S  # idle: no call in flight\n"
        "time.sleep(5 * _view_cache.VIEW_REFRESH_S)\n"
        "ray.shutdown()\n"
        "cache.last_used = time.monotonic()  # in use again: the thread polls\n"
        "time.sleep(10 * _view_cache.VIEW_REFRESH_S)\n"
        "late = calls.count(False)\n"
        "assert not late, f'the view thread called Ray {late} time(s) after shutdown'\n"
        "assert not ray.is_initialized(), 'the view thread started Ray again'\n"
        "cache.stop()\n"
    )
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
