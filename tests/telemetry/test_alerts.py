"""Alerts from the drift detector become metrics and log records."""

from __future__ import annotations

import logging

from agentic_ray.control._drift import BurnWindow, DriftConfig, DriftDetector
from agentic_ray.control._summary import ClassSummary
from agentic_ray.telemetry.alerts import publish_alerts, publish_drift_report
from agentic_ray.telemetry.metrics import AgenticMetrics, RecordingMetrics


def summary(count, late, latency_ms):
    s = ClassSummary("critical", None)
    for k in range(count):
        s.record(latency_ms, ok=True, met_deadline=k >= late)
    return s


def test_drift_report_alerts_become_metrics_and_logs(caplog):
    cfg = DriftConfig(slo_target=0.9, windows=(BurnWindow(60.0, 10.0, 2.0),), p99_window_s=60.0, min_samples=5)
    det = DriftDetector(cfg)
    det.observe(summary(50, 40, 500.0), budget_ms=100.0, now=1.0)
    rec = RecordingMetrics()
    metrics = AgenticMetrics(rec, "coordinator")
    with caplog.at_level(logging.INFO, logger="agentic_ray.alerts"):
        report = det.evaluate(2.0)
        assert report.raised, "the drift detector should raise alerts for this input"
        publish_drift_report(metrics, report)
    for a in report.raised:
        assert rec.value("agentic_alerts_raised", kind=a.kind, qos="critical") >= 1
        assert rec.value("agentic_alerts_active", kind=a.kind, qos="critical", window=a.window) == 1.0
    raised_logs = [r for r in caplog.records if r.getMessage().startswith("agentic alert raised")]
    assert len(raised_logs) == len(report.raised)
    assert raised_logs[0].levelno == logging.WARNING
    assert raised_logs[0].agentic_alert["event"] == "raised"

    later = det.evaluate(10_000.0)  # the window is empty: everything clears
    with caplog.at_level(logging.INFO, logger="agentic_ray.alerts"):
        publish_drift_report(metrics, later)
    for a in later.cleared:
        assert rec.value("agentic_alerts_active", kind=a.kind, qos="critical", window=a.window) == 0.0
    assert any(r.getMessage().startswith("agentic alert cleared") for r in caplog.records)


def test_publish_alerts_takes_dicts():
    rec = RecordingMetrics()
    alert = {
        "kind": "burn_rate",
        "qos": "standard",
        "workflow": None,
        "window": "3600s/300s",
        "value": 20.0,
        "threshold": 14.4,
    }
    publish_alerts(AgenticMetrics(rec), active=[alert], raised=[alert])
    assert rec.value("agentic_alerts_raised", kind="burn_rate", qos="standard") == 1
    assert rec.value("agentic_alerts_active", kind="burn_rate", qos="standard", window="3600s/300s") == 1.0
