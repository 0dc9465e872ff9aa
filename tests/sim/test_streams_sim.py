"""The simulator's streaming service model on hand-checkable runs: prefill per prompt token, decode per
output token, TTFT / TPOT figures and their attainment per class; scenario checks."""

from __future__ import annotations

import pytest

from agentic_ray.errors import ScenarioValidationError
from agentic_ray.sim import build_workload, run_router, simulate
from agentic_ray.sim.simulate import scenario_classes
from tests.sim.conftest import FirstFreeRouter, scenario_from

# One replica, one slot: a stream of 100 prompt tokens at 1 ms each and 5 output tokens at 10 ms each
# after the first holds it 100 + 4 * 10 = 140 ms; its first token comes 100 ms after it starts.
STREAMS = """
    name: streams
    duration_s: 2
    classes:
      chat: {budget_ms: 5000, priority: 0, shedding: never, ttft_ms: 150, tpot_ms: 10}
      batch: {budget_ms: 5000, priority: 2, shedding: first, ttft_ms: 150}
    replicas:
      - name: gpu
        stream: {prefill_ms_per_token: 1.0, decode_ms_per_token: 10.0}
    workload:
      arrivals: {process: trace, file: TRACE}
      mix: {chat: 1}
      tokens: {prompt: {mean: 100}, output: {mean: 5}}
"""


def _scenario(tmp_path, rows: str):
    trace = tmp_path / "trace.csv"
    trace.write_text("at_s,class\n" + rows)
    return scenario_from(STREAMS.replace("TRACE", str(trace)))


def test_workload_streams_get_token_counts_prefill_and_service(tmp_path):
    sc = _scenario(tmp_path, "0.0,chat\n")
    [item] = build_workload(sc, 0).items
    assert (item.request.prompt_tokens, item.request.max_tokens) == (100, 5)
    assert item.prefill_ms == (100.0,) and item.service_ms == (140.0,)


def test_a_fifo_run_pins_ttft_tpot_and_attainment(tmp_path):
    # chat at 0 (first token at 100 ms), chat at 50 ms (waits until 140 ms: first token at 190 ms after
    # its arrival), batch at 1 s (100 ms)
    sc = _scenario(tmp_path, "0.0,chat\n0.05,chat\n1.0,batch\n")
    result = run_router(sc, build_workload(sc, 0), FirstFreeRouter(), classes=scenario_classes(sc))
    out = result.to_json()
    chat, batch = out["classes"]["chat"], out["classes"]["batch"]
    assert chat["ttft_p50_ms"] == 100.0 and chat["ttft_p99_ms"] == 190.0
    assert chat["tpot_p50_ms"] == 10.0 and chat["tpot_p99_ms"] == 10.0
    assert chat["ttft_attainment"] == 0.5 and chat["tpot_attainment"] == 1.0
    assert chat["p99_ms"] == 230.0  # the whole second stream: 90 ms waiting + 140 ms
    assert batch["ttft_p50_ms"] == 100.0 and batch["ttft_attainment"] == 1.0
    assert batch["tpot_attainment"] is None  # batch sets no tpot_ms
    assert out["overall"]["ttft_attainment"] == pytest.approx(2 / 3, abs=1e-6)


def test_the_agentic_router_sheds_a_stream_whose_predicted_ttft_misses(tmp_path):
    # chat at 0 holds the slot; batch at 10 ms would wait for it: with the prior's 2 s per stream the
    # stream router predicts a miss of its 150 ms and sheds it; after the first stream finished (140 ms)
    # a batch stream at 1 s finds the slot free and is predicted 100 ms (learned 1 ms per token).
    sc = _scenario(tmp_path, "0.0,chat\n0.01,batch\n1.0,batch\n")
    out = simulate(sc, ["agentic", "pow2"])["results"]
    agentic, pow2 = out["agentic"], out["pow2"]
    assert agentic["shed_reasons"] == {"cannot_meet_ttft": 1}
    assert agentic["classes"]["batch"]["ttft_attainment"] == 0.5 and agentic["classes"]["batch"]["shed"] == 1
    assert agentic["classes"]["chat"]["ttft_attainment"] == 1.0
    # Serve's power-of-two router queues it: it completes with its first token 230 ms after arrival
    assert pow2["classes"]["batch"]["ttft_p99_ms"] == 230.0 and pow2["classes"]["batch"]["ttft_attainment"] == 0.5


def test_runs_without_tokens_report_no_stream_fields(tmp_path):
    plain = scenario_from("""
        name: plain
        duration_s: 2
        classes: {standard: {budget_ms: 100}}
        replicas: [{name: cpu, service: {default: {dist: deterministic, mean_ms: 10}}}]
        workload: {arrivals: {process: poisson, rate_rps: 20}, mix: {standard: 1}}
    """)
    res = simulate(plain, ["agentic"])["results"]["agentic"]
    assert "ttft_p50_ms" not in res["classes"]["standard"] and "ttft_attainment" not in res["overall"]


def test_a_streaming_workload_needs_stream_models():
    with pytest.raises(ScenarioValidationError) as info:
        scenario_from("""
            name: bad
            duration_s: 2
            classes: {chat: {budget_ms: 1000, ttft_ms: 0}}
            replicas: [{name: cpu, service: {default: {dist: deterministic, mean_ms: 10}}}]
            workload:
              arrivals: {process: poisson, rate_rps: 20}
              mix: {chat: 1}
              tokens: {prompt: {mean: 100}, output: {mean: -5}}
        """)
    paths = {p.path for p in info.value.problems}
    assert {"classes.chat.ttft_ms", "workload.tokens.output.mean"} <= paths
    with pytest.raises(ScenarioValidationError) as info:
        scenario_from("""
            name: bad
            duration_s: 2
            classes: {chat: {budget_ms: 1000}}
            replicas: [{name: cpu, service: {default: {dist: deterministic, mean_ms: 10}}}]
            workload:
              arrivals: {process: poisson, rate_rps: 20}
              mix: {chat: 1}
              tokens: {prompt: {mean: 100}, output: {mean: 5}}
        """)
    assert [(p.path, p.reason) for p in info.value.problems] == [
        ("replicas[0].stream", "required when the workload has tokens (streams)")
    ]


def test_the_llm_demo_scenario_runs_in_the_simulator_and_chat_keeps_its_first_token():
    from agentic_ray.demo import llm_scenario_path
    from agentic_ray.sim import load_scenario

    out = simulate(load_scenario(llm_scenario_path()), ["agentic", "pow2"])["results"]
    chat = {router: out[router]["classes"]["chat"]["ttft_attainment"] for router in out}
    assert chat["agentic"] > chat["pow2"] + 0.3, chat  # 0.910 against 0.403 (seed 11)
    assert out["agentic"]["classes"]["chat"]["shed"] == 0  # never shed
