"""Hedged requests on live Ray Serve: ``agentic_ray.serve.call`` with and without ``hedge_after_ms``.

One private local Ray (``agentic_ray.demo.local_ray``), one ``@agentic_ray.deployment`` of three
replicas (2 slots each). Each copy of a request sleeps a lognormal ~10 ms, except that with probability
``--stall-p`` (default 5 %) it stalls for ``--stall-ms`` (default 300 ms) first: a straggler that no
replica report predicts (a GC pause, a cold cache, a noisy neighbour), drawn independently per copy.
The same seeded open-loop Poisson arrival schedule (``--rate`` rps for ``--duration`` s, class
``critical``, budget 150 ms) is replayed twice, alternating: plain calls, then hedged calls
(``hedge_after_ms``, default 40 ms; the hedge goes to another replica, paid from the policy's retry
budget, first answer wins). Reported per run: p50/p99/p99.9 latency, SLO attainment, and the copies
the router sent (requests plus hedges; a losing copy is cancelled but may already have run).

Writes ``benchmarks/results/serve_hedging.json`` and ``.md``.

    python benchmarks/serve_hedging.py [--duration 20] [--rate 30] [--hedge-after-ms 40] [--seed 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from agentic_ray.demo import local_ray
from agentic_ray.sim.metrics import ClassStats, summarize

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_MS = 150.0
POLICY = f"""
apiVersion: agentic-ray/v1
kind: Policy
metadata: {{name: hedging-bench}}
default_class: critical
classes:
  critical: {{priority: 0, budget_ms: {BUDGET_MS:g}, shedding: never}}
admission:
  retry: {{ratio: 0.2, min_per_s: 5}}
"""


def deploy(policy_path: str, stall_p: float, stall_ms: float) -> Any:
    from ray import serve

    import agentic_ray.serve as ars

    @ars.deployment(policy=policy_path, slots=2, num_replicas=3, ray_actor_options={"num_cpus": 0},
                    router_hook="agentic_ray.serve._hooks:PROCESS_STATS")  # fmt: skip
    class Straggly:
        def __init__(self) -> None:
            self.rng = random.Random(serve.get_replica_context().replica_id.unique_id)

        async def __call__(self, _payload: Any = None) -> None:
            if self.rng.random() < stall_p:
                await asyncio.sleep(stall_ms / 1000.0)
            await asyncio.sleep(self.rng.lognormvariate(-4.63, 0.3))  # median ~9.7 ms

    serve.start(proxy_location="Disabled")
    return serve.run(Straggly.bind(), name="hedging-bench", route_prefix=None)


def routed_copies() -> int:
    """Copies this process's router sent to replicas so far (first copies and hedges)."""
    from agentic_ray.serve._hooks import PROCESS_STATS

    routed = PROCESS_STATS.outcomes.items()
    return sum(n for (where, outcome, _), n in routed if where == "router" and outcome == "route")


async def replay(
    handle: Any, arrivals: list[float], hedge_after_ms: float | None, errors: dict[str, int]
) -> ClassStats:
    import agentic_ray.serve as ars

    stats = ClassStats()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    pending: set[asyncio.Task] = set()

    async def one() -> None:
        sent = time.time()
        stats.requests += 1
        try:
            await ars.call(handle, hedge_after_ms=hedge_after_ms)
        except Exception as exc:
            stats.failed += 1
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        ms = (time.time() - sent) * 1000.0
        stats.completed += 1
        stats.latencies_ms.append(ms)
        stats.within_budget += ms <= BUDGET_MS

    for t in arrivals:
        delay = start + t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
    while pending:
        await asyncio.gather(*list(pending))
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--hedge-after-ms", type=float, default=40.0)
    parser.add_argument("--stall-p", type=float, default=0.05)
    parser.add_argument("--stall-ms", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating plain/hedged rounds")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    arrivals, t = [], 0.0
    while True:
        t += rng.expovariate(args.rate)
        if t >= args.duration:
            break
        arrivals.append(t)
    RESULTS.mkdir(parents=True, exist_ok=True)
    policy_path = RESULTS / "serve_hedging_policy.yaml"
    policy_path.write_text(POLICY.lstrip())
    runs: dict[str, ClassStats] = {"plain": ClassStats(), "hedged": ClassStats()}
    copies = {"plain": 0, "hedged": 0}
    errors: dict[str, dict[str, int]] = {"plain": {}, "hedged": {}}
    load0 = os.getloadavg()[0]
    with local_ray():
        handle = deploy(str(policy_path), args.stall_p, args.stall_ms)
        asyncio.run(replay(handle, arrivals[:50], None, {}))  # warm up: routers learn service times
        for r in range(args.rounds):
            order = ["plain", "hedged"] if r % 2 == 0 else ["hedged", "plain"]
            for name in order:
                before = routed_copies()
                after_ms = args.hedge_after_ms if name == "hedged" else None
                runs[name].merge(asyncio.run(replay(handle, arrivals, after_ms, errors[name])))
                copies[name] += routed_copies() - before
                print(f"round {r} {name}: done", flush=True)
    report = {
        "benchmark": "serve_hedging",
        "settings": vars(args) | {"budget_ms": BUDGET_MS, "requests_per_run": len(arrivals)},
        "host": {"cpus": os.cpu_count(), "load_1m": [load0, os.getloadavg()[0]]},
        "results": {
            name: summarize(st) | {"copies_sent": copies[name], "errors": errors[name]} for name, st in runs.items()
        },
    }
    (RESULTS / "serve_hedging.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Hedged requests on live Serve (`agentic_ray.serve.call`)",
        "",
        f"3 replicas x 2 slots; each copy ~10 ms, stalls {args.stall_ms:g} ms with p={args.stall_p:g}; "
        f"{args.rate:g} rps Poisson for {args.duration:g} s, {args.rounds} alternating rounds; critical "
        f"budget {BUDGET_MS:g} ms; hedge after {args.hedge_after_ms:g} ms. Host: {os.cpu_count()} CPUs, "
        f"load {load0:.1f} -> {os.getloadavg()[0]:.1f}.",
        "",
        "| calls | requests | failed | p50 ms | p99 ms | p99.9 ms | SLO % | copies sent | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, res in report["results"].items():
        lines.append(
            f"| {name} | {res['requests']} | {res['failed']} | {res['p50_ms']} | {res['p99_ms']} | "
            f"{res['p999_ms']} | {100 * (res['slo_attainment'] or 0):.1f} | {res['copies_sent']} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(res['errors'].items())) or '-'} |"
        )
    (RESULTS / "serve_hedging.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
