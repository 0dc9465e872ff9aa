"""Publish the coordinator's burn-rate and drift alerts as metrics and log records.

The GlobalCoordinator computes alerts (``actors.drift.DriftDetector``: p99 over budget, multiwindow
burn rate) and keeps them for ``status()``; after each evaluation it hands the report to
``publish_drift_report``, which

- sets ``agentic_alerts_active{kind,qos,window}`` to 1 for every active alert and to 0 for cleared ones
  (the series stays, so a Grafana panel shows when it cleared),
- adds 1 to ``agentic_alerts_raised{kind,qos}`` per newly raised alert,
- logs ``WARNING agentic alert raised ...`` / ``INFO agentic alert cleared ...`` on the
  ``agentic_ray.alerts`` logger with the alert as structured ``extra={"agentic_alert": {...}}``,
- sets ``agentic_slo_attainment{qos}`` from per-key figures that carry ``attainment`` (when present).

Alerts are taken by duck typing (``kind``, ``qos``, ``window``, ``value``, ``threshold``, ``id``), so a
dict from ``Alert.to_dict()`` works as well as the object.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from agentic_ray.telemetry.metrics import AgenticMetrics

__all__ = ["ALERT_LOGGER", "alert_fields", "publish_alerts", "publish_drift_report"]

ALERT_LOGGER = logging.getLogger("agentic_ray.alerts")


def alert_fields(alert: Any) -> dict[str, Any]:
    """An alert (object or dict) as a plain dict with at least kind, qos, window, value, threshold, id."""
    if isinstance(alert, Mapping):
        d = dict(alert)
    elif callable(getattr(alert, "to_dict", None)):
        d = dict(alert.to_dict())
    else:
        d = {k: getattr(alert, k) for k in ("kind", "qos", "workflow", "window", "value", "threshold", "since")}
    d.setdefault("id", f"{d.get('kind')}:{d.get('qos')}|{d.get('workflow') or '-'}:{d.get('window')}")
    return d


def publish_alerts(
    metrics: AgenticMetrics,
    active: Iterable[Any] = (),
    raised: Iterable[Any] = (),
    cleared: Iterable[Any] = (),
    logger: logging.Logger = ALERT_LOGGER,
) -> None:
    """Record alert transitions and the active set as metrics and log records (see module docstring)."""
    sink = metrics.sink
    for a in map(alert_fields, raised):
        sink.inc("agentic_alerts_raised", {"kind": str(a["kind"]), "qos": str(a["qos"])})
        logger.warning(
            "agentic alert raised %s value=%.4g threshold=%.4g", a["id"], a.get("value"), a.get("threshold"),
            extra={"agentic_alert": {"event": "raised", **a}},
        )  # fmt: skip
    for a in map(alert_fields, cleared):
        sink.set("agentic_alerts_active", 0.0, _tags(a))
        logger.info("agentic alert cleared %s", a["id"], extra={"agentic_alert": {"event": "cleared", **a}})
    for a in map(alert_fields, active):
        sink.set("agentic_alerts_active", 1.0, _tags(a))


def publish_drift_report(metrics: AgenticMetrics, report: Any, logger: logging.Logger = ALERT_LOGGER) -> None:
    """``publish_alerts`` for a ``DriftReport`` (``active``, ``raised``, ``cleared``, ``figures``)."""
    publish_alerts(metrics, report.active, report.raised, report.cleared, logger)
    for fig in (getattr(report, "figures", None) or {}).values():
        attainment = fig.get("attainment") if isinstance(fig, Mapping) else None
        if attainment is not None and fig.get("qos") is not None:
            metrics.slo_attainment(str(fig["qos"]), float(attainment))


def _tags(a: Mapping[str, Any]) -> dict[str, str]:
    return {"kind": str(a["kind"]), "qos": str(a["qos"]), "window": str(a.get("window", ""))}
