"""OpenTelemetry tracing: configuration, W3C trace-context propagation through kwargs, span helpers.

Spans: ``agentic.route`` (the router's decision), ``agentic.queue`` (wait in a replica's admission gate
or a node agent's queue), ``agentic.execute`` (the user's code). The context crosses process
boundaries as a W3C ``traceparent`` string (https://www.w3.org/TR/trace-context/) inside a small
carrier dict that callers put in the request's or task's kwargs under ``TRACE_KWARG``: the caller
opens ``root_span("agentic.submit")`` and does ``kwargs = with_trace(kwargs)`` inside it, the callee
``ctx = pop_trace(kwargs)`` and opens its spans with ``span(name, parent=ctx, child_only=True)``.
Only sampled contexts travel, and callee spans exist only under a sampled parent, so the unsampled
99 % of calls pay a countdown and a dict lookup, not OpenTelemetry.

Sampling: ``ParentBased`` (a child follows its parent's sampled flag), and for roots a trace-id ratio
(``TracingConfig.sampling_ratio``), except that a root span started with the attribute
``agentic.sampled=True`` is always kept: hot paths decide cheaply themselves whether to trace
(``hotpath.DecisionRecorder`` counts down) and only then pay for a span.

Exporters (``TracingConfig.exporter``): ``none`` (default: spans are no-ops), ``console``, ``otlp``
(needs ``opentelemetry-exporter-otlp``; a clear ``ValueError`` otherwise), ``memory`` (tests read
``finished_spans()``). The provider is kept here rather than installed as OTel's global one, because
the global provider can be set only once per process; ``configure_tracing`` may be called again.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "EXPORTERS",
    "EXPORTER_ENV",
    "FORCE_SAMPLE_ATTRIBUTE",
    "SAMPLING_ENV",
    "TRACE_KWARG",
    "TracingConfig",
    "configure_tracing",
    "configure_tracing_from_env",
    "extract",
    "finished_spans",
    "inject",
    "is_sampled",
    "pop_trace",
    "root_span",
    "shutdown_tracing",
    "span",
    "tracer",
    "tracing_config",
    "tracing_config_from_env",
    "with_trace",
]

TRACE_KWARG = "_agentic_trace"
FORCE_SAMPLE_ATTRIBUTE = "agentic.sampled"
EXPORTERS = ("none", "console", "otlp", "memory")
EXPORTER_ENV = "AGENTIC_TRACE_EXPORTER"
SAMPLING_ENV = "AGENTIC_TRACE_SAMPLING"

_PROPAGATOR = TraceContextTextMapPropagator()
_NOOP_TRACER = trace.NoOpTracer()


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """How to trace. ``sampling_ratio`` in [0, 1] applies to root spans (children follow their parent)
    and to the decisions ``TelemetryHook`` samples. The default 0.001 keeps tracing within 5 % of a
    ~5 us routing decision: a sampled decision costs ~20 us (span + attributes + batch export), so at
    0.01 it alone adds ~4 % (``benchmarks/results/telemetry_overhead.md``)."""

    exporter: str = "none"
    sampling_ratio: float = 0.001
    service_name: str = "agentic-ray"
    otlp_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise ValueError(f"tracing.exporter: must be one of {', '.join(EXPORTERS)}, got {self.exporter!r}")
        if not 0.0 <= self.sampling_ratio <= 1.0:
            raise ValueError(f"tracing.sampling_ratio: must be in [0, 1], got {self.sampling_ratio!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TracingConfig:
        """Build from a dict (a policy's or init()'s ``tracing:`` section); unknown keys are a ValueError."""
        known = {"exporter", "sampling_ratio", "service_name", "otlp_endpoint"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"tracing: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}")
        return cls(**dict(values))


class _RootSampler(Sampler):
    """Keep roots marked ``agentic.sampled`` (pre-sampled by a hot path), else sample by trace-id ratio."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        if attributes and attributes.get(FORCE_SAMPLE_ATTRIBUTE):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return f"AgenticRoot{{{self._ratio.get_description()}}}"


