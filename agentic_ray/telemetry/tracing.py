"""OpenTelemetry tracing: configuration, W3C trace-context propagation through kwargs, span helpers.

Spans: ``agentic.route`` (the router's decision), ``agentic.queue`` (wait in a replica's admission gate
or a node agent's queue), ``agentic.execute`` (the user's code). The context crosses process
boundaries as a W3C ``traceparent`` string (https://www.w3.org/TR/trace-context/) inside a small
carrier dict that callers put in the request's or task's kwargs under ``TRACE_KWARG``: the caller
does ``kwargs = with_trace(kwargs)``, the callee ``ctx = pop_trace(kwargs)`` and opens its spans with
``span(name, parent=ctx)``.

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
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "EXPORTERS",
    "FORCE_SAMPLE_ATTRIBUTE",
    "TRACE_KWARG",
    "TracingConfig",
    "configure_tracing",
    "extract",
    "finished_spans",
    "inject",
    "is_sampled",
    "pop_trace",
    "shutdown_tracing",
    "span",
    "tracer",
    "tracing_config",
    "with_trace",
]

TRACE_KWARG = "_agentic_trace"
FORCE_SAMPLE_ATTRIBUTE = "agentic.sampled"
EXPORTERS = ("none", "console", "otlp", "memory")

_PROPAGATOR = TraceContextTextMapPropagator()
_NOOP_TRACER = trace.NoOpTracer()


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """How to trace. ``sampling_ratio`` in [0, 1] applies to root spans (children follow their parent)."""

    exporter: str = "none"
    sampling_ratio: float = 0.01
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
            provider.add_span_processor(SimpleSpanProcessor(memory))
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


def shutdown_tracing() -> None:
    """Flush and stop the exporter; tracing becomes a no-op."""
    configure_tracing(TracingConfig())


def tracing_config() -> TracingConfig:
    """The configuration in force in this process."""
    return _STATE.config


def tracer() -> Any:
    """The process's tracer (a no-op tracer until ``configure_tracing`` installs an exporter)."""
    return _STATE.tracer


def finished_spans() -> list:
    """Spans ended so far (``exporter="memory"`` only; else an empty list)."""
    memory = _STATE.memory
    return list(memory.get_finished_spans()) if memory is not None else []


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
    """``kwargs`` plus ``TRACE_KWARG: inject(context)`` when there is a span to propagate (same dict)."""
    carrier = inject(context)
    if carrier:
        kwargs[TRACE_KWARG] = carrier
    return kwargs


def pop_trace(kwargs: dict[str, Any]) -> Context | None:
    """Remove ``TRACE_KWARG`` from ``kwargs`` and return the context it carried (``None`` if absent)."""
    return extract(kwargs.pop(TRACE_KWARG, None))


@contextlib.contextmanager
def span(
    name: str,
    parent: Context | Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
    force_sample: bool = False,
) -> Iterator[Any]:
    """Open a span named ``name`` as a child of ``parent`` (a ``Context`` or a carrier dict; ``None``:
    the current context) and make it current for the block. ``force_sample`` keeps a root span
    regardless of the ratio. Yields the span (``span.is_recording()`` is False when not sampled)."""
    # an OTel Context is itself a dict, so test for it before treating ``parent`` as a carrier
    ctx = parent if parent is None or isinstance(parent, Context) else extract(parent)
    attrs = dict(attributes or {})
    if force_sample:
        attrs[FORCE_SAMPLE_ATTRIBUTE] = True
    with _STATE.tracer.start_as_current_span(name, context=ctx, attributes=attrs or None) as s:
        yield s
