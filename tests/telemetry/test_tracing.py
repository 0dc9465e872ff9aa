"""Tracing: configuration, W3C propagation through kwargs, sampling, exporters."""

from __future__ import annotations

import pytest

from agentic_ray.telemetry import tracing
from agentic_ray.telemetry.tracing import TRACE_KWARG, TracingConfig


@pytest.fixture
def memory_tracing():
    tracing.configure_tracing(TracingConfig(exporter="memory", sampling_ratio=1.0))
    yield
    tracing.shutdown_tracing()


def test_config_validation():
    with pytest.raises(ValueError, match=r"tracing\.exporter"):
        TracingConfig(exporter="jaeger")
    with pytest.raises(ValueError, match="sampling_ratio"):
        TracingConfig(sampling_ratio=1.5)
    with pytest.raises(ValueError, match="unknown key"):
        TracingConfig.from_mapping({"exporter": "console", "ratio": 1})
    assert TracingConfig.from_mapping({"exporter": "console", "sampling_ratio": 0.5}).sampling_ratio == 0.5


def test_config_from_the_environment():
    """One reader of ``AGENTIC_TRACE_EXPORTER`` / ``AGENTIC_TRACE_SAMPLING`` for the SDK, task workers and
    Serve replicas; an explicit configuration wins over the environment."""
    assert tracing.tracing_config_from_env({}) is None
    assert tracing.tracing_config_from_env({"AGENTIC_TRACE_EXPORTER": ""}) is None
    default_ratio = TracingConfig().sampling_ratio
    assert tracing.tracing_config_from_env({"AGENTIC_TRACE_EXPORTER": "memory"}) == TracingConfig(
        exporter="memory", sampling_ratio=default_ratio
    )
    env = {"AGENTIC_TRACE_EXPORTER": "console", "AGENTIC_TRACE_SAMPLING": "0.25"}
    assert tracing.tracing_config_from_env(env) == TracingConfig(exporter="console", sampling_ratio=0.25)
    with pytest.raises(ValueError, match="AGENTIC_TRACE_EXPORTER"):
        tracing.tracing_config_from_env({"AGENTIC_TRACE_EXPORTER": "jaeger"})
    for bad in ("lots", "1.5", "-0.1"):
        with pytest.raises(ValueError, match="AGENTIC_TRACE_SAMPLING"):
            tracing.tracing_config_from_env({"AGENTIC_TRACE_EXPORTER": "memory", "AGENTIC_TRACE_SAMPLING": bad})
    try:
        assert not tracing.configure_tracing_from_env({})
        assert tracing.configure_tracing_from_env({"AGENTIC_TRACE_EXPORTER": "memory", "AGENTIC_TRACE_SAMPLING": "1"})
        assert tracing.tracing_config() == TracingConfig(exporter="memory", sampling_ratio=1.0)
        # configured already: the environment does not replace it
        assert tracing.configure_tracing_from_env({"AGENTIC_TRACE_EXPORTER": "console"})
        assert tracing.tracing_config().exporter == "memory"
    finally:
        tracing.shutdown_tracing()


def test_otlp_without_its_package_is_a_clear_error():
    try:
        import opentelemetry.exporter.otlp  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="opentelemetry-exporter-otlp"):
            tracing.configure_tracing(TracingConfig(exporter="otlp"))
    else:
        pytest.skip("the OTLP exporter is installed here")


def test_default_is_noop_and_inject_is_empty():
    assert tracing.tracing_config().exporter == "none"
    with tracing.span("agentic.execute") as s:
        assert not s.is_recording()
        assert tracing.inject() == {}
    assert tracing.with_trace({"x": 1}) == {"x": 1}
    assert tracing.extract({}) is None


def test_context_crosses_kwargs_into_a_child_span(memory_tracing):
    with tracing.span("agentic.route", attributes={"agentic.qos": "critical"}) as parent:
        kwargs = tracing.with_trace({"payload": 1})
        carrier = kwargs[TRACE_KWARG]
        assert carrier["traceparent"].startswith("00-") and tracing.is_sampled(carrier)
    # ... in the callee process:
    ctx = tracing.pop_trace(kwargs)
    assert TRACE_KWARG not in kwargs
    with tracing.span("agentic.queue", parent=ctx), tracing.span("agentic.execute"):
        pass
    spans = {s.name: s for s in tracing.finished_spans()}
    assert set(spans) == {"agentic.route", "agentic.queue", "agentic.execute"}
    trace_id = parent.get_span_context().trace_id
    assert all(s.context.trace_id == trace_id for s in spans.values())
    assert spans["agentic.queue"].parent.span_id == parent.get_span_context().span_id
    assert spans["agentic.execute"].parent.span_id == spans["agentic.queue"].context.span_id
    assert spans["agentic.route"].attributes["agentic.qos"] == "critical"


def test_sampling_ratio_zero_drops_roots_but_keeps_forced_and_children_follow():
    tracing.configure_tracing(TracingConfig(exporter="memory", sampling_ratio=0.0))
    try:
        with tracing.span("dropped") as s:
            assert not s.is_recording()
            assert not tracing.is_sampled(tracing.inject())
        with tracing.span("kept", force_sample=True) as s:
            assert s.is_recording()
            carrier = tracing.inject()
        with tracing.span("child", parent=carrier) as c:
            assert c.is_recording()
        assert sorted(s.name for s in tracing.finished_spans()) == ["child", "kept"]
    finally:
        tracing.shutdown_tracing()


def test_ratio_samples_about_that_fraction_of_roots():
    tracing.configure_tracing(TracingConfig(exporter="memory", sampling_ratio=0.25))
    try:
        kept = 0
        for _ in range(2000):
            with tracing.span("root") as s:
                kept += s.is_recording()
        assert 350 < kept < 650  # binomial(2000, 0.25): mean 500, sd ~19
    finally:
        tracing.shutdown_tracing()


def test_is_sampled_reads_the_flags():
    base = "00-" + "1" * 32 + "-" + "2" * 16 + "-"
    assert tracing.is_sampled({"traceparent": base + "01"})
    assert not tracing.is_sampled({"traceparent": base + "00"})
    assert not tracing.is_sampled({"traceparent": "garbage"})
    assert not tracing.is_sampled(None)


def test_root_span_countdown_and_child_only_spans():
    tracing.configure_tracing(TracingConfig(exporter="memory", sampling_ratio=0.1))
    try:
        shipped = 0
        for _ in range(2000):
            with tracing.root_span("agentic.submit"):
                kwargs = tracing.with_trace({})
            shipped += TRACE_KWARG in kwargs
            ctx = tracing.pop_trace(kwargs)
            with tracing.span("agentic.execute", parent=ctx, child_only=True) as s:
                assert s.is_recording() == (ctx is not None)
        assert 120 < shipped < 280  # ~1 in 10
        names = [s.name for s in tracing.finished_spans()]
        assert names.count("agentic.submit") == shipped == names.count("agentic.execute")
        with tracing.span("outer", force_sample=True), tracing.root_span("inner") as inner:
            assert inner.is_recording()  # under a sampled span it is always a child
    finally:
        tracing.shutdown_tracing()
    with tracing.root_span("x") as s:  # tracing off: nothing
        assert not s.is_recording()
