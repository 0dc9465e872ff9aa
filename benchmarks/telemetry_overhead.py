"""What telemetry costs: the router decision and the task path with telemetry on and off, in one run.

Router decision. ``create_router("agentic", rng)`` over ``--replicas`` replica views and a seeded mix of
requests (three classes, random deadlines); per decision the Serve adapter's own reporting code runs as
is: ``choose`` timed with ``perf_counter``, the trace-carrier lookup in the kwargs, then
``AgenticRequestRouter._event`` (``serve/router.py``) of a router object that holds only what that
method reads (hook, its ``push``, the policy version). "off" = ``telemetry=False`` (no-op hook: ``_event``
returns at once); "on" = the default of ``@agentic_ray.deployment``: ``TelemetryHook(RayMetrics())``,
whose ``push`` takes one tuple per decision, with tracing configured (in-memory exporter, the default
sampling ratio: one decision in ~1/ratio becomes a span and a latency sample; counts are batched and
flushed to ``ray.util.metrics``, here at the end of each timed round); "on_event_per_decision" = a hook
without ``push`` (a ``DecisionEvent`` per decision through ``safe_record`` and ``hook.record``).
Extra rows: every decision also appended to the hash-chained decision log, and sampling ratios 0.01
and 1.0. Rounds of the variants alternate so load from other processes hits them alike; figures are
CPU time of this process (``time.process_time``); ratios are medians of per-round ratios, each with a
bootstrap 95 % confidence interval (``median_ci``); the floor (on/off <= 1.05) counts as met only when the
interval's upper end is at or below it, and the wired task path runs more rounds (``--max-rounds``) until
the interval is narrower than the median's margin to the floor (per-round task ratios spread widely on a
shared machine: 0.46 to 6.32 in one run).

Task path. A no-op task, submitted ``--tasks`` at a time and gathered with ``ray.get``.

- ``@agentic_ray.task`` as wired (control plane running; its node agents always record completions,
  queue depth and refusals through ``ray.util.metrics``, off the task's path): "off" = tracing not
  configured in the driver (``.remote()`` pays one module lookup), "on" = tracing configured with the
  default sampling ratio (``.remote()`` runs in ``root_span("agentic.submit")``, a sampled span's
  traceparent rides in the task context argument, the worker opens ``agentic.execute`` under it; workers have
  ``AGENTIC_TRACE_EXPORTER=memory``), "on_sampling_1.0" = every task traced.
- Around a plain ``@ray.remote`` function, the same calls made by hand (the pattern for code outside
  the SDK): the caller opens ``root_span`` and ships the context in the kwargs (``with_trace``), the
  worker pops it, opens ``agentic.execute`` and records the completion (``AgenticMetrics.completion``
  through ``RayMetrics``); "kwargs_only" ships a constant carrier with no tracing calls.

Writes ``benchmarks/results/telemetry_overhead.json`` and ``.md``. Usage::

    python benchmarks/telemetry_overhead.py [--rounds 21] [--decisions 5000] [--replicas 16 64] [--tasks 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agentic_ray.scheduling.types import Route, Shed
from agentic_ray.serve._hooks import NoopHook
from agentic_ray.sim.metrics import bootstrap_ci
from agentic_ray.telemetry.tracing import TracingConfig

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_RATIO = TracingConfig().sampling_ratio


# -- router decision ---------------------------------------------------------------------------------
def _workload(n_replicas: int, n_requests: int, seed: int):
    from agentic_ray.policies.types import NodeAttrs
    from agentic_ray.scheduling.types import ReplicaView, Request

    rng = random.Random(seed)
    views = [
        ReplicaView(
            f"replica-{i}",
            attrs=NodeAttrs(node_id=f"node-{i}", zone=("eu-west", "us-east")[i % 2],
                            accelerator="gpu" if i % 4 == 0 else "cpu"),
            max_ongoing=8,
            ongoing=rng.randrange(0, 6),
            queued_by_priority={0: rng.randrange(0, 2), 1: rng.randrange(0, 3)},
            service_ms={"default": 5.0 if i % 4 == 0 else 20.0},
            cost=4.0 if i % 4 == 0 else 1.0,
        )
        for i in range(n_replicas)
    ]  # fmt: skip
    classes = (("critical", 0, 150.0), ("standard", 1, 500.0), ("batch", 2, 5000.0))
    requests = []
    for k in range(n_requests):
        qos, prio, budget = classes[rng.randrange(3)]
        requests.append(Request(id=f"req-{k}", qos=qos, priority=prio, arrival=0.0,
                                deadline=rng.uniform(0.2, 1.0) * budget / 1000.0, rule_ids=("r1",)))  # fmt: skip
    return views, requests


class _RecordOnly:
    """A hook without ``push``: the adapter builds a ``DecisionEvent`` per decision for it."""

    def __init__(self, hook) -> None:
        self.inner = hook
        self.record = hook.record

    def flush(self):
        return self.inner.flush()


def _adapter(hook):
    """An ``AgenticRequestRouter`` (serve/router.py) holding only what its ``_event`` reads, so the rounds
    time the adapter's own per-decision reporting code (not a copy)."""
    from types import SimpleNamespace

    from agentic_ray.serve._hooks import hook_push
    from agentic_ray.serve._router import AgenticRequestRouter

    router = AgenticRequestRouter.__new__(AgenticRequestRouter)
    router.hook = hook
    router._push = hook_push(hook)
    router._hook_off = isinstance(hook, NoopHook)
    router.policy = SimpleNamespace(version="sha256:0123456789ab")
    return router


