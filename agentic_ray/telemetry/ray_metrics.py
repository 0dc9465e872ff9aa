"""``RayMetrics``: the ``MetricsSink`` that records through ``ray.util.metrics``.

Ray aggregates the points of every worker on a node and exports them on the node's metrics endpoint
(``ray.nodes()[i]["MetricsExportPort"]``), prefixed ``ray_``, next to Ray's and Serve's own metrics, so
Prometheus, Grafana and the Ray dashboard see them without another scrape target. ``ray.util.metrics``
is imported on first use, never at import time, and each metric object is created once per process
(``ray.util.metrics`` objects are registered with the core worker; creating them per call is slow and
leaks). Points recorded before ``ray.init`` in a driver are dropped by Ray; inside tasks, actors and
Serve replicas Ray is always initialised.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from agentic_ray.telemetry.catalog import COUNTER, GAUGE, metric_spec

__all__ = ["RayMetrics", "ray_metric"]

_OBJECTS: dict[str, Any] = {}
_LOCK = threading.Lock()


def ray_metric(name: str) -> Any:
    """The process's ``ray.util.metrics`` object for catalogue metric ``name`` (created on first use)."""
    obj = _OBJECTS.get(name)
    if obj is not None:
        return obj
    with _LOCK:
        obj = _OBJECTS.get(name)
        if obj is None:
            from ray.util import metrics as rm

            spec = metric_spec(name)
            if spec.kind == COUNTER:
                obj = rm.Counter(spec.name, description=spec.description, tag_keys=spec.tag_keys)
            elif spec.kind == GAUGE:
                obj = rm.Gauge(spec.name, description=spec.description, tag_keys=spec.tag_keys)
            else:  # histogram
                obj = rm.Histogram(
                    spec.name, description=spec.description, boundaries=list(spec.boundaries), tag_keys=spec.tag_keys
                )
            _OBJECTS[name] = obj
    return obj


class RayMetrics:
    """Records catalogue metrics with ``ray.util.metrics``. Stateless; every instance shares the
    process-wide metric objects. Errors in recording (a missing tag) raise, as Ray does."""

    def inc(self, name: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        ray_metric(name).inc(value, tags=dict(tags))

    def set(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        ray_metric(name).set(value, tags=dict(tags))

    def observe(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        ray_metric(name).observe(value, tags=dict(tags))
