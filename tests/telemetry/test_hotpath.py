"""TelemetryHook: exact batched counts, sampled latency and spans, audit records, never raising."""

from __future__ import annotations

import json

import pytest

from agentic_ray.serve.hooks import DecisionEvent, DecisionHook, load_hook
from agentic_ray.telemetry import tracing
from agentic_ray.telemetry.audit import DecisionLog
from agentic_ray.telemetry.audit_verify import find_records, verify_log
from agentic_ray.telemetry.hotpath import TelemetryHook
from agentic_ray.telemetry.metrics import RecordingMetrics


def event(outcome="route", qos="critical", reason="", where="router", **kw):
    fields = dict(
        request_id="req-1",
        replica_id="rep-a" if outcome == "route" else None,
        predicted_ms=12.0,
        remaining_ms=80.0,
        rule_ids=("r1",),
        policy_version="sha256:abcdef012345",
        decision_us=4.0,
    )
    fields.update(kw)
    return DecisionEvent(where, outcome, qos=qos, reason=reason, **fields)


def test_is_a_serve_decision_hook():
    hook = TelemetryHook(RecordingMetrics(), flush_interval_s=0)
    assert isinstance(hook, DecisionHook)
    assert load_hook(hook) is hook


def test_counts_are_exact_after_flush_and_map_to_metrics():
    rec = RecordingMetrics()
    hook = TelemetryHook(rec, sample_every=1000, flush_interval_s=0, seed=1)
    for _ in range(250):
        hook.record(event())
    for _ in range(7):
        hook.record(event("shed", "batch", "deadline_passed"))
    hook.record(event("wait", "standard", "all_replicas_full"))
    hook.record(event("reject", "standard", "queue_full", where="gate"))
    hook.record(event("start", "critical", where="gate"))
    assert rec.counters == {}  # nothing reaches the sink before a flush
    hook.flush()
    assert rec.value("agentic_decisions", component="router", action="route", qos="critical") == 250
    assert rec.value("agentic_decisions", component="router", action="shed", qos="batch") == 7
    assert rec.value("agentic_shed", component="router", qos="batch", reason="deadline_passed") == 7
    assert rec.value("agentic_decisions", component="router", action="wait", qos="standard") == 1
    assert rec.value("agentic_rejected", component="replica", qos="standard", reason="reject:queue_full") == 1
    assert rec.value("agentic_decisions", component="replica", action="start", qos="critical") == 1
    hook.flush()  # nothing new: no double counting
    assert rec.total("agentic_decisions") == 260


def test_latency_is_sampled_about_one_in_n():
    rec = RecordingMetrics()
    hook = TelemetryHook(rec, sample_every=10, flush_interval_s=0, seed=3)
    for _ in range(5000):
        hook.record(event())
    samples = rec.value("agentic_predicted_latency_ms", component="router", qos="critical")
    assert 400 < len(samples) < 600 and set(samples) == {12.0}


def test_sampled_decisions_become_back_dated_spans_under_the_callers_trace():
    tracing.configure_tracing(tracing.TracingConfig(exporter="memory", sampling_ratio=0.0))
    try:
        hook = TelemetryHook(RecordingMetrics(), sample_every=1_000_000, flush_interval_s=0)
        hook.record(event())  # not sampled, no parent: no span
        with tracing.span("client.call", force_sample=True) as parent:
            carrier = tracing.inject()
        hook.record(event(extra={"trace": carrier}, decision_us=250.0))
        spans = [s for s in tracing.finished_spans() if s.name == "agentic.route"]
        assert len(spans) == 1
        s = spans[0]
        assert s.parent.span_id == parent.get_span_context().span_id
        assert s.end_time - s.start_time == 250_000
        assert s.attributes["agentic.replica_id"] == "rep-a"
        assert s.attributes["agentic.predicted_ms"] == 12.0
        assert s.attributes["agentic.policy_version"] == "sha256:abcdef012345"
    finally:
        tracing.shutdown_tracing()


def test_every_decision_goes_to_the_audit_log(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    hook = TelemetryHook(RecordingMetrics(), sample_every=100, decision_log=log, flush_interval_s=0)
    for k in range(30):
        hook.record(event(request_id=f"req-{k}"))
    hook.record(event("shed", "batch", "deadline_passed", request_id="req-shed", predicted_ms=float("nan")))
    log.close()
    assert verify_log(tmp_path / "d.jsonl").ok
    [(_, rec)] = find_records(tmp_path / "d.jsonl", "req-shed")
    body = rec["body"]
    assert body["action"] == "shed" and body["outcome"] == "shed:deadline_passed"
    assert body["policy"] == {"version": "sha256:abcdef012345", "sha256": "abcdef012345"}
    assert body["predicted"]["predicted_ms"] is None and body["rule_ids"] == ["r1"]
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert sum(json.loads(x)["kind"] == "decision" for x in lines) == 31


def test_a_broken_sink_or_event_never_raises():
    class Broken:
        def inc(self, *a, **k):
            raise RuntimeError("boom")

        set = observe = inc

    hook = TelemetryHook(Broken(), sample_every=1, flush_interval_s=0)
    hook.record(event())  # the sampled latency hits the broken sink
    hook.record(object())  # not an event at all
    assert hook.errors == 2


def test_background_flusher_flushes_and_close_stops_it():
    rec = RecordingMetrics()
    hook = TelemetryHook(rec, sample_every=1000, flush_interval_s=0.05)
    for _ in range(10):
        hook.record(event())
    hook.close()
    assert rec.value("agentic_decisions", component="router", action="route", qos="critical") == 10
    assert not hook._thread.is_alive()


def test_bad_sample_every():
    with pytest.raises(ValueError, match="sample_every"):
        TelemetryHook(sample_every=0)


def test_tally_builds_events_only_for_sampled_decisions(tmp_path):
    rec = RecordingMetrics()
    hook = TelemetryHook(rec, sample_every=50, flush_interval_s=0, seed=5)
    asked = 0
    for _ in range(5000):
        if hook.tally("router", "route", "critical", ""):
            asked += 1
            hook.detail(event())
    hook.flush()
    assert rec.value("agentic_decisions", component="router", action="route", qos="critical") == 5000
    samples = rec.value("agentic_predicted_latency_ms", component="router", qos="critical")
    assert len(samples) == asked and 60 < asked < 140
    sampled_parent = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    hook = TelemetryHook(rec, sample_every=10**6, flush_interval_s=0)
    assert hook.tally("router", "route", "critical", "", trace=sampled_parent)
    unsampled = {"traceparent": sampled_parent["traceparent"][:-1] + "0"}
    assert not hook.tally("router", "route", "critical", "", trace=unsampled)
    hook = TelemetryHook(rec, sample_every=10**6, flush_interval_s=0, decision_log=DecisionLog(tmp_path / "a.jsonl"))
    assert hook.tally("gate", "start", "critical")  # the audit log needs every event
