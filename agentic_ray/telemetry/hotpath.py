"""``TelemetryHook``: per-decision telemetry cheap enough for the router's hot path.

A routing decision of the pure core takes ~5 us (16 replicas), while one ``ray.util.metrics`` call
costs ~2 us, a sampled OpenTelemetry span ~20 us and building a 12-field frozen dataclass ~1 us. So
on the hot path the hook does no Python work at all: ``hook.push`` *is* the ``append`` of a list (a C
call), and the adapter pushes one plain tuple per decision in the field order of
``scheduling.events.DecisionEvent`` (``DECISION_FIELDS``; a plain tuple, not the NamedTuple, because the
garbage collector untracks a tuple of atomic values but never a tuple subclass: see that module)::

    hook.push(("router", "route", request.id, request.qos, reason, replica_id, predicted_ms,
               remaining_ms, request.rule_ids, policy.version, decision_us, now, None))

A background thread (every ``flush_interval_s``) takes the buffered entries (viewed as ``DecisionEvent``
where a field is read by name) and

- counts them by (where, outcome, class, reason) with ``collections.Counter`` (C speed) and adds each
  count to ``agentic_decisions`` and, for sheds and rejections, ``agentic_shed`` / ``agentic_rejected``:
  exact counts, one metric call per key and interval (statsd-style client-side aggregation);
- samples one decision in ``sample_every`` (random gaps with that mean, so periodic traffic is not
  aliased): its predicted latency goes into ``agentic_predicted_latency_ms`` (a sample; the counts are
  exact) and, when tracing is configured, it becomes an ``agentic.route`` / ``agentic.gate`` span
  back-dated to when the decision was made;
- appends every decision to the ``DecisionLog`` when one is set (so the audit log lags by at most one
  flush interval, 0.5 s when auditing; a process crash loses at most that window).

Completions: ``hook.completion`` is, like ``push``, a list append, of one ``(request_id, qos, ok,
latency_ms, budget_left_ms, replica_id, at)`` tuple per finished request; the flush writes each as a
``completion`` record of the decision log (only when there is one: adapters do not call it otherwise),
so a request's decision and completion records join by its id.

``record(event)`` (the ``serve.hooks.DecisionHook`` protocol) pushes the event the same way; an event
whose ``extra["trace"]`` carries a sampled W3C context is also traced at once, as a child of
the caller's span. Nothing here raises into the caller.

Taking the buffer is ``n = len(buf); batch = buf[:n]; del buf[:n]``: each step is atomic under the
GIL and later appends land after index ``n``, so no decision is lost or counted twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from operator import itemgetter
from typing import Any

from agentic_ray.scheduling.events import DecisionEvent
from agentic_ray.telemetry import tracing
from agentic_ray.telemetry.metrics import AgenticMetrics, MetricsSink

__all__ = ["DECISION_FIELDS", "TelemetryHook", "process_hook"]

log = logging.getLogger(__name__)

DECISION_FIELDS = DecisionEvent._fields  # the one definition: scheduling.events.DecisionEvent
_KEY = itemgetter(*(DECISION_FIELDS.index(f) for f in ("where", "outcome", "qos", "reason")))
_COMPONENT = {"router": "router", "gate": "replica"}
_REJECT_OUTCOMES = frozenset({"reject", "drop", "evict", "refuse"})
_AUDIT_FLUSH_S = 0.5


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class TelemetryHook:
    """A ``DecisionHook`` that feeds metrics, sampled spans and the decision log (module docstring).

    ``sink``: where metrics go (``RayMetrics()`` in Ray processes). ``sample_every``: one decision in N
    gets a latency sample and a span (default: ``1 / tracing sampling_ratio``). ``decision_log``: an
    ``audit.DecisionLog`` that gets every decision (None: no audit log). ``flush_interval_s``: how often
    the background thread flushes (0: no thread, only ``flush()``). ``push``: the hot-path entry.
    ``totals``: the counts of every decision flushed so far (for ``stats()`` methods and tests).
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
        if flush_interval_s < 0:
            raise ValueError(f"flush_interval_s: must be >= 0, got {flush_interval_s!r}")
        self.sink = sink
        self.sample_every = sample_every
        self.decision_log = decision_log
        self.flush_interval_s = (
            min(flush_interval_s, _AUDIT_FLUSH_S) if decision_log is not None and flush_interval_s else flush_interval_s
        )
        self.errors = 0
        self.policy_sha256: dict[str, str] = {}  # policy version -> full sha256, for audit records
        self.totals: Counter = Counter()  # every decision flushed so far, by (where, outcome, qos, reason)
        self.metrics_by_component: dict[str, AgenticMetrics] = {}
        self._buffer: list[tuple] = []
        self.push = self._buffer.append  # the hot path: a C-level list append of one DECISION_FIELDS tuple
        self._completions: list[tuple] = []
        self.completion = self._completions.append  # (request_id, qos, ok, latency_ms, budget_left_ms, replica, at)
        self._rng = random.Random(seed)
        self._next_sample = self._gap() - 1  # index in the stream of the next sampled decision
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.flush_interval_s > 0:
            self._thread = threading.Thread(target=self._flush_loop, name="agentic-telemetry-flush", daemon=True)
            self._thread.start()

    def register_policy(self, version: str, sha256: str) -> None:
        """Tell the hook the full sha256 of policy ``version``, so audit records carry it (adapters call
        this when they load or change their policy)."""
        self.policy_sha256[str(version)] = str(sha256)

    def _gap(self) -> int:
        return self._rng.randint(1, 2 * self.sample_every - 1)

    def _metrics(self, component: str) -> AgenticMetrics:
        m = self.metrics_by_component.get(component)
        if m is None:
            m = self.metrics_by_component[component] = AgenticMetrics(self.sink, component)
        return m

    def _failed(self) -> None:
        self.errors += 1
        if self.errors == 1:
            log.exception("agentic telemetry hook failed (further errors are only counted)")

    # -- the DecisionHook protocol -------------------------------------------------------------------
    def record(self, event: Any) -> None:
        """Push a ``DecisionEvent``; trace it now when it carries a sampled context."""
        try:
            extra = event.extra
            if extra and tracing.is_sampled(extra.get("trace")):
                self._span(event, extra["trace"])
            self.push(event)
        except Exception:
            self._failed()

    # -- flushing ------------------------------------------------------------------------------------
    def flush(self) -> Counter:
        """Process the decisions pushed since the last flush; returns their counts by
        (where, outcome, qos, reason). Called by the background thread; callable any time."""
        with self._flush_lock:
            buf = self._buffer
            n = len(buf)
            batch = buf[:n]
            del buf[:n]
            if not n:
                self._flush_completions()
                return Counter()
            counts = Counter(map(_KEY, batch))
            self.totals.update(counts)
            for (where, outcome, qos, reason), k in counts.items():
                if outcome == "arrive":  # a router's arrival record: for the decision log only
                    continue
                try:
                    m = self._metrics(_COMPONENT.get(where, where))
                    m.decision(outcome, qos, k)
                    if outcome == "shed":
                        m.shed(qos, reason or "unspecified", k)
                    elif outcome in _REJECT_OUTCOMES:
                        m.rejected(qos, f"{outcome}:{reason}" if reason else outcome, k)
                except Exception:
                    self._failed()
            i = self._next_sample
            while i < n:
                try:
                    self._sample(DecisionEvent._make(batch[i]))
                except Exception:
                    self._failed()
                i += self._gap()
            self._next_sample = i - n
            if self.decision_log is not None:
                for entry in batch:
                    try:
                        self._audit(DecisionEvent._make(entry))
                    except Exception:
                        self._failed()
            self._flush_completions()  # after the decisions: a request's records stay in order in the log
            return counts

    def _flush_completions(self) -> None:
        done = self._completions
        n = len(done)
        if not n:
            return
        batch = done[:n]
        del done[:n]
        if self.decision_log is None:
            return
        for request_id, qos, ok, latency_ms, budget_left_ms, replica_id, at in batch:
            try:
                self.decision_log.log_completion(request_id=str(request_id), qos=str(qos), ok=bool(ok),
                                                 latency_ms=_number(latency_ms), budget_left_ms=_number(budget_left_ms),
                                                 replica_id=replica_id, ts=_number(at))  # fmt: skip
            except Exception:
                self._failed()

    def _sample(self, e: DecisionEvent) -> None:
        predicted = _number(e.predicted_ms)
        if predicted is not None:
            self._metrics(_COMPONENT.get(e.where, e.where)).predicted_latency(e.qos, predicted)
        self._span(e, None)

    def _span(self, e: DecisionEvent, carrier: Any) -> None:
        tr = tracing.tracer()
        if tr is tracing._NOOP_TRACER:
            return
        at = _number(e.at)
        start_ns = int(at * 1e9) if at else time.time_ns()
        end_ns = start_ns + int((_number(e.decision_us) or 0.0) * 1000.0)
        attrs: dict[str, Any] = {
            tracing.FORCE_SAMPLE_ATTRIBUTE: True,
            "agentic.outcome": str(e.outcome),
            "agentic.request_id": str(e.request_id),
            "agentic.qos": str(e.qos),
            "agentic.reason": str(e.reason or ""),
            "agentic.rule_ids": [str(r) for r in (e.rule_ids or ())],
            "agentic.policy_version": str(e.policy_version or ""),
        }
        if e.replica_id is not None:
            attrs["agentic.replica_id"] = str(e.replica_id)
        for name, value in (("predicted_ms", e.predicted_ms), ("remaining_ms", e.remaining_ms)):
            v = _number(value)
            if v is not None:
                attrs["agentic." + name] = v
        s = tr.start_span(
            "agentic.route" if e.where == "router" else "agentic.gate",
            context=tracing.extract(carrier),
            attributes=attrs,
            start_time=start_ns,
        )
        s.end(end_time=end_ns)

    def _audit(self, e: DecisionEvent) -> None:
        version = str(e.policy_version or "")
        # registered by the adapter; else a policy without metadata.version is "sha256:<first 12 hex digits>"
        sha = self.policy_sha256.get(version) or (version[7:] if version.startswith("sha256:") else "")
        self.decision_log.log_decision(
            request_id=str(e.request_id),
            action=str(e.outcome),
            qos=str(e.qos),
            policy_version=version,
            policy_sha256=sha,
            rule_ids=list(e.rule_ids or ()),
            inputs={"where": e.where, "remaining_ms": _number(e.remaining_ms)}
            | dict((e.extra or {}).get("request") or {}),
            predicted={"predicted_ms": _number(e.predicted_ms), "replica_id": e.replica_id},
            outcome=f"{e.outcome}:{e.reason}" if e.reason else str(e.outcome),
            ts=_number(e.at),
        )

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            with contextlib.suppress(Exception):
                self.flush()

    def close(self) -> None:
        """Stop the background thread and flush what is left. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.flush_interval_s + 1)
        self.flush()


_PROCESS_HOOK: TelemetryHook | None = None
_PROCESS_LOCK = threading.Lock()


def process_hook() -> TelemetryHook:
    """This process's ``TelemetryHook`` recording to Ray metrics; a zero-argument factory, so Serve
    deployments name it as ``decision_hook="agentic_ray.telemetry.hotpath:process_hook"``.

    Settings come from the environment of the process (a ``runtime_env``): ``AGENTIC_TRACE_EXPORTER``
    (none/console/otlp/memory) and ``AGENTIC_TRACE_SAMPLING`` (ratio) configure tracing when set and
    tracing is not configured yet (``tracing.configure_tracing_from_env``);
    ``AGENTIC_DECISION_LOG_DIR`` turns the audit log on, one file per process
    (``decisions-<pid>.jsonl``).
    """
    global _PROCESS_HOOK
    with _PROCESS_LOCK:
        if _PROCESS_HOOK is None:
            from agentic_ray.telemetry.ray_metrics import RayMetrics

            tracing.configure_tracing_from_env()
            log_dir = os.environ.get("AGENTIC_DECISION_LOG_DIR")
            decision_log = None
            if log_dir:
                from agentic_ray.telemetry.audit import open_decision_log, options_from_env

                decision_log = open_decision_log(
                    os.path.join(log_dir, f"decisions-{os.getpid()}.jsonl"), **options_from_env()
                )
            _PROCESS_HOOK = TelemetryHook(RayMetrics(), decision_log=decision_log)
        return _PROCESS_HOOK