_HOT: dict[str, list[float]] = {}


def _router_round(router, hook, views, requests, name: str = "") -> float:
    """CPU seconds of this process per decision for one pass over ``requests`` (the adapter's work),
    the hook's flush included; the CPU time of the decision loop alone goes to ``_HOT[name]``."""
    from agentic_ray.telemetry.tracing import TRACE_KWARG

    perf = time.perf_counter
    event = _adapter(hook)._event
    kwargs: dict = {}  # a request's kwargs without a trace carrier (the unsampled case)
    t0 = time.process_time()
    for request in requests:
        started = perf()
        d = router.choose(request, views, 0.0)
        decision_us = (perf() - started) * 1e6
        carrier = kwargs.get(TRACE_KWARG)
        if isinstance(d, Route):
            event("route", request, d.reason, 0.0, d.replica_id, d.predicted_ms, decision_us)
        elif isinstance(d, Shed):
            event("shed", request, d.reason, 0.0, None, d.predicted_ms, decision_us, carrier)
        else:
            event("wait", request, d.reason, 0.0, None, None, decision_us, carrier)
    _HOT.setdefault(name, []).append((time.process_time() - t0) / len(requests))
    if not isinstance(hook, NoopHook):
        hook.flush()  # the flush work (counts, samples, spans, audit records) is charged to this round
    return (time.process_time() - t0) / len(requests)


def _bare_round(router, views, requests) -> float:
    t0 = time.process_time()
    for request in requests:
        router.choose(request, views, 0.0)
    took = (time.process_time() - t0) / len(requests)
    _HOT.setdefault("bare_choose", []).append(took)
    return took


