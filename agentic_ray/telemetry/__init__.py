"""Telemetry for agentic-ray: metrics, OpenTelemetry tracing, the tamper-evident decision log, alerts.

- Metrics: ``AgenticMetrics(sink, component)`` over a ``MetricsSink`` (``NoopMetrics`` by default,
  ``RecordingMetrics`` for tests, ``RayMetrics`` for ``ray.util.metrics``); names in ``catalog.METRICS``.
- Per-decision hot path: ``TelemetryHook`` (a Serve ``decision_hook``; ``process_hook`` is the factory).
- Tracing: ``configure_tracing(TracingConfig(...))`` (or ``configure_tracing_from_env()``:
  ``AGENTIC_TRACE_EXPORTER`` / ``AGENTIC_TRACE_SAMPLING``), ``with_trace(kwargs)`` / ``pop_trace(kwargs)``,
  ``inject()`` / ``extract(carrier)``, ``span(name, parent=...)``.
- Decision log: ``DecisionLog`` / ``open_decision_log``, ``verify_log``, ``find_records``.
- Alerts: ``publish_alerts`` / ``publish_drift_report``.

Importing this package does not import Ray (``RayMetrics`` imports ``ray.util.metrics`` on first use).
"""

from agentic_ray.telemetry.alerts import publish_alerts, publish_drift_report
from agentic_ray.telemetry.audit import DecisionLog, LogHead, open_decision_log
from agentic_ray.telemetry.audit_verify import VerifyReport, find_records, verify_log
from agentic_ray.telemetry.catalog import METRICS, MetricSpec, prometheus_names
from agentic_ray.telemetry.hotpath import TelemetryHook, process_hook
from agentic_ray.telemetry.metrics import AgenticMetrics, MetricsSink, NoopMetrics, RecordingMetrics
from agentic_ray.telemetry.ray_metrics import RayMetrics
from agentic_ray.telemetry.tracing import (
    TRACE_KWARG,
    TracingConfig,
    configure_tracing,
    configure_tracing_from_env,
    extract,
    inject,
    pop_trace,
    span,
    with_trace,
)

__all__ = [
    "METRICS",
    "TRACE_KWARG",
    "AgenticMetrics",
    "DecisionLog",
    "LogHead",
    "MetricSpec",
    "MetricsSink",
    "NoopMetrics",
    "RayMetrics",
    "RecordingMetrics",
    "TelemetryHook",
    "TracingConfig",
    "VerifyReport",
    "configure_tracing",
    "configure_tracing_from_env",
    "extract",
    "find_records",
    "inject",
    "open_decision_log",
    "pop_trace",
    "prometheus_names",
    "process_hook",
    "publish_alerts",
    "publish_drift_report",
    "span",
    "verify_log",
    "with_trace",
]
