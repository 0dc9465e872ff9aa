"""Token-level stream predictions on a manual clock: the rate estimators on a hand-computable sequence, the
TTFT / end prediction, the stream router's ranking and the gate's admission by predicted TTFT."""

from __future__ import annotations

import math
import random

import pytest

from agentic_ray.errors import BudgetExhausted
from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.admission import Enqueued, Reject, Start, replica_gate
from agentic_ray.scheduling.registry import create_router
from agentic_ray.scheduling.reports import ReplicaMetadata, RoutingStats, StreamReport
from agentic_ray.scheduling.routing_state import ReplicaReport, RoutingState
from agentic_ray.scheduling.streams import (
    StreamEstimate,
    StreamPrior,
    StreamRates,
    StreamRouter,
    StreamSample,
    queue_wait_ms,
    stream_router_for,
)
from agentic_ray.scheduling.types import ReplicaView, Route, Shed, Wait
from agentic_ray.testing.clock import ManualClock
from tests.scheduling.conftest import req

CLASSES = {
    "chat": QosClass("chat", 0, 10_000.0, Shedding.NEVER, ttft_ms=500.0, tpot_ms=50.0),
    "batch": QosClass("batch", 2, 60_000.0, Shedding.FIRST, ttft_ms=1000.0),
    "plain": QosClass("plain", 1, 1000.0),
}
# 1000 prompt tokens/s (1 ms per token), 20 tokens/s per stream (50 ms per token), 1 s per stream.
PRIOR = StreamPrior(prefill_tps=1000.0, decode_tps=20.0, hold_ms=1000.0, alpha=0.5)


def stream(qos: str, prompt: int, max_tokens: int | None = None, **kw):
    return req(qos, classes=CLASSES, prompt_tokens=prompt, max_tokens=max_tokens, **kw)


def test_estimator_learns_from_a_hand_computable_sequence():
    est = StreamEstimate(PRIOR)
    assert (est.prefill_ms_per_token, est.decode_ms_per_token, est.hold_ms) == (1.0, 50.0, 1000.0)
    # 100 prompt tokens in 300 ms (3 ms/token), TPOT 30 ms, held 900 ms: halfway from the prior to each
    est.observe(StreamSample(100, 11, 300.0, 30.0, 900.0))
    assert (est.prefill_ms_per_token, est.decode_ms_per_token, est.hold_ms) == (2.0, 40.0, 950.0)
    # a one-token stream teaches nothing about decode; a stream with no prompt nothing about prefill
    est.observe(StreamSample(0, 1, 5.0, None, 50.0))
    assert (est.prefill_ms_per_token, est.decode_ms_per_token, est.hold_ms) == (2.0, 40.0, 500.0)
    est.observe(StreamSample(200, 2, 800.0, 20.0, math.nan))  # 4 ms/token, TPOT 20; a NaN hold is skipped
    assert (est.prefill_ms_per_token, est.decode_ms_per_token, est.hold_ms) == (3.0, 30.0, 500.0)
    assert (est.prefill_tps, est.samples) == (pytest.approx(1000 / 3), 3)


def test_prediction_is_wait_plus_prefill_then_decode():
    assert queue_wait_ms(0, 2, 1000.0) == 0.0 and queue_wait_ms(1, 2, 1000.0) == 0.0
    assert queue_wait_ms(2, 2, 1000.0) == 500.0 and queue_wait_ms(5, 2, 1000.0) == 2000.0
    est = StreamEstimate(PRIOR)
    p = est.predict(prompt_tokens=200, max_tokens=11, ahead=0, slots=1)
    assert (p.wait_ms, p.ttft_ms, p.tpot_ms, p.end_ms) == (0.0, 200.0, 50.0, 200.0 + 10 * 50.0)
    p = est.predict(prompt_tokens=200, max_tokens=None, ahead=3, slots=2)  # 2 of 3 ahead must leave: 1 s
    assert (p.wait_ms, p.ttft_ms) == (1000.0, 1200.0) and math.isnan(p.end_ms)


