"""Overhead of a governed actor (``@agentic_ray.actor``) against the same class as a plain Ray actor.

One run, one single-node local cluster (``zone=eu-west``), the fraud policy of the example with test
grants, an actor of tenant ``bank-eu`` (data class ``pii``: placed by the residency rule). The method
takes one argument and returns it. Variants, their rounds interleaved so machine noise hits all alike:

- ``plain_sync`` (``@ray.remote``, Ray's default of one thread) and ``agentic_sync`` (one slot, the
  default ``max_queued`` of 64: Ray runs it with 1 + 64 + 8 threads, the queue lets one call run);
- ``plain_threaded``: the plain actor with as many Ray threads as the governed one gets
  (``max_concurrency=73``): Ray's own cost of a threaded actor, apart from the queue;
- ``plain_async`` / ``agentic_async``: the same method as ``async def`` (async actors).

Measured:

- **sequential**: ``ray.get(h.echo.remote(i))`` one at a time; per-call latency, median and p99;
- **pipelined**: ``ray.get([h.echo.remote(i) for i in range(window)])`` with ``window`` below
  ``max_queued`` (a larger window is refused by the governed actor's bound, by design); per-window
  latency, median and p99, and calls/s;
- **submit**: the ``.remote()`` call alone (the caller's classification and context + Ray's submit).

Floor (the task path's): median ratio agentic/plain <= 1.2. Writes ``benchmarks/results/actor_overhead.json``
and ``.md``. Usage::

    python benchmarks/actor_overhead.py [--calls 500] [--rounds 4] [--window 50] [--port 26511]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
POLICY = ROOT / "examples" / "policies" / "fraud.yaml"
sys.path.insert(0, str(ROOT / "benchmarks"))
from task_overhead import pct  # noqa: E402  (nearest rank, pinned by tests/testing/test_bench_task_overhead.py)


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    return {"n": len(values), "median": statistics.median(values) * scale, "p99": pct(values, 0.99) * scale}


def sequential(h, n: int) -> list[float]:
    import ray

    out = []
    for i in range(n):
        t0 = time.perf_counter()
        ray.get(h.echo.remote(i), timeout=60)
        out.append(time.perf_counter() - t0)
    return out


def pipelined(h, windows: int, window: int) -> list[float]:
    import ray

    out = []
    for _ in range(windows):
        t0 = time.perf_counter()
        ray.get([h.echo.remote(i) for i in range(window)], timeout=120)
        out.append(time.perf_counter() - t0)
    return out


def submits(h, n: int) -> list[float]:
    import ray

    refs, out = [], []
    for i in range(n):
        t0 = time.perf_counter()
        refs.append(h.echo.remote(i))
        out.append(time.perf_counter() - t0)
        if len(refs) >= 32:  # stay below the governed actor's bound
            ray.get(refs, timeout=60)
            refs = []
    ray.get(refs, timeout=60)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per variant per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window", type=int, default=50, help="calls per pipelined window (< max_queued)")
    parser.add_argument("--windows", type=int, default=10, help="pipelined windows per variant per round")
    parser.add_argument("--port", type=int, default=26511)
    parser.add_argument("--tmp", default=f"/tmp/agr-actor-bench-{os.getpid()}")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    import agentic_ray
    from agentic_ray.testing.policies import with_test_grants

    load_at_start = os.getloadavg()[0]

    os.makedirs(args.tmp, exist_ok=True)
    os.environ["TMPDIR"] = args.tmp
    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(gcs_server_port=args.port, include_dashboard=False, temp_dir=args.tmp + "/ray",
                            num_cpus=2, labels={"zone": "eu-west", "accelerator": "cpu"}),
    )  # fmt: skip
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        granted = Path(args.tmp) / "fraud-granted.yaml"
        granted.write_text(with_test_grants(POLICY.read_text()))
        agentic_ray.init(policy=str(granted), wait_s=60)

        class Echo:
            def echo(self, x):
                return x

        class AsyncEcho:
            async def echo(self, x):
                return x

        governed = {"tenant": "bank-eu", "data_class": "pii", "budget_ms": 60_000, "num_cpus": 0}
        handles = {
            "plain_sync": ray.remote(num_cpus=0)(Echo).remote(),
            "agentic_sync": agentic_ray.actor(**governed)(Echo).remote(),
            "plain_threaded": ray.remote(num_cpus=0, max_concurrency=73)(Echo).remote(),
            "plain_async": ray.remote(num_cpus=0)(AsyncEcho).remote(),
            "agentic_async": agentic_ray.actor(**governed)(AsyncEcho).remote(),
        }
        for h in handles.values():  # start the processes, warm the caches
            sequential(h, 200)
            pipelined(h, 3, args.window)
        seq: dict[str, list[float]] = {k: [] for k in handles}
        pipe: dict[str, list[float]] = {k: [] for k in handles}
        for r in range(args.rounds):
            order = list(handles.items())
            if r % 2:
                order.reverse()
            for name, h in order:
                seq[name] += sequential(h, args.calls)
            for name, h in order:
                pipe[name] += pipelined(h, args.windows, args.window)
        submit = {name: summary(submits(handles[name], 1000), 1e6) for name in ("plain_sync", "agentic_sync")}
        stats = ray.get(handles["agentic_sync"].agentic_actor_stats.remote(), timeout=60)
    finally:
        with contextlib.suppress(Exception):
            agentic_ray.shutdown(stop_control_plane=True)
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(args.tmp, ignore_errors=True)

    result = {
        "benchmark": "actor_overhead",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "load_average_at_start": load_at_start,
        },
        "settings": vars(args),
        "sequential_ms": {k: summary(v) for k, v in seq.items()},
        "pipelined_window_ms": {k: summary(v) for k, v in pipe.items()},
        "pipelined_calls_per_s": {k: args.window * len(v) / sum(v) for k, v in pipe.items()},
        "submit_us": submit,
        "agentic_sync_stats": stats,
    }
    s, p = result["sequential_ms"], result["pipelined_window_ms"]
    result["ratios"] = {
        "sync_sequential_median": s["agentic_sync"]["median"] / s["plain_sync"]["median"],
        "sync_pipelined_median": p["agentic_sync"]["median"] / p["plain_sync"]["median"],
        "sync_vs_threaded_sequential_median": s["agentic_sync"]["median"] / s["plain_threaded"]["median"],
        "sync_vs_threaded_pipelined_median": p["agentic_sync"]["median"] / p["plain_threaded"]["median"],
        "async_sequential_median": s["agentic_async"]["median"] / s["plain_async"]["median"],
        "async_pipelined_median": p["agentic_async"]["median"] / p["plain_async"]["median"],
    }
    lines = [
        "# Governed actor overhead (`benchmarks/actor_overhead.py`)",
        "",
        f"{os.cpu_count()} CPUs (load average {load_at_start:.1f} at the start), Ray {ray.__version__}, "
        f"Python {platform.python_version()}; "
        f"{args.rounds} interleaved rounds of {args.calls} sequential calls and {args.windows} windows of "
        f"{args.window} pipelined calls per variant.",
        "",
        "| variant | sequential median ms | p99 ms | pipelined window median ms | p99 ms | calls/s |",
        "|---|---|---|---|---|---|",
    ]
    for k in handles:
        lines.append(
            f"| {k} | {s[k]['median']:.3f} | {s[k]['p99']:.3f} | {p[k]['median']:.2f} | {p[k]['p99']:.2f} | "
            f"{result['pipelined_calls_per_s'][k]:.0f} |"
        )
    lines += ["", "| ratio (median) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["ratios"].items()]
    lines += ["", f"Submit (`.remote()` alone), us: {json.dumps(submit)}", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "actor_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "actor_overhead.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
