"""Stream metadata on the Serve path without Ray: token counts in call metadata and HTTP headers, the
measured stream (TTFT, TPOT) on a real ``ReplicaAdmission`` driven by asyncio, and its metrics."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentic_ray.errors import BudgetExhausted
from agentic_ray.policies import RequestMeta, parse_policy
from agentic_ray.scheduling.admission import replica_gate
from agentic_ray.scheduling.reports import RoutingStats
from agentic_ray.scheduling.types import Shed
from agentic_ray.serve._meta import META_KWARG, HeaderError, meta_from_headers, pop_meta, to_request, with_tokens
from agentic_ray.serve._replica_gate import ReplicaAdmission
from agentic_ray.serve._router import shed_error
from agentic_ray.serve._streams import measured_stream
from agentic_ray.telemetry.metrics import AgenticMetrics, RecordingMetrics

POLICY = parse_policy("""
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: llm}
default_class: chat
classes:
  chat: {priority: 0, budget_ms: 20000, ttft_ms: 500, tpot_ms: 50, shedding: never}
  batch: {priority: 2, budget_ms: 60000, ttft_ms: 5000, shedding: first}
""")


def test_token_counts_travel_in_the_wire_dict_and_are_read_not_removed_from_own_kwargs():
    kwargs = {"prompt": "hi", "max_tokens": 64, META_KWARG: {"qos": "chat", "prompt_tokens": 120}}
    meta = pop_meta(kwargs)
    assert kwargs == {"prompt": "hi", "max_tokens": 64}  # the method's own max_tokens stays
    assert meta == {"qos": "chat", "prompt_tokens": 120, "max_tokens": 64}
    # the wire dict wins over the call's own keyword
    assert pop_meta({"max_tokens": 64, META_KWARG: {"max_tokens": 8}})["max_tokens"] == 8
    request = to_request(POLICY.classify(RequestMeta(qos="chat"), 0.0), "r", 0.0, None, None)
    request = with_tokens(request, meta)
    assert (request.prompt_tokens, request.max_tokens) == (120, 64)
    assert with_tokens(request, {}) is request


@pytest.mark.parametrize(
    ("meta", "field"),
    [({"prompt_tokens": -1}, "prompt_tokens"), ({"prompt_tokens": 1.5}, "prompt_tokens"),
     ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": "64"}, "max_tokens"), ({"max_tokens": True}, "max_tokens")],
)  # fmt: skip
def test_bad_token_counts_name_the_field(meta, field):
    request = to_request(POLICY.classify(RequestMeta(), 0.0), "r", 0.0, None, None)
    with pytest.raises(ValueError, match=field):
        with_tokens(request, meta)


def test_token_headers_become_metadata_and_bad_ones_name_the_header():
    assert meta_from_headers({"X-Prompt-Tokens": "512", "x-max-tokens": "128"}) == {
        "prompt_tokens": 512, "max_tokens": 128}  # fmt: skip
    assert meta_from_headers({"x-prompt-tokens": "0"}) == {"prompt_tokens": 0}
    for header, value in (("x-prompt-tokens", "-3"), ("x-prompt-tokens", "1e3"), ("x-max-tokens", "0"),
                          ("x-max-tokens", "many"), ("x-max-tokens", " ")):  # fmt: skip
        with pytest.raises(HeaderError) as info:
            meta_from_headers({header: value})
        assert info.value.header == header


def test_a_router_ttft_shed_is_a_budget_error():
    error = shed_error(Shed("cannot_meet_ttft", 0.4, ("r1",), 812.0))
    assert isinstance(error, BudgetExhausted) and error.reason == "cannot_meet_ttft"
    assert error.retry_after_s == 0.4 and "812.0" in str(error)


def _admission() -> tuple[ReplicaAdmission, RecordingMetrics]:
    rec = RecordingMetrics()
    gate = replica_gate(1, POLICY.classes)
    return ReplicaAdmission(gate, metrics=AgenticMetrics(rec, "replica")), rec


def _request(admission: ReplicaAdmission, qos: str, **tokens):
    now = time.time()
    request = to_request(POLICY.classify(RequestMeta(qos=qos), now), admission.next_id(), now, None, None)
    return with_tokens(request, tokens)


async def _tokens(n: int, first_s: float, step_s: float):
    await asyncio.sleep(first_s)
    for i in range(n):
        if i:
            await asyncio.sleep(step_s)
        yield f"t{i}"


def test_a_measured_stream_yields_everything_and_records_ttft_tpot_and_a_sample():
    admission, rec = _admission()
    request = _request(admission, "chat", prompt_tokens=100, max_tokens=5)

    async def run() -> list[str]:
        return [t async for t in measured_stream(admission, request, None, _tokens(5, 0.05, 0.02))]

    assert asyncio.run(run()) == ["t0", "t1", "t2", "t3", "t4"]
    [ttft] = rec.value("agentic_ttft_ms", component="replica", qos="chat")
    [tpot] = rec.value("agentic_tpot_ms", component="replica", qos="chat")
    assert 45 <= ttft < 400 and 15 <= tpot < 200  # 50 ms, 20 ms asleep (a loaded host sleeps longer)
    verdict = ("ok" if ttft <= 500 else "late", "ok" if tpot <= 50 else "late")
    assert rec.value("agentic_stream_completions", component="replica", qos="chat", ttft=verdict[0],
                     tpot=verdict[1]) == 1  # fmt: skip
    # the gate learned from it, and the stats publish it once for routers
    [published] = RoutingStats.from_dict(admission.routing_stats()).stream_samples
    assert (published.seq, published.prompt_tokens, published.output_tokens) == (0, 100, 5)
    assert published.tpot_ms == pytest.approx(tpot) and published.hold_ms >= published.prefill_ms
    assert admission.gate.streams.samples == 1
    assert admission.gate.streams.prefill_ms_per_token != 0.2  # moved from the prior (5000 tokens/s)
    assert admission.completed_total == 1 and not admission.gate.is_busy()


def test_a_failing_stream_is_no_sample_and_frees_its_slot():
    admission, rec = _admission()
    request = _request(admission, "batch", prompt_tokens=10)

    async def broken():
        yield "t0"
        raise RuntimeError("engine died")

    async def run() -> list[str]:
        out = []
        with pytest.raises(RuntimeError):
            async for t in measured_stream(admission, request, None, broken()):
                out.append(t)
        return out

    assert asyncio.run(run()) == ["t0"]
    assert rec.value("agentic_ttft_ms", component="replica", qos="batch") is None
    assert admission.failed_total == 1 and not admission.gate.is_busy()
    assert "stream_samples" not in admission.routing_stats()