def _paired_ratio(rounds: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of num/den measured back to back (robust to load that changes over time)."""
    return statistics.median(a / b for a, b in zip(rounds[num], rounds[den], strict=True))


FLOOR = 1.05  # telemetry on / off, median ratio
BOOTSTRAP_RESAMPLES = 2000


def median_ci(
    ratios: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """``(median, low, high)``: the median of per-round ratios and its bootstrap 95 % confidence interval
    (percentile method: the 2.5th and 97.5th percentiles of the medians of ``resamples`` resamples with
    replacement; Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13). Seeded."""
    if not ratios:
        raise ValueError("ratios: need at least one round")
    lo, hi = bootstrap_ci(ratios, statistics.median, random.Random(seed), resamples)
    return statistics.median(ratios), lo, hi


def ratio_verdict(ratios: list[float], floor: float = FLOOR) -> dict:
    """The floor's verdict on per-round ratios: met only when the CI's upper end is at or below ``floor``;
    ``narrow`` when the interval is narrower than the margin between the median and the floor (enough
    rounds to tell)."""
    med, lo, hi = median_ci(ratios)
    return {
        "median": round(med, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "rounds": len(ratios),
        "floor": floor,
        "met": hi <= floor,
        "narrow": (hi - lo) < abs(floor - med),
    }


def _paired(rounds: dict[str, list[float]], num: str, den: str) -> list[float]:
    return [a / b for a, b in zip(rounds[num], rounds[den], strict=True)]


def bench_router(args, tmp: str, n_replicas: int) -> dict:
    from agentic_ray.scheduling.registry import create_router
    from agentic_ray.telemetry import tracing
    from agentic_ray.telemetry.audit import DecisionLog
    from agentic_ray.telemetry.hotpath import TelemetryHook
    from agentic_ray.telemetry.ray_metrics import RayMetrics

    views, requests = _workload(n_replicas, args.decisions, args.seed)
    router = create_router("agentic", random.Random(args.seed))
    tracing.configure_tracing(tracing.TracingConfig(exporter="memory", sampling_ratio=DEFAULT_RATIO))
    every = max(1, round(1 / DEFAULT_RATIO))
    # no background flush thread: each round flushes at its end, inside the timed part
    hook_on = TelemetryHook(RayMetrics(), seed=args.seed, sample_every=every, flush_interval_s=0)
    hook_push = TelemetryHook(RayMetrics(), seed=args.seed, sample_every=every, flush_interval_s=0)
    hook_1pct = TelemetryHook(RayMetrics(), seed=args.seed, sample_every=100, flush_interval_s=0)
    log = DecisionLog(os.path.join(tmp, f"decisions-{n_replicas}.jsonl"), checkpoint_every=1000)
    hook_audit = TelemetryHook(RayMetrics(), seed=args.seed, sample_every=every, decision_log=log, flush_interval_s=0)
    hook_full = TelemetryHook(RayMetrics(), seed=args.seed, sample_every=1, flush_interval_s=0)
    record_only = _RecordOnly(hook_on)
    variants = {
        "bare_choose": lambda: _bare_round(router, views, requests),
        "off": lambda: _router_round(router, NoopHook(), views, requests, "off"),
        "on": lambda: _router_round(router, hook_push, views, requests, "on"),
        "on_event_per_decision": lambda: _router_round(router, record_only, views, requests, "on_event_per_decision"),
        "on_with_audit_log": lambda: _router_round(router, hook_audit, views, requests, "on_with_audit_log"),
        "on_sampling_0.01": lambda: _router_round(router, hook_1pct, views, requests, "on_sampling_0.01"),
        "on_sampling_1.0": lambda: _router_round(router, hook_full, views, requests, "on_sampling_1.0"),
    }
    for f in variants.values():  # warm-up
        f()
    _HOT.clear()
    per_round: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, f in variants.items():
            per_round[name].append(f())
        tracing.finished_spans(clear=True)  # keep the in-memory exporter small (outside the timed part)
    for h in (hook_on, hook_push, hook_1pct, hook_audit, hook_full):
        h.close()
    log.close()
    tracing.shutdown_tracing()
    med = {k: statistics.median(v) * 1e6 for k, v in per_round.items()}
    return {
        "replicas": n_replicas,
        "decisions_per_round": args.decisions,
        "rounds": args.rounds,
        "us_per_decision_median": med,
        "us_per_decision_rounds": {k: [x * 1e6 for x in v] for k, v in per_round.items()},
        "hot_path_us_per_decision_median": {k: statistics.median(v) * 1e6 for k, v in _HOT.items()},
        "hot_path_us_per_decision_rounds": {k: [x * 1e6 for x in v] for k, v in _HOT.items()},
        "hot_path_ratio_on_vs_off": _paired_ratio(_HOT, "on", "off"),
        "ratio_on_vs_off": _paired_ratio(per_round, "on", "off"),
        "verdict_on_vs_off": ratio_verdict(_paired(per_round, "on", "off")),
        "hot_path_verdict_on_vs_off": ratio_verdict(_paired(_HOT, "on", "off")),
        "ratio_event_per_decision_vs_off": _paired_ratio(per_round, "on_event_per_decision", "off"),
        "ratio_on_vs_bare": _paired_ratio(per_round, "on", "bare_choose"),
        "ratio_audit_vs_off": _paired_ratio(per_round, "on_with_audit_log", "off"),
        "ratio_full_sampling_vs_off": _paired_ratio(per_round, "on_sampling_1.0", "off"),
        "hook_errors": sum(h.errors for h in (hook_on, hook_push, hook_1pct, hook_audit, hook_full)),
    }


# -- task path ---------------------------------------------------------------------------------------
_WORKER = {}


def _worker_telemetry():
    """Per worker process: tracing configured once and the metrics facade (cached)."""
    m = _WORKER.get("metrics")
    if m is None:
        from agentic_ray.telemetry import tracing
        from agentic_ray.telemetry.metrics import AgenticMetrics
        from agentic_ray.telemetry.ray_metrics import RayMetrics

        tracing.configure_tracing(tracing.TracingConfig(exporter="memory", sampling_ratio=DEFAULT_RATIO))
        m = _WORKER["metrics"] = AgenticMetrics(RayMetrics(), component="task")
    return m


def noop_plain(**kwargs):
    return None


def noop_traced(**kwargs):
    from agentic_ray.telemetry import tracing

    metrics = _worker_telemetry()
    t0 = time.perf_counter()
    ctx = tracing.pop_trace(kwargs)
    with tracing.span("agentic.execute", parent=ctx, child_only=True):
        pass
    metrics.completion("standard", (time.perf_counter() - t0) * 1e3, 100.0)
    return None


def _submit_round(fn, n: int, mode: str) -> float:
    """``mode``: ``off`` (no kwargs), ``on`` (span + injected context), ``kwargs_only`` (a constant
    carrier of the same size, no tracing calls: separates the cost of shipping the kwarg)."""
    import ray

    from agentic_ray.telemetry import tracing

    carrier = {tracing.TRACE_KWARG: {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-00"}}
    t0 = time.perf_counter()
    refs = []
    for _ in range(n):
        if mode == "on":
            with tracing.root_span("agentic.submit"):
                refs.append(fn.remote(**tracing.with_trace({})))
        elif mode == "kwargs_only":
            refs.append(fn.remote(**carrier))
        else:
            refs.append(fn.remote())
    ray.get(refs, timeout=300)
    return (time.perf_counter() - t0) / n


def _telemetry_calls_cpu_us(n: int = 3000) -> float:
    """CPU us of the per-task telemetry calls alone (caller and worker side), run back to back here."""
    from agentic_ray.telemetry import tracing

    t0 = time.process_time()
    for _ in range(n):
        with tracing.root_span("agentic.submit"):
            kwargs = tracing.with_trace({})
        noop_traced(**kwargs)
    took = (time.process_time() - t0) / n * 1e6
    tracing.finished_spans(clear=True)
    return took


def bench_tasks(args) -> dict:
    import ray

    from agentic_ray.telemetry import tracing

    tracing.configure_tracing(tracing.TracingConfig(exporter="memory", sampling_ratio=DEFAULT_RATIO))
    out: dict = {"tasks_per_round": args.tasks, "rounds": args.rounds}
    out["telemetry_calls_cpu_us_per_task"] = statistics.median(_telemetry_calls_cpu_us() for _ in range(5))
    kinds = {"ray_remote": (ray.remote(noop_plain), ray.remote(noop_traced))}
    for kind, (plain, traced) in kinds.items():
        _submit_round(plain, args.tasks, "off")  # warm-up: workers started
        _submit_round(traced, args.tasks, "on")
        rounds = {"off": [], "on": [], "kwargs_only": []}
        for _ in range(args.rounds):
            rounds["off"].append(_submit_round(plain, args.tasks, "off"))
            rounds["on"].append(_submit_round(traced, args.tasks, "on"))
            rounds["kwargs_only"].append(_submit_round(plain, args.tasks, "kwargs_only"))
            tracing.finished_spans(clear=True)
        med = {k: statistics.median(v) * 1e6 for k, v in rounds.items()}
        out[kind] = {
            "us_per_task_median": med,
            "us_per_task_rounds": {k: [x * 1e6 for x in v] for k, v in rounds.items()},
            "ratio_on_vs_off": _paired_ratio(rounds, "on", "off"),
            "verdict_on_vs_off": ratio_verdict(_paired(rounds, "on", "off")),
            "ratio_kwargs_only_vs_off": _paired_ratio(rounds, "kwargs_only", "off"),
        }
    tracing.shutdown_tracing()
    if not args.skip_agentic_task:
        out["agentic_task"] = bench_agentic_task(args)
    return out


def _agentic_round(fn, n: int, config) -> float:
    """One round of the wired ``@agentic_ray.task`` with tracing ``config`` (None: not configured)."""
    import ray

    from agentic_ray.telemetry import tracing

    if config is None:
        tracing.shutdown_tracing()
    else:
        tracing.configure_tracing(config)
    t0 = time.perf_counter()
    refs = [fn.remote() for _ in range(n)]
    ray.get(refs, timeout=300)
    took = (time.perf_counter() - t0) / n
    tracing.finished_spans(clear=True)
    return took


def bench_agentic_task(args) -> dict:
    """The wired SDK: telemetry (tracing) off / on at the default ratio / on for every task, one run."""
    import agentic_ray.sdk as sdk
    from agentic_ray.telemetry import tracing

    sdk.init(wait_s=60)
    fn = sdk.task(qos="standard", budget_ms=60_000)(noop_plain)
    variants = {
        "off": None,
        "on": tracing.TracingConfig(exporter="memory", sampling_ratio=DEFAULT_RATIO),
        "on_sampling_1.0": tracing.TracingConfig(exporter="memory", sampling_ratio=1.0),
    }
    for config in variants.values():  # warm-up: workers started, submit functions cached
        _agentic_round(fn, args.tasks, config)
    rounds: dict[str, list[float]] = {k: [] for k in variants}
    # at least --rounds; then more (up to --max-rounds) until the on/off interval is narrower than its margin
    while True:
        for name, config in variants.items():
            rounds[name].append(_agentic_round(fn, args.tasks, config))
        n = len(rounds["off"])
        if n >= args.max_rounds or (n >= args.rounds and ratio_verdict(_paired(rounds, "on", "off"))["narrow"]):
            break
    tracing.shutdown_tracing()
    sdk.shutdown(stop_control_plane=True)
    return {
        "tasks_per_round": args.tasks,
        "rounds": args.rounds,
        "us_per_task_median": {k: statistics.median(v) * 1e6 for k, v in rounds.items()},
        "us_per_task_rounds": {k: [x * 1e6 for x in v] for k, v in rounds.items()},
        "ratio_on_vs_off": _paired_ratio(rounds, "on", "off"),
        "ratio_sampling_1_vs_off": _paired_ratio(rounds, "on_sampling_1.0", "off"),
        "verdict_on_vs_off": ratio_verdict(_paired(rounds, "on", "off")),
    }


def _verdict_text(v: dict | None) -> str:
    if not v:
        return ""
    lo, hi = v["ci95"]
    state = "met" if v["met"] else ("NOT met" if v["narrow"] else "not shown (interval too wide)")
    return (
        f" Median {v['median']:.3f}, bootstrap 95 % CI [{lo:.3f}, {hi:.3f}] over {v['rounds']} rounds: floor"
        f" {v['floor']} {state} (met only when the interval's upper end is at or below it)."
    )


# -- report ------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    lines = [
        "# Telemetry overhead",
        "",
        f"Run {result['started']} on {result['machine']} (Python {result['python']}), seed {result['seed']}; "
        f"default sampling ratio {DEFAULT_RATIO}. {result['router'][0]['rounds']} rounds, variants alternating "
        "within each round; router figures are CPU time of the process (`time.process_time`, so other "
        "engineers' load on the shared cores does not count), task figures wall-clock. Ratios are medians "
        "of per-round ratios.",
        "",
    ]
    if result.get("tasks_started"):
        lines += [f"Task rows: from the run of {result['tasks_started']} (this run measured the router only).", ""]
    for r in result["router"]:
        med = r["us_per_decision_median"]
        lines += [
            f"## Router decision (agentic router, {r['replicas']} replicas, {r['decisions_per_round']} "
            "decisions/round)",
            "",
            "| variant | CPU us / decision, flush included | vs off | hot path only: CPU us / decision | vs off |",
            "|---|---:|---:|---:|---:|",
        ]
        hot, hot_rounds = r["hot_path_us_per_decision_median"], r["hot_path_us_per_decision_rounds"]
        for name in med:
            ratio = 1.0 if name == "off" else _paired_ratio(r["us_per_decision_rounds"], name, "off")
            hot_ratio = 1.0 if name == "off" else _paired_ratio(hot_rounds, name, "off")
            lines.append(f"| {name} | {med[name]:.2f} | {ratio:.3f} | {hot[name]:.2f} | {hot_ratio:.3f} |")
        lines += [
            "",
            f"**Ratio on/off: {r['ratio_on_vs_off']:.3f} with the flush's CPU counted, "
            f"{r['hot_path_ratio_on_vs_off']:.3f} on the decision path itself** (floor <= 1.05); with a "
            f"DecisionEvent built for every decision (a hook without `push`): "
            f"{r['ratio_event_per_decision_vs_off']:.3f}." + _verdict_text(r.get("verdict_on_vs_off")),
            "",
        ]
    lines += [
        "Variants:",
        "",
        "- off: `choose` timed with `perf_counter`, the trace-carrier lookup and `AgenticRequestRouter._event` "
        "(`serve/router.py`, run as is) with telemetry off (`telemetry=False`: no-op hook).",
        "- on: the same with the default hook of `@agentic_ray.deployment` (`TelemetryHook(RayMetrics())`): "
        "`_event` pushes one tuple per decision with `hook.push` (a C-level list append); the hook's "
        "flush (run at the end of each timed round; a background thread every 5 s in a deployment) turns "
        f"them into exact counts and samples 1 in {round(1 / DEFAULT_RATIO)} for the latency histogram and a "
        "back-dated span (batch span processor).",
        "- on_event_per_decision: a hook without `push`: `_event` builds and `safe_record`s a `DecisionEvent` "
        "for every decision.",
        "- on_with_audit_log: `on` plus every decision appended to the hash-chained decision log.",
        "- on_sampling_0.01 / on_sampling_1.0: `on` with 1 decision in 100 / every decision sampled and traced.",
        "",
    ]
    t = result.get("tasks") or {}
    if t:
        lines += [
            f"## Task path (no-op task, {t['tasks_per_round']} submitted then gathered per round)",
            "",
            "| task kind | off us/task | on us/task | ratio on/off | kwarg only us/task | ratio kwarg/off |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for kind in ("ray_remote",):
            if kind in t:
                m = t[kind]["us_per_task_median"]
                lines.append(
                    f"| {kind} | {m['off']:.1f} | {m['on']:.1f} | {t[kind]['ratio_on_vs_off']:.3f} "
                    f"| {m['kwargs_only']:.1f} | {t[kind]['ratio_kwargs_only_vs_off']:.3f} |"
                )
        lines += [
            "",
            f"The telemetry calls of one task alone (caller + worker side, run back to back in one process, "
            f"CPU time): **{t['telemetry_calls_cpu_us_per_task']:.1f} us per task**, i.e. "
            f"{t['telemetry_calls_cpu_us_per_task'] / t['ray_remote']['us_per_task_median']['off'] * 100:.1f} % "
            "of the plain no-op task's wall time above. The wall-clock ratios of whole tasks move by more than "
            "that from round to round on this shared 2-core machine (compare kwarg-only, which does no "
            "telemetry work at all).",
            "",
            "on = caller injects the W3C trace context into the kwargs inside an `agentic.submit` span; the "
            "worker pops it, opens `agentic.execute`, records the completion through `ray.util.metrics` "
            "(the calls made by hand around a plain `@ray.remote` function).",
            "",
        ]
    a = t.get("agentic_task") or {}
    if a:
        m = a["us_per_task_median"]
        lines += [
            f"## Task path, wired `@agentic_ray.task` ({a['tasks_per_round']} no-op tasks submitted then "
            f"gathered per round, {a['rounds']} rounds)",
            "",
            "| variant | us/task (median) | ratio vs off (median of per-round ratios) |",
            "|---|---:|---:|",
            f"| off (tracing not configured) | {m['off']:.1f} | 1.000 |",
            f"| on (tracing, sampling {DEFAULT_RATIO:g}) | {m['on']:.1f} | {a['ratio_on_vs_off']:.3f} |",
            f"| on, sampling 1.0 | {m['on_sampling_1.0']:.1f} | {a['ratio_sampling_1_vs_off']:.3f} |",
            "",
            f"**Ratio on/off with default sampling: {a['ratio_on_vs_off']:.3f}** (floor <= 1.05). In every "
            "variant the node agents record completions, queue depth and refusals through "
            "`ray.util.metrics` (in the agent actor, from the batched accounting; there is no switch for "
            "that), so these rows isolate the SDK's tracing seam." + _verdict_text(a.get("verdict_on_vs_off")),
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21, help="rounds at least")
    p.add_argument(
        "--max-rounds",
        type=int,
        default=201,
        help="task path: more rounds until the 95 %% CI is narrower than the margin",
    )
    p.add_argument("--decisions", type=int, default=5000)
    p.add_argument("--replicas", type=int, nargs="+", default=[16, 64])
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-tasks", action="store_true")
    p.add_argument("--skip-agentic-task", action="store_true")
    p.add_argument("--port", type=int, default=32479, help="GCS port of the local Ray started here")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("AGENTIC_TRACE_EXPORTER", "memory")  # workers of traced tasks record spans
    tmp = tempfile.mkdtemp(prefix="tb-", dir=os.environ.get("AGENTIC_TEST_TMP"))
    os.environ["TMPDIR"] = tmp
    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(gcs_server_port=args.port, metrics_export_port=args.port + 1, include_dashboard=False,
                            num_cpus=2, min_worker_port=args.port + 10, max_worker_port=args.port + 60,
                            temp_dir=os.path.join(tmp, "ray"), labels={"zone": "local", "accelerator": "cpu"}),
    )  # fmt: skip
    ray.init(address=cluster.address, log_to_driver=False)
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "python": platform.python_version(),
        "seed": args.seed,
        "default_sampling_ratio": DEFAULT_RATIO,
    }
    previous = Path(args.out) / "telemetry_overhead.json"
    try:
        result["router"] = [bench_router(args, tmp, n) for n in args.replicas]
        if not args.skip_tasks:
            result["tasks"] = bench_tasks(args)
        elif previous.exists():  # keep the task rows of the last full run, marked with their run time
            old = json.loads(previous.read_text())
            if old.get("tasks"):
                carried = {**result, "tasks": old["tasks"], "tasks_started": old.get("tasks_started") or old["started"]}
                try:
                    markdown(carried)  # rows of an older schema are not carried
                    result = carried
                except (KeyError, TypeError):
                    pass
    finally:
        ray.shutdown()
        cluster.shutdown()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "telemetry_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "telemetry_overhead.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
