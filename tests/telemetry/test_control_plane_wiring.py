"""Pure wiring checks: the drift detector's reports through ``publish_drift_report`` into
``RecordingMetrics`` (as the GlobalCoordinator does), and the node agent's task accounting."""

from __future__ import annotations

import logging

from agentic_ray.actors._node_agent import NodeAgentImpl
from agentic_ray.actors._worker import Ended, Refused, Started
from agentic_ray.control._drift import BurnWindow, DriftConfig, DriftDetector
from agentic_ray.control._summary import ClassSummary
from agentic_ray.telemetry import AgenticMetrics, RecordingMetrics, publish_drift_report
from agentic_ray.testing.clock import ManualClock

CONFIG = DriftConfig(slo_target=0.9, windows=(BurnWindow(10.0, 2.0, 2.0),), p99_window_s=5.0, min_samples=5)


def _delta(n_ok: int, n_late: int) -> ClassSummary:
    s = ClassSummary("critical", None)
    for _ in range(n_ok):
        s.record(10.0, True, True)
    for _ in range(n_late):
        s.record(400.0, True, False)
    return s


def test_drift_alerts_go_through_publish_drift_report(caplog):
    clock = ManualClock(0.0)
    detector = DriftDetector(CONFIG)
    rec = RecordingMetrics()
    metrics = AgenticMetrics(rec, "coordinator")
    detector.observe(_delta(2, 8), 150.0, clock.now())
    with caplog.at_level(logging.INFO, logger="agentic_ray.alerts"):
        publish_drift_report(metrics, detector.evaluate(clock.now()))
    assert rec.value("agentic_alerts_raised", kind="p99_over_budget", qos="critical") == 1
    assert rec.value("agentic_alerts_raised", kind="burn_rate", qos="critical") == 1
    assert rec.value("agentic_alerts_active", kind="burn_rate", qos="critical", window="10s/2s") == 1.0
    assert rec.value("agentic_alerts_active", kind="p99_over_budget", qos="critical", window="5s") == 1.0
    assert rec.value("agentic_slo_attainment", qos="critical") == 0.2  # 2 of 10 within budget
    assert [r.levelname for r in caplog.records].count("WARNING") == 2
    # the problem stops: the alerts clear (INFO records, gauges back to 0), nothing is raised again
    caplog.clear()
    clock.advance(11.0)
    detector.observe(_delta(10, 0), 150.0, clock.now())
    with caplog.at_level(logging.INFO, logger="agentic_ray.alerts"):
        publish_drift_report(metrics, detector.evaluate(clock.now()))
    assert rec.value("agentic_alerts_active", kind="burn_rate", qos="critical", window="10s/2s") == 0.0
    assert rec.value("agentic_alerts_active", kind="p99_over_budget", qos="critical", window="5s") == 0.0
    assert rec.total("agentic_alerts_raised") == 2
    assert rec.value("agentic_slo_attainment", qos="critical") == 1.0
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]


def test_agent_accounting_records_completions_refusals_and_queue_depth():
    rec = RecordingMetrics()
    agent = NodeAgentImpl("node-a", {"zone": "eu-west"}, metrics=AgenticMetrics(rec, "agent"))
    agent.record_batch([Started("critical"), Started("critical"), Started("batch")])
    assert rec.value("agentic_queue_depth", component="agent", qos="critical") == 2
    agent.record_batch(
        [
            Ended("critical", None, None, 5.0, 20.0, True, True, 130.0),
            Ended("critical", None, None, 5.0, 200.0, True, False, -50.0),
            Ended("batch", "wf", None, 5.0, 30.0, False, True, 900.0),
            Refused("critical", None, None, 400.0),
        ]
    )
    assert rec.value("agentic_completions", component="agent", qos="critical", outcome="ok") == 1
    assert rec.value("agentic_completions", component="agent", qos="critical", outcome="late") == 1
    assert rec.value("agentic_completions", component="agent", qos="batch", outcome="error") == 1
    assert rec.value("agentic_budget_left_ms", component="agent", qos="critical") == [130.0, -50.0]
    assert rec.value("agentic_observed_latency_ms", component="agent", qos="critical") == [20.0, 200.0]
    assert rec.value("agentic_rejected", component="agent", qos="critical", reason="deadline_passed") == 1
    assert rec.value("agentic_queue_depth", component="agent", qos="critical") == 0
    assert rec.value("agentic_queue_depth", component="agent", qos="batch") == 0
