"""TelemetryHook: exact counts from pushed tuples, sampled latency and spans, audit records, no raising."""

from __future__ import annotations

import json
import threading

import pytest

from agentic_ray.serve._hooks import DecisionEvent, DecisionHook, load_hook
from agentic_ray.telemetry import tracing
from agentic_ray.telemetry.audit import DecisionLog
from agentic_ray.telemetry.audit_verify import find_records, verify_log
from agentic_ray.telemetry.hotpath import DECISION_FIELDS, TelemetryHook
from agentic_ray.telemetry.metrics import RecordingMetrics

AT = 1_700_000_000.0


def entry(outcome="route", qos="critical", reason="", where="router", request_id="req-1", **kw):
    fields = dict(where=where, outcome=outcome, request_id=request_id, qos=qos, reason=reason,
                  replica_id="rep-a" if outcome == "route" else None, predicted_ms=12.0, remaining_ms=80.0,
                  rule_ids=("r1",), policy_version="sha256:abcdef012345", decision_us=4.0, at=AT)  # fmt: skip
    fields.update(kw)
    return tuple(fields.get(f) for f in DECISION_FIELDS)


def test_fields_match_decision_event_and_hook_protocol():
    assert DecisionEvent._fields is DECISION_FIELDS  # one definition
    pushed = entry()
    assert DecisionEvent._make(pushed) == DecisionEvent(**dict(zip(DECISION_FIELDS, pushed, strict=True)))
    hook = TelemetryHook(RecordingMetrics(), flush_interval_s=0)
    assert isinstance(hook, DecisionHook) and load_hook(hook) is hook
    assert hook.push.__self__ is hook._buffer  # the hot path is the list's own append


def test_counts_are_exact_after_flush_and_map_to_metrics():
    rec = RecordingMetrics()
    hook = TelemetryHook(rec, sample_every=1000, flush_interval_s=0, seed=1)
    for _ in range(250):
        hook.push(entry())
    for _ in range(7):
        hook.push(entry("shed", "batch", "deadline_passed"))
    hook.push(entry("wait", "standard", "all_replicas_full"))
    hook.push(entry("reject", "standard", "queue_full", where="gate"))
    hook.record(DecisionEvent("gate", "start", "req-9", "critical"))
    assert rec.counters == {}  # nothing reaches the sink before a flush
    counts = hook.flush()
    assert counts[("router", "route", "critical", "")] == 250
    assert rec.value("agentic_decisions", component="router", action="route", qos="critical") == 250
    assert rec.value("agentic_decisions", component="router", action="shed", qos="batch") == 7
    assert rec.value("agentic_shed", component="router", qos="batch", reason="deadline_passed") == 7
    assert rec.value("agentic_decisions", component="router", action="wait", qos="standard") == 1
    assert rec.value("agentic_rejected", component="replica", qos="standard", reason="reject:queue_full") == 1
    assert rec.value("agentic_decisions", component="replica", action="start", qos="critical") == 1
    assert not hook.flush()  # nothing new: no double counting
    assert rec.total("agentic_decisions") == 260


def test_pushes_racing_with_flushes_are_each_counted_once():
    rec = RecordingMetrics()
    hook = TelemetryHook(rec, sample_every=10**6, flush_interval_s=0)
    stop = threading.Event()

    def flusher():
        while not stop.is_set():
            hook.flush()

    t = threading.Thread(target=flusher)
    t.start()
    for _ in range(50_000):
        hook.push(entry())
    stop.set()
    t.join()
    hook.flush()
    assert rec.value("agentic_decisions", component="router", action="route", qos="critical") == 50_000


def test_latency_is_sampled_about_one_in_n_across_flushes():
    rec = RecordingMetrics()
    hook = TelemetryHook(rec, sample_every=10, flush_interval_s=0, seed=3)
    for k in range(5000):
        hook.push(entry(predicted_ms=float("nan") if k % 2 else 12.0))
        if k % 333 == 0:
            hook.flush()
    hook.flush()
    samples = rec.value("agentic_predicted_latency_ms", component="router", qos="critical")
    assert 180 < len(samples) < 320 and set(samples) == {12.0}  # ~500 sampled, half of them NaN


