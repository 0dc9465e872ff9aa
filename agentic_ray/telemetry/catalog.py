"""The catalogue of every metric agentic-ray exports: name, kind, tag keys, histogram boundaries.

One table, read by the Ray adapter (to create ``ray.util.metrics`` objects), by the recording adapter
(to validate tags in tests) and by the Grafana dashboard test (to check every query uses an exported
name). Names start with ``agentic_``; Ray exports them to Prometheus with a ``ray_`` prefix, counters
with ``_total`` and histograms as ``_bucket``/``_sum``/``_count`` (``prometheus_names``).

Tags are low-cardinality by rule: class, action, reason, component, zone, breaker target (a replica or
node id), alert kind; never a request id. ``component`` says which part recorded the point
(``router``, ``replica``, ``agent``, ``task``, ``coordinator``, ``sim``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BREAKER_STATES",
    "COUNTER",
    "GAUGE",
    "HISTOGRAM",
    "LATENCY_BOUNDARIES_MS",
    "TOKEN_BOUNDARIES_MS",
    "METRICS",
    "MetricSpec",
    "metric_spec",
    "prometheus_names",
]

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

# Milliseconds; Ray needs strictly positive boundaries, so late completions (negative budget left)
# fall in the first bucket and are counted exactly by agentic_completions{outcome="late"}.
LATENCY_BOUNDARIES_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)

# Milliseconds per output token (agentic_tpot_ms): decode steps are ~5-200 ms.
TOKEN_BOUNDARIES_MS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 500.0)

# agentic_breaker_state values.
BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric. ``boundaries`` only for histograms."""

    name: str
    kind: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...] = ()


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("agentic_decisions", COUNTER, "Routing/admission/placement decisions by action and QoS class.",
               ("component", "action", "qos")),
    MetricSpec("agentic_shed", COUNTER, "Requests shed before queueing (router), by class and reason.",
               ("component", "qos", "reason")),
    MetricSpec("agentic_rejected", COUNTER, "Requests rejected or dropped by an admission gate, by class and reason.",
               ("component", "qos", "reason")),
    MetricSpec("agentic_completions", COUNTER, "Finished requests by class and outcome (ok, late, error).",
               ("component", "qos", "outcome")),
    MetricSpec("agentic_queue_depth", GAUGE, "Requests queued per class at this component.", ("component", "qos")),
    MetricSpec("agentic_predicted_latency_ms", HISTOGRAM,
               "Predicted completion time at decision time (sampled decisions), ms.", ("component", "qos"),
               LATENCY_BOUNDARIES_MS),
    MetricSpec("agentic_observed_latency_ms", HISTOGRAM, "Observed end-to-end latency of finished requests, ms.",
               ("component", "qos"), LATENCY_BOUNDARIES_MS),
    MetricSpec("agentic_budget_left_ms", HISTOGRAM, "Budget left at completion (late ones in the first bucket), ms.",
               ("component", "qos"), LATENCY_BOUNDARIES_MS),
    MetricSpec("agentic_slo_attainment", GAUGE, "Fraction of requests finished within budget over the SLO window.",
               ("qos",)),
    MetricSpec("agentic_breaker_state", GAUGE, "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
               ("component", "target")),
    MetricSpec("agentic_coordinator_rounds", COUNTER, "Budget rounds run by the coordinators, by level.",
               ("level",)),
    MetricSpec("agentic_alerts_active", GAUGE, "Active burn-rate and drift alerts (1 active, 0 cleared).",
               ("kind", "qos", "window")),
    MetricSpec("agentic_alerts_raised", COUNTER, "Alerts raised (transitions to active).", ("kind", "qos")),
    MetricSpec("agentic_policy_version_info", GAUGE, "1 for the active policy version, 0 for replaced ones.",
               ("version",)),
    MetricSpec("agentic_ttft_ms", HISTOGRAM, "Time to first token of finished streams (arrival to first item), ms.",
               ("component", "qos"), LATENCY_BOUNDARIES_MS),
    MetricSpec("agentic_tpot_ms", HISTOGRAM, "Time per output token of finished streams after the first, ms.",
               ("component", "qos"), TOKEN_BOUNDARIES_MS),
    MetricSpec("agentic_stream_completions", COUNTER,
               "Finished streams by class and whether TTFT and TPOT met the class's ttft_ms / tpot_ms "
               "(ok, late; none: the class sets no such budget or the stream had one token).",
               ("component", "qos", "ttft", "tpot")),
)  # fmt: skip

_BY_NAME = {m.name: m for m in METRICS}


def metric_spec(name: str) -> MetricSpec:
    """The spec of ``name``; ``KeyError`` naming the known metrics when it is not one of ours."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(_BY_NAME))}") from None


def prometheus_names(prefix: str = "ray_") -> frozenset[str]:
    """Every series name a Prometheus scrape of Ray shows for our metrics (with Ray's prefix)."""
    names: set[str] = set()
    for m in METRICS:
        base = prefix + m.name
        if m.kind == COUNTER:
            names.add(base + "_total")
        elif m.kind == HISTOGRAM:
            names.update({base + "_bucket", base + "_sum", base + "_count"})
        else:
            names.add(base)
    return frozenset(names)
