"""``agentic-ray demo --workload llm``: a synthetic token streamer, agentic against plain Serve, live.

The service is a *synthetic token streamer*, not a model: a replica takes a stream of ``prompt_tokens``
and ``max_tokens``, sleeps ``prompt_tokens * prefill_ms_per_token`` (the prefill) and then yields one
token every ``decode_ms_per_token`` (the decode), with the stream model of its replica group in the
scenario (``llm_scenario.yaml``, also an ``agentic-ray sim`` scenario). Each replica runs ``slots``
streams at once.

``run_llm_live(scenario, seed, paths)`` builds the scenario's workload with the simulator's generator
(the same arrival times, classes and token counts as ``agentic-ray sim``) and sends every stream
open-loop at its arrival time through a streaming handle:

- ``agentic``: ``@agentic_ray.deployment`` (the agentic router and the replica gates); each stream
  carries its class, an absolute deadline and its ``prompt_tokens`` / ``max_tokens``, so the router and
  the gates predict its time to first token from the learned prefill rate and the queue;
- ``default``: a plain ``@serve.deployment`` with Serve's default router, ``slots`` streams at a time per
  replica, the rest waiting in arrival order.

The caller measures each stream: TTFT from send to the first token, TPOT ``(last - first) / (n - 1)``,
and the whole stream's latency; attainment is against the class's ``ttft_ms`` / ``tpot_ms`` (shed and
failed streams count as misses). The report has the shape of ``agentic-ray sim --json``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from agentic_ray.demo._live import PATHS, PROBE_TIMEOUTS, LiveOptions, drive_open_loop
from agentic_ray.demo._models import _group_for_rank
from agentic_ray.errors import AdmissionError
from agentic_ray.policies import Policy
from agentic_ray.sim.metrics import ClassStats
from agentic_ray.sim.runner import RunResult
from agentic_ray.sim.scenario import Scenario
from agentic_ray.sim.workload import Workload, build_workload

__all__ = ["PlainSyntheticStreamer", "SyntheticStreamer", "llm_scenario_path", "run_llm_live"]

SERVICE_NOTE = "synthetic token streamer: asyncio.sleep per prompt token and per output token (no model)"


def llm_scenario_path() -> Path:
    """Path of the LLM demo's scenario YAML (its policy is ``llm_policy.yaml`` beside it)."""
    return Path(str(resources.files(__package__).joinpath("llm_scenario.yaml")))


class SyntheticStreamer:
    """A replica of the synthetic token streamer; ``groups`` are the scenario's replica groups (dicts)."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        from ray import serve

        rank = serve.get_replica_context().rank
        self.group = _group_for_rank(groups, int(getattr(rank, "rank", rank)))
        self.name = str(self.group["name"])

    def agentic_replica_attrs(self) -> dict[str, Any]:
        """Published to routers by ``@agentic_ray.deployment``."""
        g = self.group
        return {"zone": g["zone"], "accelerator": g["accelerator"], "slots": int(g["slots"]),
                "cost": float(g["cost"]), "labels": {"group": self.name}}  # fmt: skip

    async def generate(self, payload: dict[str, Any]) -> Any:
        """Sleep for the prefill of ``payload["prompt_tokens"]``, then yield ``payload["max_tokens"]`` tokens."""
        g = self.group
        await asyncio.sleep(int(payload["prompt_tokens"]) * float(g["prefill_ms_per_token"]) / 1000.0)
        step = float(g["decode_ms_per_token"]) / 1000.0
        for i in range(int(payload["max_tokens"])):
            if i:
                await asyncio.sleep(step)
            yield i


class PlainSyntheticStreamer(SyntheticStreamer):
    """The same streamer for a plain ``@serve.deployment``: ``slots`` streams at once, the rest waiting in
    arrival order (a FIFO semaphore)."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        super().__init__(groups)
        self._slots: asyncio.Semaphore | None = None

    async def generate(self, payload: dict[str, Any]) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(int(self.group["slots"]))
        async with self._slots:
            async for token in super().generate(payload):
                yield token


def _groups(scenario: Scenario) -> list[dict[str, Any]]:
    out = []
    for g in scenario.replicas:
        if g.stream is None:
            raise ValueError(f"replicas: group {g.name!r} has no stream model (an LLM scenario needs one)")
        out.append({"name": g.name, "count": g.count, "slots": g.slots, "accelerator": g.accelerator,
                    "zone": g.zone, "cost": g.cost, "prefill_ms_per_token": g.stream.prefill_ms_per_token,
                    "decode_ms_per_token": g.stream.decode_ms_per_token})  # fmt: skip
    return out


def _deploy(path: str, scenario: Scenario, policy: Policy, timeout_s: float) -> Any:
    from ray import serve

    from agentic_ray.serve._deployment import deployment

    groups = _groups(scenario)
    replicas = sum(g["count"] for g in groups)
    slots = max(g["slots"] for g in groups)
    finite = [g.max_ongoing for g in scenario.replicas if g.max_ongoing != float("inf")]
    max_ongoing = int(max(finite)) if finite else 5
    if path == "agentic":
        app = deployment(policy=policy, slots=slots, num_replicas=replicas, ray_actor_options={"num_cpus": 0},
                         router_hook="agentic_ray.serve._hooks:PROCESS_STATS", name="AgenticStreamer",
                         )(SyntheticStreamer)  # fmt: skip
    else:
        app = serve.deployment(PlainSyntheticStreamer, name="PlainStreamer", num_replicas=replicas,
                               max_ongoing_requests=max_ongoing, ray_actor_options={"num_cpus": 0})  # fmt: skip
    serve.start(proxy_location="Disabled")
    handle = serve.run(app.bind(groups), name=f"llm-{path}", route_prefix=None, blocking=False)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = serve.status().applications.get(f"llm-{path}")
        if status is not None and status.status == "RUNNING":
            return handle.options(stream=True, method_name="generate")
        time.sleep(0.2)
    raise TimeoutError(f"the {path} streamer did not start within {timeout_s:.0f} s")