def test_sampled_decisions_become_back_dated_spans():
    tracing.configure_tracing(tracing.TracingConfig(exporter="memory", sampling_ratio=0.0))
    try:
        hook = TelemetryHook(RecordingMetrics(), sample_every=1, flush_interval_s=0)
        hook.push(entry(decision_us=250.0))
        hook.flush()
        [s] = [s for s in tracing.finished_spans(clear=True) if s.name == "agentic.route"]
        assert s.start_time == int(AT * 1e9) and s.end_time - s.start_time == 250_000
        assert s.attributes["agentic.replica_id"] == "rep-a"
        assert s.attributes["agentic.predicted_ms"] == 12.0
        assert s.attributes["agentic.policy_version"] == "sha256:abcdef012345"
    finally:
        tracing.shutdown_tracing()


def test_an_event_with_a_sampled_context_is_traced_under_the_callers_span():
    tracing.configure_tracing(tracing.TracingConfig(exporter="memory", sampling_ratio=0.0))
    try:
        hook = TelemetryHook(RecordingMetrics(), sample_every=10**6, flush_interval_s=0)
        hook.record(DecisionEvent("router", "route", "req-1", "critical"))  # no context: no span
        with tracing.span("client.call", force_sample=True) as parent:
            carrier = tracing.inject()
        hook.record(DecisionEvent("router", "route", "req-2", "critical", extra={"trace": carrier}))
        spans = [s for s in tracing.finished_spans() if s.name == "agentic.route"]
        assert len(spans) == 1 and spans[0].parent.span_id == parent.get_span_context().span_id
        assert spans[0].attributes["agentic.request_id"] == "req-2"
    finally:
        tracing.shutdown_tracing()


def test_every_decision_goes_to_the_audit_log(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    hook = TelemetryHook(RecordingMetrics(), sample_every=100, decision_log=log, flush_interval_s=0)
    for k in range(30):
        hook.push(entry(request_id=f"req-{k}"))
    hook.push(entry("shed", "batch", "deadline_passed", request_id="req-shed", predicted_ms=float("nan")))
    hook.register_policy("v7", "ef" * 32)
    hook.push(entry(request_id="req-v7", policy_version="v7"))
    hook.flush()
    log.close()
    assert verify_log(tmp_path / "d.jsonl").ok
    [(_, rec)] = find_records(tmp_path / "d.jsonl", "req-shed")
    body = rec["body"]
    assert body["action"] == "shed" and body["outcome"] == "shed:deadline_passed"
    assert body["policy"] == {"version": "sha256:abcdef012345", "sha256": "abcdef012345"}
    assert body["predicted"]["predicted_ms"] is None and body["rule_ids"] == ["r1"]
    assert rec["ts"] == AT
    [(_, rec)] = find_records(tmp_path / "d.jsonl", "req-v7")
    assert rec["body"]["policy"] == {"version": "v7", "sha256": "ef" * 32}
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert sum(json.loads(x)["kind"] == "decision" for x in lines) == 32


def test_a_broken_sink_or_event_never_raises():
    class Broken:
        def inc(self, *a, **k):
            raise RuntimeError("boom")

        set = observe = inc

    hook = TelemetryHook(Broken(), sample_every=1, flush_interval_s=0)
    hook.push(entry())
    hook.record(object())  # not an event at all
    hook.flush()  # the count and the sampled latency both hit the broken sink
    assert hook.errors == 3


def test_background_flusher_flushes_and_close_stops_it():
    rec = RecordingMetrics()
    hook = TelemetryHook(rec, sample_every=1000, flush_interval_s=0.05)
    for _ in range(10):
        hook.push(entry())
    hook.close()
    assert rec.value("agentic_decisions", component="router", action="route", qos="critical") == 10
    assert not hook._thread.is_alive()


def test_bad_arguments():
    with pytest.raises(ValueError, match="sample_every"):
        TelemetryHook(sample_every=0)
    with pytest.raises(ValueError, match="flush_interval_s"):
        TelemetryHook(flush_interval_s=-1)