@dataclass(slots=True)
class _State:
    config: TracingConfig
    provider: TracerProvider | None = None
    tracer: Any = _NOOP_TRACER
    memory: Any = None


_STATE = _State(TracingConfig())
_LOCK = threading.Lock()


def configure_tracing(config: TracingConfig | None = None) -> None:
    """Install ``config`` for this process (replacing and shutting down a previous configuration)."""
    config = config or TracingConfig()
    provider = None
    tracer_ = _NOOP_TRACER
    memory = None
    if config.exporter != "none":
        provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(root=_RootSampler(config.sampling_ratio)),
        )
        if config.exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif config.exporter == "memory":
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            memory = InMemorySpanExporter()
            # batched like the real exporters, so its cost on the hot path is representative
            provider.add_span_processor(BatchSpanProcessor(memory, schedule_delay_millis=200))
        else:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError:
                try:
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
                except ImportError:
                    raise ValueError(
                        "tracing.exporter: 'otlp' needs the package opentelemetry-exporter-otlp "
                        "(pip install opentelemetry-exporter-otlp)"
                    ) from None
            exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint) if config.otlp_endpoint else OTLPSpanExporter()
            provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer_ = provider.get_tracer("agentic_ray")
    with _LOCK:
        old = _STATE.provider
        _STATE.config, _STATE.provider, _STATE.tracer, _STATE.memory = config, provider, tracer_, memory
    if old is not None:
        old.shutdown()


