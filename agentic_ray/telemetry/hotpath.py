"""``TelemetryHook``: per-decision telemetry cheap enough for the router's hot path.

A routing decision of the pure core takes a few microseconds, and one ``ray.util.metrics`` call costs
about as much (~2 us), an OpenTelemetry span ~3-5 us even when it is not sampled. So per decision the
hook only adds one to an in-process count keyed by (where, outcome, class, reason) and counts down to
the next sampled decision; a background thread turns the counts into metric increments every
``flush_interval_s`` (exact counts, one ``inc`` per key and interval; the idea of statsd's client-side
aggregation). One decision in ``sample_every`` (a random gap with that mean, so periodic traffic is
not aliased) also records its predicted latency into the histogram and, when tracing is configured,
emits an ``agentic.route`` / ``agentic.gate`` span back-dated by the decision's duration. Decisions whose
request carries a sampled W3C trace context (``event.extra["trace"]``) are always traced.
``agentic_predicted_latency_ms`` therefore holds a sample; ``agentic_decisions_total`` counts all.

Building a ``DecisionEvent`` (a frozen dataclass of 13 fields) costs more than the hook itself, so the
hook has a cheaper two-step form for adapters: ``if hook.tally(where, outcome, qos, reason, trace):
hook.detail(DecisionEvent(...))`` builds the event only for the decisions that need it (sampled, traced,
or audited). ``record(event)`` does both steps for callers that already hold an event.

The hook takes ``serve.hooks.DecisionEvent`` by duck typing (``where``, ``outcome``, ``qos``,
``reason``, ``request_id``, ``replica_id``, ``predicted_ms``, ``remaining_ms``, ``rule_ids``,
``policy_version``, ``decision_us``, ``extra``) and never raises into the caller. With a
``DecisionLog`` it also appends every decision to the audit log (not sampled: the log must be complete;
this costs ~10-20 us per decision, measured in ``benchmarks/telemetry_overhead.py``).

Counts swapped out by the flusher are read after a short grace period, so an increment that raced
with the swap lands in the swapped dict before it is read (CPython's GIL switch interval is 5 ms).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
from typing import Any

from agentic_ray.telemetry import tracing
from agentic_ray.telemetry.metrics import AgenticMetrics, MetricsSink

__all__ = ["TelemetryHook", "process_hook"]

log = logging.getLogger(__name__)

_GRACE_S = 0.05
_COMPONENT = {"router": "router", "gate": "replica"}
_REJECT_OUTCOMES = frozenset({"reject", "drop", "evict"})


class TelemetryHook:
    """A ``DecisionHook`` (``record(event)``) that feeds metrics, sampled spans and the decision log.

    ``sink``: where metrics go (``RayMetrics()`` in Ray processes). ``sample_every``: one decision in N
    gets a latency sample and a span (default: ``1 / tracing sampling_ratio``, at least 1).
    ``decision_log``: an ``audit.DecisionLog`` to append every decision to (None: no audit log).
    ``flush_interval_s``: how often the background thread flushes (0: only on ``flush()``).
    """

    def __init__(
        self,
        sink: MetricsSink | None = None,
        *,
        sample_every: int | None = None,
        decision_log: Any = None,
        flush_interval_s: float = 5.0,
        seed: int | None = None,
    ) -> None:
        if sample_every is None:
            ratio = tracing.tracing_config().sampling_ratio
            sample_every = max(1, round(1.0 / ratio)) if ratio > 0 else 1000
        if sample_every < 1:
            raise ValueError(f"sample_every: must be >= 1, got {sample_every!r}")
        self.metrics_by_component: dict[str, AgenticMetrics] = {}
        self.sink = sink
        self.sample_every = sample_every
        self.decision_log = decision_log
        self.flush_interval_s = flush_interval_s
        self.errors = 0
        self._rng = random.Random(seed)
        self._left = self._gap()
        self._counts: dict[tuple[str, str, str, str], int] = {}
        self._pending_sample = False
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _gap(self) -> int:
        return self._rng.randint(1, 2 * self.sample_every - 1)

    def _metrics(self, component: str) -> AgenticMetrics:
        m = self.metrics_by_component.get(component)
        if m is None:
            m = self.metrics_by_component[component] = AgenticMetrics(self.sink, component)
        return m

    # -- hot path ------------------------------------------------------------------------------------
    def record(self, event: Any) -> None:
        """Count ``event``; every ``sample_every``-th (on average) also samples it. Never raises."""
        try:
            if self.tally(event.where, event.outcome, event.qos, event.reason, (event.extra or {}).get("trace")):
                self.detail(event)
        except Exception:
            self._failed()

    def tally(self, where: str, outcome: str, qos: str, reason: str = "", trace: Any = None) -> bool:
        """Count one decision without building an event (the cheap path, ~0.2 us). Returns True when the
        caller should build the ``DecisionEvent`` and pass it to ``detail``: this decision is sampled,
        its request carries a sampled trace context (``trace``, a W3C carrier), or the audit log is on.
        Never raises."""
        key = (where, outcome, qos, reason)
        counts = self._counts
        try:
            counts[key] += 1
        except KeyError:
            counts[key] = 1
            if self._thread is None and self.flush_interval_s > 0:
                self._start_flusher()
        except Exception:  # an unhashable argument
            self._failed()
            return False
        self._left -= 1
        if self._left > 0 and self.decision_log is None and trace is None:
            return False
        if self._left <= 0:
            self._left = self._gap()
            self._pending_sample = True
            return True
        return self.decision_log is not None or tracing.is_sampled(trace)

    def detail(self, event: Any) -> None:
        """The full record of a decision ``tally`` asked for: latency sample and span (when sampled or
        traced) and the audit record (when the log is on). Does not count again. Never raises."""
        try:
            sampled, self._pending_sample = self._pending_sample, False
            extra = event.extra
            if sampled or (extra and tracing.is_sampled(extra.get("trace"))):
                self._sample(event)
            if self.decision_log is not None:
                self._audit(event)
        except Exception:
            self._failed()

    def _failed(self) -> None:
        self.errors += 1
        if self.errors == 1:
            log.exception("agentic telemetry hook failed (further errors are only counted)")

    def _sample(self, event: Any) -> None:
        component = _COMPONENT.get(event.where, event.where)
        if event.predicted_ms is not None:
            self._metrics(component).predicted_latency(event.qos, event.predicted_ms)
        tr = tracing.tracer()
        if tr is tracing._NOOP_TRACER:
            return
        end_ns = time.time_ns()
        start_ns = end_ns - int((event.decision_us or 0.0) * 1000.0)
        extra = event.extra or {}
        attrs = {
            tracing.FORCE_SAMPLE_ATTRIBUTE: True,
            "agentic.outcome": event.outcome,
            "agentic.qos": event.qos,
            "agentic.reason": event.reason,
            "agentic.request_id": str(event.request_id),
            "agentic.policy_version": event.policy_version,
            "agentic.rule_ids": list(event.rule_ids),
        }
        for name, value in (("replica_id", event.replica_id), ("predicted_ms", event.predicted_ms),
                            ("remaining_ms", event.remaining_ms)):  # fmt: skip
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                attrs["agentic." + name] = value
        s = tr.start_span(
            "agentic.route" if event.where == "router" else "agentic.gate",
            context=tracing.extract(extra.get("trace")),
            attributes=attrs,
            start_time=start_ns,
        )
        s.end(end_time=end_ns)

    def _audit(self, event: Any) -> None:
        version = str(event.policy_version)
        # the full sha256 comes in extra when the caller has it; a default version is "sha256:<prefix>"
        sha = (event.extra or {}).get("policy_sha256") or (version[7:] if version.startswith("sha256:") else "")
        self.decision_log.log_decision(
            request_id=str(event.request_id),
            action=event.outcome,
            qos=event.qos,
            policy_version=version,
            policy_sha256=sha,
            rule_ids=event.rule_ids,
            inputs={"where": event.where, "remaining_ms": event.remaining_ms},
            predicted={"predicted_ms": event.predicted_ms, "replica_id": event.replica_id},
            outcome=f"{event.outcome}:{event.reason}" if event.reason else event.outcome,
        )

    # -- flushing ------------------------------------------------------------------------------------
    def flush(self, grace_s: float = 0.0) -> dict[tuple[str, str, str, str], int]:
        """Turn the counts gathered since the last flush into metric increments; returns them."""
        with self._flush_lock:
            counts, self._counts = self._counts, {}
            if grace_s:
                time.sleep(grace_s)
            for (where, outcome, qos, reason), n in counts.items():
                m = self._metrics(_COMPONENT.get(where, where))
                m.decision(outcome, qos, n)
                if outcome == "shed":
                    m.shed(qos, reason or "unspecified", n)
                elif outcome in _REJECT_OUTCOMES:
                    m.rejected(qos, f"{outcome}:{reason}" if reason else outcome, n)
            return counts

    def _start_flusher(self) -> None:
        with self._flush_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._flush_loop, name="agentic-telemetry-flush", daemon=True)
            self._thread.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            with contextlib.suppress(Exception):
                self.flush(grace_s=_GRACE_S)

    def close(self) -> None:
        """Stop the flusher and flush what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.flush_interval_s + 1)
        self.flush(grace_s=_GRACE_S)