def _record(result: RunResult, policy: Policy, qos: str, budget_ms: float, outcome: str, reason: str,
            times: tuple[float, float, float, int]) -> None:  # fmt: skip
    """Count one measured stream: ``times`` is (sent, first token, last token, tokens)."""
    sent, first, last, n = times
    st = result.classes.setdefault(qos, ClassStats())
    st.requests += 1
    cls = policy.classes[qos]
    ttft = tpot = None
    if outcome == "completed" and n:
        latency_ms = (last - sent) * 1000.0
        st.completed += 1
        st.latencies_ms.append(latency_ms)
        st.within_budget += latency_ms <= budget_ms
        ttft = (first - sent) * 1000.0
        tpot = (last - first) * 1000.0 / (n - 1) if n > 1 else None
    elif outcome == "shed":
        st.shed += 1
        result.shed_reasons[reason] = result.shed_reasons.get(reason, 0) + 1
    else:
        st.failed += 1
        result.shed_reasons[f"failed:{reason}"] = result.shed_reasons.get(f"failed:{reason}", 0) + 1
    st.record_stream(ttft, tpot, cls.ttft_ms, cls.tpot_ms)


async def _replay(path: str, handle: Any, workload: Workload, scenario: Scenario, policy: Policy,
                  options: LiveOptions) -> RunResult:  # fmt: skip
    budgets = dict(workload.class_budget_ms)
    result = RunResult(path, {c: ClassStats() for c in budgets}, scenario.measured_s)
    counters = {"sent": 0, "done": 0, "shed": 0, "failed": 0}
    loop = asyncio.get_running_loop()

    async def one(item: Any) -> None:
        req = item.request
        payload = {"prompt_tokens": req.prompt_tokens, "max_tokens": req.max_tokens}
        budget_ms = budgets[req.qos]
        sent = time.time()
        kwargs: dict[str, Any] = {}
        if path == "agentic":
            kwargs["_agentic"] = {"qos": req.qos, "deadline": sent + budget_ms / 1000.0, **payload}
        outcome, reason, first, last, n = "failed", "", 0.0, 0.0, 0

        async def read() -> None:
            nonlocal first, last, n
            async for _ in handle.remote(payload, **kwargs):
                last = time.time()
                if n == 0:
                    first = last
                n += 1

        try:
            await asyncio.wait_for(read(), options.request_timeout_s)
            outcome = "completed"
        except AdmissionError as exc:
            outcome, reason = "shed", exc.reason
        except Exception as exc:  # every other error is a failed stream
            reason = type(exc).__name__
        counters["done" if outcome == "completed" else outcome] += 1
        if item.measured:
            _record(result, policy, req.qos, budget_ms, outcome, reason, (sent, first, last, n))

    async def progress(start: float) -> None:
        while True:
            await asyncio.sleep(options.progress_every_s)
            if options.progress is not None:
                options.progress(
                    f"  [{path:>7}] t={loop.time() - start:5.1f}s/{scenario.duration_s:.0f}s  streams sent "
                    f"{counters['sent']:4d}  finished {counters['done']:4d}  shed {counters['shed']:3d}  "
                    f"failed {counters['failed']:3d}"
                )

    await drive_open_loop(workload, one, counters, progress)
    result.total_requests = len(workload.items)
    return result


def run_llm_live(
    scenario: Scenario,
    seed: int | None = None,
    paths: Sequence[str] = PATHS,
    policy: Policy | None = None,
    options: LiveOptions | None = None,
) -> dict[str, Any]:
    """Replay the LLM ``scenario``'s streams on the connected Ray once per path (see the module
    docstring); the ``agentic-ray sim --json`` document with ``mode: live`` and the service labelled."""
    from ray import serve

    from agentic_ray.policies import load_policy
    from agentic_ray.serve._hooks import PROCESS_STATS

    options = options or LiveOptions()
    seed = scenario.seed if seed is None else seed
    if policy is None:
        if scenario.policy is None:
            raise ValueError("scenario: a live run needs the scenario's policy (field 'policy')")
        policy = load_policy(scenario.policy)
    if scenario.workload.tokens is None:
        raise ValueError("scenario: an LLM run needs workload.tokens (stream requests)")
    workload = build_workload(scenario, seed, policy)
    results: dict[str, Any] = {}
    for path in paths:
        if path not in PATHS:
            raise ValueError(f"path: unknown {path!r}; expected one of {', '.join(PATHS)}")
        handle = _deploy(path, scenario, policy, options.deploy_timeout_s)
        PROCESS_STATS.reset()
        probes_before = PROBE_TIMEOUTS.count
        try:
            run = asyncio.run(_replay(path, handle, workload, scenario, policy, options))
        finally:
            serve.delete(f"llm-{path}")
        if path == "agentic":  # the router's decision times (nanoseconds in RunResult)
            run.decision_ns = [int(us * 1000) for us in sorted(PROCESS_STATS.decision_us)]
        results[path] = run.to_json()
        if path == "agentic" and PROCESS_STATS.outcomes:
            results[path]["router_outcomes"] = {
                f"{w}:{o}:{r}": n for (w, o, r), n in sorted(PROCESS_STATS.outcomes.items())
            }
        results[path]["serve_queue_probe_timeouts"] = PROBE_TIMEOUTS.count - probes_before
    return {"scenario": scenario.name, "seed": seed, "results": results, "mode": "live", "service": SERVICE_NOTE}
