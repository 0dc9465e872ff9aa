"""On a real Ray cluster: our metrics on Ray's own metrics endpoint, and ``agentic-ray status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import ray

pytestmark = pytest.mark.ray


@ray.remote(num_cpus=0)
class _Recorder:
    """Records every catalogue metric from inside the cluster, as the actors and replicas will."""

    def record_all(self) -> str:
        from agentic_ray.serve._hooks import DecisionEvent
        from agentic_ray.telemetry.hotpath import TelemetryHook
        from agentic_ray.telemetry.metrics import AgenticMetrics
        from agentic_ray.telemetry.ray_metrics import RayMetrics

        m = AgenticMetrics(RayMetrics(), component="replica")
        m.rejected("standard", "queue_full")
        m.queue_depth("critical", 4)
        m.predicted_latency("critical", 12.0)
        m.completion("critical", 30.0, 70.0)
        m.slo_attainment("critical", 0.99)
        m.breaker_state("replica-a", "open")
        m.coordinator_round("global")
        m.policy_version("sha256:0123456789ab")
        m.stream("chat", 320.0, 25.0, 500.0, 50.0)
        m.sink.set("agentic_alerts_active", 1.0, {"kind": "burn_rate", "qos": "critical", "window": "60s/10s"})
        m.sink.inc("agentic_alerts_raised", {"kind": "burn_rate", "qos": "critical"})
        hook = TelemetryHook(RayMetrics(), sample_every=1, flush_interval_s=0)
        for _ in range(3):
            hook.record(DecisionEvent("router", "route", "req", "critical", "", "rep-a", 10.0, 90.0))
        hook.record(DecisionEvent("router", "shed", "req", "batch", "deadline_passed"))
        hook.flush()
        return ray.get_runtime_context().get_node_id()


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_metrics_reach_rays_prometheus_endpoint(ray_cluster):
    from prometheus_client.parser import text_string_to_metric_families

    from agentic_ray.telemetry.catalog import METRICS

    recorder = _Recorder.remote()
    node_id = ray.get(recorder.record_all.remote(), timeout=60)
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    wanted = {
        "ray_agentic_decisions_total": {"component": "router", "action": "route", "qos": "critical"},
        "ray_agentic_shed_total": {"component": "router", "qos": "batch", "reason": "deadline_passed"},
        "ray_agentic_rejected_total": {"component": "replica", "qos": "standard", "reason": "queue_full"},
        "ray_agentic_completions_total": {"component": "replica", "qos": "critical", "outcome": "ok"},
        "ray_agentic_queue_depth": {"component": "replica", "qos": "critical"},
        "ray_agentic_predicted_latency_ms_bucket": {"component": "router", "qos": "critical"},
        "ray_agentic_observed_latency_ms_count": {"component": "replica", "qos": "critical"},
        "ray_agentic_budget_left_ms_sum": {"component": "replica", "qos": "critical"},
        "ray_agentic_slo_attainment": {"qos": "critical"},
        "ray_agentic_breaker_state": {"component": "replica", "target": "replica-a"},
        "ray_agentic_coordinator_rounds_total": {"level": "global"},
        "ray_agentic_alerts_active": {"kind": "burn_rate", "qos": "critical", "window": "60s/10s"},
        "ray_agentic_alerts_raised_total": {"kind": "burn_rate", "qos": "critical"},
        "ray_agentic_policy_version_info": {"version": "sha256:0123456789ab"},
        "ray_agentic_ttft_ms_bucket": {"component": "replica", "qos": "chat"},
        "ray_agentic_tpot_ms_count": {"component": "replica", "qos": "chat"},
        "ray_agentic_stream_completions_total": {"component": "replica", "qos": "chat", "ttft": "ok", "tpot": "ok"},
    }
    assert {n.split("_total")[0].rsplit("_bucket")[0] for n in wanted} >= {"ray_" + m.name for m in METRICS} - {
        "ray_agentic_observed_latency_ms", "ray_agentic_budget_left_ms", "ray_agentic_tpot_ms"}  # fmt: skip
    deadline = time.monotonic() + 90
    found: dict[str, dict] = {}
    while time.monotonic() < deadline:
        try:
            text = _scrape(url)
        except OSError:
            text = ""
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                want = wanted.get(sample.name)
                if want is not None and all(sample.labels.get(k) == v for k, v in want.items()):
                    found[sample.name] = sample
        if set(found) == set(wanted):
            break
        time.sleep(2)
    missing = sorted(set(wanted) - set(found))
    assert not missing, f"not exported within 90 s from {url}: {missing}"
    assert found["ray_agentic_decisions_total"].value == 3
    assert found["ray_agentic_shed_total"].value == 1
    assert found["ray_agentic_breaker_state"].value == 2.0
    assert found["ray_agentic_queue_depth"].value == 4
    for sample in found.values():  # no per-request ids among the labels
        assert "request_id" not in sample.labels and "req" not in sample.labels.values()
    ray.kill(recorder)


def _status_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # the session's RAY_AUTH_MODE and token: the CLI authenticates like any client
    return subprocess.run(
        [sys.executable, "-m", "agentic_ray", "status", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def test_status_without_coordinator_or_cluster_is_exit_2(ray_cluster):
    res = _status_cli("--address", ray_cluster.address, "--namespace", "agentic-h6-nobody")
    assert res.returncode == 2, res.stderr
    assert "no GlobalCoordinator" in res.stderr and "Traceback" not in res.stderr
    res = _status_cli("--address", "127.0.0.1:32998")
    assert res.returncode == 2 and "no Ray cluster" in res.stderr and "Traceback" not in res.stderr


def test_status_of_a_running_control_plane(ray_cluster):
    from agentic_ray import sdk

    sdk.init(wait_s=60)
    try:
        res = _status_cli("--address", ray_cluster.address, "--json")
        assert res.returncode == 0, res.stderr
        status = json.loads(res.stdout)
        assert status["policy"]["version"] and status["policy"]["sha256"]
        assert set(status["zones"]) == {"eu-west", "us-east"}
        assert sum(len(a) for a in status["zones"].values()) == 3
        assert isinstance(status["alerts"], list)
        res = _status_cli("--address", ray_cluster.address)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("policy ") and "eu-west: 2 agent(s)" in res.stdout
        assert "us-east: 1 agent(s)" in res.stdout and "alerts" in res.stdout
    finally:
        sdk.shutdown(stop_control_plane=True)