_PROCESS_HOOK: TelemetryHook | None = None
_PROCESS_LOCK = threading.Lock()


def process_hook() -> TelemetryHook:
    """This process's ``TelemetryHook`` recording to Ray metrics; a zero-argument factory, so Serve
    deployments name it as ``decision_hook="agentic_ray.telemetry.hotpath:process_hook"``.

    Settings come from the environment of the process (a ``runtime_env``): ``AGENTIC_TRACE_EXPORTER``
    (none/console/otlp/memory) and ``AGENTIC_TRACE_SAMPLING`` (ratio) configure tracing when set;
    ``AGENTIC_DECISION_LOG_DIR`` turns the audit log on, one file per process
    (``decisions-<pid>.jsonl``).
    """
    global _PROCESS_HOOK
    with _PROCESS_LOCK:
        if _PROCESS_HOOK is None:
            from agentic_ray.telemetry.ray_metrics import RayMetrics

            exporter = os.environ.get("AGENTIC_TRACE_EXPORTER")
            if exporter:
                ratio = float(os.environ.get("AGENTIC_TRACE_SAMPLING", str(tracing.TracingConfig().sampling_ratio)))
                tracing.configure_tracing(tracing.TracingConfig(exporter=exporter, sampling_ratio=ratio))
            log_dir = os.environ.get("AGENTIC_DECISION_LOG_DIR")
            decision_log = None
            if log_dir:
                from agentic_ray.telemetry.audit import open_decision_log

                decision_log = open_decision_log(os.path.join(log_dir, f"decisions-{os.getpid()}.jsonl"))
            _PROCESS_HOOK = TelemetryHook(RayMetrics(), decision_log=decision_log)
        return _PROCESS_HOOK
