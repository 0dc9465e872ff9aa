"""Metrics protocol, adapters, catalogue, and the no-Ray-at-import rule."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentic_ray.telemetry.catalog import METRICS, metric_spec, prometheus_names
from agentic_ray.telemetry.metrics import AgenticMetrics, MetricsSink, NoopMetrics, RecordingMetrics
from agentic_ray.telemetry.ray_metrics import RayMetrics


def test_importing_telemetry_leaves_ray_out():
    code = (
        "import sys, agentic_ray.telemetry, agentic_ray.telemetry.ray_metrics, agentic_ray.cli.trace_cmd, "
        "agentic_ray.cli.status_cmd; print(any(m == 'ray' or m.startswith('ray.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_adapters_satisfy_the_protocol():
    for sink in (NoopMetrics(), RecordingMetrics(), RayMetrics()):
        assert isinstance(sink, MetricsSink)


def test_catalogue_names_are_prefixed_unique_and_have_no_request_ids():
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    assert all(n.startswith("agentic_") for n in names)
    assert not any("request" in k or k == "id" for m in METRICS for k in m.tag_keys)
    assert all(m.boundaries and all(b > 0 for b in m.boundaries) for m in METRICS if m.kind == "histogram")
    assert "ray_agentic_decisions_total" in prometheus_names()
    assert "ray_agentic_observed_latency_ms_bucket" in prometheus_names()
    assert "ray_agentic_queue_depth" in prometheus_names()
    with pytest.raises(KeyError, match="unknown metric"):
        metric_spec("agentic_nope")


def test_facade_records_every_metric_with_its_tags():
    rec = RecordingMetrics()
    m = AgenticMetrics(rec, component="router")
    m.decision("route", "critical")
    m.decision("route", "critical", 2)
    m.shed("batch", "deadline_passed")
    m.rejected("standard", "queue_full")
    m.queue_depth("critical", 3)
    m.predicted_latency("critical", 12.0)
    m.predicted_latency("critical", float("nan"))  # skipped
    m.completion("critical", 40.0, 10.0)
    m.completion("critical", 90.0, -5.0)
    m.completion("batch", 5.0, 100.0, ok=False)
    m.slo_attainment("critical", 0.97)
    m.breaker_state("replica-1", "open")
    m.coordinator_round("zone")
    m.policy_version("v1")
    m.policy_version("v2")
    assert rec.value("agentic_decisions", component="router", action="route", qos="critical") == 3
    assert rec.value("agentic_shed", component="router", qos="batch", reason="deadline_passed") == 1
    assert rec.value("agentic_rejected", component="router", qos="standard", reason="queue_full") == 1
    assert rec.value("agentic_queue_depth", component="router", qos="critical") == 3
    assert rec.value("agentic_predicted_latency_ms", component="router", qos="critical") == [12.0]
    assert rec.value("agentic_completions", component="router", qos="critical", outcome="ok") == 1
    assert rec.value("agentic_completions", component="router", qos="critical", outcome="late") == 1
    assert rec.value("agentic_completions", component="router", qos="batch", outcome="error") == 1
    assert rec.value("agentic_observed_latency_ms", component="router", qos="critical") == [40.0, 90.0]
    assert rec.value("agentic_budget_left_ms", component="router", qos="critical") == [10.0, -5.0]
    assert rec.value("agentic_slo_attainment", qos="critical") == 0.97
    assert rec.value("agentic_breaker_state", component="router", target="replica-1") == 2.0
    assert rec.value("agentic_coordinator_rounds", level="zone") == 1
    assert rec.value("agentic_policy_version_info", version="v1") == 0.0
    assert rec.value("agentic_policy_version_info", version="v2") == 1.0
    assert rec.total("agentic_completions", qos="critical") == 2
    with pytest.raises(ValueError, match="state"):
        m.breaker_state("r", "ajar")


def test_recording_sink_checks_kind_and_tags():
    rec = RecordingMetrics()
    with pytest.raises(TypeError, match="counter"):
        rec.set("agentic_decisions", 1, {"component": "x", "action": "a", "qos": "q"})
    with pytest.raises(ValueError, match="tag keys"):
        rec.inc("agentic_decisions", {"qos": "q"})
    with pytest.raises(ValueError, match="> 0"):
        rec.inc("agentic_decisions", {"component": "x", "action": "a", "qos": "q"}, 0)


def test_noop_is_the_default():
    m = AgenticMetrics()
    assert isinstance(m.sink, NoopMetrics)
    m.decision("route", "critical")  # nothing happens, nothing raises


def test_stream_figures_are_judged_against_the_class_token_budgets():
    rec = RecordingMetrics()
    m = AgenticMetrics(rec, component="replica")
    m.stream("chat", 300.0, 40.0, 500.0, 50.0)
    m.stream("chat", 700.0, 60.0, 500.0, 50.0)
    m.stream("chat", 100.0, None, 500.0, 50.0)  # one token: no TPOT
    m.stream("batch", 9000.0, 80.0, None, None)  # no budgets set
    assert rec.value("agentic_ttft_ms", component="replica", qos="chat") == [300.0, 700.0, 100.0]
    assert rec.value("agentic_tpot_ms", component="replica", qos="chat") == [40.0, 60.0]

    def n(qos: str, ttft: str, tpot: str) -> float | None:
        return rec.value("agentic_stream_completions", component="replica", qos=qos, ttft=ttft, tpot=tpot)

    assert (n("chat", "ok", "ok"), n("chat", "late", "late"), n("chat", "ok", "none")) == (1, 1, 1)
    assert n("batch", "none", "none") == 1