def test_prior_and_inputs_are_checked():
    with pytest.raises(ValueError, match="prefill_tps"):
        StreamPrior(prefill_tps=0)
    with pytest.raises(ValueError, match="alpha"):
        StreamPrior(alpha=1.5)
    assert stream_router_for({"plain": CLASSES["plain"]}) is None  # no class sets ttft_ms
    assert isinstance(stream_router_for(CLASSES), StreamRouter)


def view(rid: str, *, ongoing: int = 0, slots: int = 1, cost: float = 1.0, max_ongoing: float = 8, **kw):
    v = ReplicaView(rid, slots=slots, cost=cost, max_ongoing=max_ongoing, **kw)
    v.ongoing = ongoing
    return v


def test_stream_router_ranks_by_predicted_ttft():
    rates = StreamRates(PRIOR)
    router = StreamRouter(CLASSES, rates)
    # "slow" prefills at 0.5 ms/token after one stream (halfway from 1 to 0, alpha 0.5: 0.5); "busy" has 2 ahead
    rates.observe("slow", StreamSample(100, 2, 0.0, 50.0, 1000.0))
    busy, idle, cheap = view("busy", ongoing=2), view("idle", cost=2.0), view("slow", cost=1.0)
    d = router.choose(stream("batch", 600), [busy, idle, cheap], 0.0)
    # batch (ttft 1000): busy 2000 + 600, idle 600 (cost 2), slow 300 (cost 1) -> the cheapest that meets
    assert d == Route("slow", 300.0, "meets_ttft", ())
    # 1500 prompt tokens: idle 1500 ms, slow 750 ms; only slow meets 1000 ms
    assert router.choose(stream("batch", 1500), [idle, cheap], 0.0).replica_id == "slow"
    # 2500 tokens: none meets -> shed with the fastest prediction (slow: 1250 ms) and a retry hint
    d = router.choose(stream("batch", 2500), [idle, cheap], 0.0)
    assert isinstance(d, Shed) and d.reason == "cannot_meet_ttft" and d.predicted_ms == 1250.0
    assert d.retry_after_s == pytest.approx(0.25)
    # never-shed chat goes to the earliest first token whether or not it meets 500 ms
    assert router.choose(stream("chat", 2500), [idle, cheap], 0.0) == Route("slow", 1250.0, "fastest_ttft", ())


def test_stream_router_checks_tpot_and_end_and_leaves_other_requests_alone():
    rates = StreamRates(PRIOR)
    router = StreamRouter({**CLASSES, "batch": QosClass("batch", 2, 3000.0, Shedding.FIRST, ttft_ms=1000.0,
                                                          tpot_ms=40.0)}, rates)  # fmt: skip
    rates.observe("fast", StreamSample(100, 2, 100.0, 30.0, 1000.0))  # TPOT 50 -> 40
    a, b = view("slow-decode", cost=1.0), view("fast", cost=2.0)
    assert router.choose(stream("batch", 100), [a, b], 0.0).replica_id == "fast"  # TPOT 50 > 40 on the other
    # end: 100 + (max_tokens - 1) * 40 within the 3000 ms budget for 73 tokens (2980), not for 74 (3020)
    assert router.choose(stream("batch", 100, 73, budget_ms=3000), [b], 0.0).replica_id == "fast"
    assert router.choose(stream("batch", 100, 74, budget_ms=3000), [b], 0.0).reason == "cannot_meet_ttft"
    assert router.choose(req("plain", classes=CLASSES), [a, b], 0.0) is None  # no prompt_tokens
    assert router.choose(stream("plain", 100), [a, b], 0.0) is None  # class without ttft_ms
    assert router.choose(stream("batch", 100), [view("x", ongoing=8)], 0.0) == Wait("all_replicas_full")
    assert router.choose(stream("batch", 100), [view("x", healthy=False)], 0.0) is None  # main router says why


def _report(rid: str, streams=()) -> ReplicaReport:
    stats = RoutingStats(stream_samples=tuple(streams))
    return ReplicaReport(rid, ReplicaMetadata(service_ms={"default": 10.0}), stats, 8.0)