def tracing_config_from_env(environ: Mapping[str, str] | None = None) -> TracingConfig | None:
    """The configuration the environment (default ``os.environ``) asks for: ``AGENTIC_TRACE_EXPORTER``
    (``EXPORTER_ENV``: none/console/otlp/memory) and ``AGENTIC_TRACE_SAMPLING`` (``SAMPLING_ENV``: the
    root sampling ratio, default ``TracingConfig``'s); ``None`` when the exporter is unset or empty.
    ``ValueError`` naming the variable for a value out of range or not a number."""
    env = os.environ if environ is None else environ
    exporter = env.get(EXPORTER_ENV)
    if not exporter:
        return None
    if exporter not in EXPORTERS:
        raise ValueError(f"{EXPORTER_ENV}: must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    sampling = env.get(SAMPLING_ENV)
    if sampling is None or sampling == "":
        return TracingConfig(exporter=exporter)
    try:
        ratio = float(sampling)
    except ValueError:
        raise ValueError(f"{SAMPLING_ENV}: must be a number in [0, 1], got {sampling!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{SAMPLING_ENV}: must be in [0, 1], got {sampling!r}")
    return TracingConfig(exporter=exporter, sampling_ratio=ratio)


def configure_tracing_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Configure this process's tracing from the environment (``tracing_config_from_env``), unless it is
    configured already: an explicit ``configure_tracing`` wins. The one place the SDK, task workers
    (``actors._worker``) and Serve replicas (``hotpath.process_hook``) read these variables, once per
    process, from their ``runtime_env``. Returns whether tracing is on (an exporter other than
    ``none``)."""
    if _STATE.config.exporter == "none":
        config = tracing_config_from_env(environ)
        if config is not None:
            configure_tracing(config)
    return _STATE.config.exporter != "none"


def shutdown_tracing() -> None:
    """Flush and stop the exporter; tracing becomes a no-op."""
    configure_tracing(TracingConfig())


def tracing_config() -> TracingConfig:
    """The configuration in force in this process."""
    return _STATE.config


def tracer() -> Any:
    """The process's tracer (a no-op tracer until ``configure_tracing`` installs an exporter)."""
    return _STATE.tracer


def finished_spans(clear: bool = False) -> list:
    """Spans ended so far (``exporter="memory"`` only; else an empty list), after flushing the batch
    processor. ``clear`` empties the exporter afterwards."""
    state = _STATE
    if state.memory is None:
        return []
    state.provider.force_flush()
    spans = list(state.memory.get_finished_spans())
    if clear:
        state.memory.clear()
    return spans


def inject(context: Context | None = None) -> dict[str, str]:
    """The W3C carrier (``{"traceparent": ...}`` and ``tracestate`` when set) of the current or given
    context; empty when there is no valid span (nothing to propagate)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return carrier


def extract(carrier: Mapping[str, str] | None) -> Context | None:
    """The context a carrier from ``inject`` describes (``None`` for an empty or missing carrier)."""
    if not carrier:
        return None
    if isinstance(carrier, Context):
        return carrier
    return _PROPAGATOR.extract(carrier)


def is_sampled(carrier: Mapping[str, str] | None) -> bool:
    """True when the carrier's ``traceparent`` has the sampled flag (cheap: no parsing into a context)."""
    if not carrier:
        return False
    tp = carrier.get("traceparent", "")
    return len(tp) == 55 and tp[-2:] in ("01", "03", "05", "07", "09", "0b", "0d", "0f")


def with_trace(kwargs: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """``kwargs`` plus ``TRACE_KWARG: inject(context)`` when the current (or given) span is sampled;
    unsampled contexts are not shipped (callees open spans with ``child_only=True``, so nothing of an
    unsampled trace is recorded anywhere). Returns the same dict."""
    if not trace.get_current_span(context).get_span_context().trace_flags.sampled:
        return kwargs
    carrier = inject(context)
    if carrier:
        kwargs[TRACE_KWARG] = carrier
    return kwargs


def pop_trace(kwargs: dict[str, Any]) -> Context | None:
    """Remove ``TRACE_KWARG`` from ``kwargs`` and return the context it carried (``None`` if absent)."""
    return extract(kwargs.pop(TRACE_KWARG, None))


class _RootCountdown:
    """One root in ~1/ratio (random gaps with that mean), decided without touching OpenTelemetry."""

    def __init__(self) -> None:
        self._rng = random.Random()
        self._left = 0
        self._every = 0

    def take(self, ratio: float) -> bool:
        if ratio <= 0.0:
            return False
        every = max(1, round(1.0 / ratio))
        if every != self._every:
            self._every, self._left = every, self._rng.randint(1, 2 * every - 1)
        self._left -= 1
        if self._left > 0:
            return False
        self._left = self._rng.randint(1, 2 * every - 1)
        return True


_ROOTS = _RootCountdown()


@contextlib.contextmanager
def root_span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A span for an entry point (a task submission, an HTTP request): a child when a sampled span is
    current, else a new root for one call in ~``1/sampling_ratio`` (decided by a countdown, so the
    other calls cost ~0.2 us and touch no OpenTelemetry code). Yields ``INVALID_SPAN`` when skipped."""
    state = _STATE
    if state.tracer is _NOOP_TRACER:
        yield trace.INVALID_SPAN
        return
    if trace.get_current_span().get_span_context().trace_flags.sampled or _ROOTS.take(state.config.sampling_ratio):
        with span(name, attributes=attributes, force_sample=True) as s:
            yield s
    else:
        yield trace.INVALID_SPAN


@contextlib.contextmanager
def span(
    name: str,
    parent: Context | Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
    force_sample: bool = False,
    child_only: bool = False,
) -> Iterator[Any]:
    """Open a span named ``name`` as a child of ``parent`` (a ``Context`` or a carrier dict; ``None``:
    the current context) and make it current for the block. ``force_sample`` keeps a root span
    regardless of the ratio. ``child_only``: open it only under a sampled parent (callee-side spans:
    ``agentic.queue``, ``agentic.execute``), else yield ``INVALID_SPAN`` at no cost. Yields the span
    (``span.is_recording()`` is False when not sampled)."""
    # an OTel Context is itself a dict, so test for it before treating ``parent`` as a carrier
    ctx = parent if parent is None or isinstance(parent, Context) else extract(parent)
    if child_only and not trace.get_current_span(ctx).get_span_context().trace_flags.sampled:
        yield trace.INVALID_SPAN
        return
    attrs = dict(attributes or {})
    if force_sample:
        attrs[FORCE_SAMPLE_ATTRIBUTE] = True
    with _STATE.tracer.start_as_current_span(name, context=ctx, attributes=attrs or None) as s:
        yield s