def test_routing_state_uses_published_streams_for_stream_requests_only():
    clock = ManualClock()
    core = create_router("agentic", random.Random(0), classes=CLASSES)
    st = RoutingState(core, streams=StreamRouter(CLASSES, StreamRates(PRIOR)))
    # "b" published a stream prefilling at 0.25 ms/token (alpha 0.5 from 1.0: 0.625); published twice, taken once
    fast = [StreamReport(0, 400, 2, 100.0, 50.0, 1000.0)]
    st.update_replicas([_report("a"), _report("b", fast)], clock())
    st.update_replicas([_report("a"), _report("b", fast)], clock())
    assert st.streams.rates.get("b").prefill_ms_per_token == 0.625
    st.admit("s1", stream("batch", 1000), clock())
    assert st.decide("s1", clock()) == Route("b", 625.0, "meets_ttft", ())
    st.admit("p1", req("plain", classes=CLASSES), clock())
    d = st.decide("p1", clock())
    assert isinstance(d, Route) and d.reason == "meets_budget"  # the agentic router decided
    st.update_replicas([_report("a")], clock())  # b went away: its estimate too
    assert st.streams.rates.get("b").prefill_ms_per_token == 1.0


def test_stream_reports_round_trip_and_name_a_bad_field():
    stats = RoutingStats(stream_samples=(StreamReport(3, 10, 5, 12.5, None, 40.0),))
    d = stats.to_dict()
    assert d["stream_samples"] == [[3, 10, 5, 12.5, None, 40.0]]
    assert RoutingStats.from_dict(d) == stats
    assert "stream_samples" not in RoutingStats().to_dict()  # replicas without streams publish what they did
    with pytest.raises(ValueError, match=r"stream_samples\[0\]"):
        RoutingStats.from_dict({"stream_samples": [[1, 10, 5, 12.5]]})
    with pytest.raises(ValueError, match=r"stream_samples\[0\]"):
        RoutingStats.from_dict({"stream_samples": [[1, -10, 5, 12.5, None, 3.0]]})


def test_gate_refuses_a_sheddable_stream_whose_predicted_ttft_misses():
    clock = ManualClock()
    gate = replica_gate(1, CLASSES)
    assert gate.streams is not None  # a class sets ttft_ms
    gate.streams = StreamEstimate(PRIOR)
    first = stream("batch", 100, now=clock())
    assert isinstance(gate.offer(first, clock()), Start)  # 100 ms of prefill, slot free
    # behind one stream holding the slot 1 s: wait 1000 + 100 > 1000 ms ttft -> refused
    late = gate.offer(stream("batch", 100, now=clock()), clock())
    assert isinstance(late, Reject) and late.reason == "cannot_meet_ttft"
    assert isinstance(late.error, BudgetExhausted) and late.retry_after_s == pytest.approx(1.0)
    assert "predicted time to first token 1100.0 ms" in late.detail
    # never-shed chat is admitted (queued) although its 600 ms ttft prediction misses 500
    assert isinstance(gate.offer(stream("chat", 100, now=clock()), clock()), Enqueued)
    # a request without prompt_tokens is not a stream request: the gate's other stages decide
    assert isinstance(gate.offer(req("batch", classes=CLASSES, now=clock()), clock()), Enqueued)
    # with a slot free, the prefill alone counts; the remaining budget caps the ttft budget
    idle = replica_gate(1, CLASSES)
    idle.streams = StreamEstimate(PRIOR)
    short = idle.offer(stream("batch", 200, budget_ms=150.0, now=clock()), clock())
    assert isinstance(short, Reject) and short.reason == "cannot_meet_ttft" and "> 150.0 ms" in short.detail
    assert isinstance(idle.offer(stream("batch", 200, budget_ms=250.0, now=clock()), clock()), Start)


def test_gate_ttft_stage_changes_nothing_without_token_budgets():
    plain = {"plain": CLASSES["plain"]}
    gate = replica_gate(1, plain)
    assert gate.streams is None
    gate.offer(req("plain", classes=plain, prompt_tokens=10**6), 0.0)
    assert isinstance(gate.offer(req("plain", classes=plain, prompt_tokens=10**6), 0.0), Enqueued)
