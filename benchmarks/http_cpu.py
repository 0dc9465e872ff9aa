"""CPU per request: an HTTP request through the proxy's door (its direct call), the same over Serve's HTTP
path, and a deployment-handle call, side by side on the same deployment.

Why. On a small host the proxies' and replicas' CPU, not the replicas' slots, bound what the HTTP path
serves (``serve._door``'s module docstring). This measures it directly: each arm runs in a fresh
one-node Ray (its own process, so the proxy starts with the arm's environment), an
``@agentic_ray.deployment`` of ``REPLICAS`` replicas of ``SLOTS`` slots taking ``SERVICE_S`` per call,
open-loop load at ``--rate`` requests/s for ``--duration`` seconds (classes 20/40/40 %, generous budgets
so nothing is shed), and the CPU time (user + system, ``/proc/<pid>/stat``) each process spent, less
its own idle rate measured over ``IDLE_S`` before the load, divided by the requests answered 200 (or ok).

Arms:

- ``http_direct``: HTTP to the deployment's route; the proxy's door sends what it lets in as one handle
  call (``serve._door_call``; the default);
- ``http_serve_path``: the same with ``AGENTIC_PROXY_DIRECT_CALL=0`` in the proxy's environment: Serve's
  HTTP path (the ASGI scope streamed to the replica, which calls back for the body and streams the
  answer back);
- ``handle``: ``agentic_ray.serve.call`` on a ``DeploymentHandle`` from the driver (open loop at the same
  rate); its router runs in the driver.

Columns: ``proxy_ms`` (Serve's proxy actor), ``replicas_ms`` (all replicas), ``caller_ms`` (the driver:
for ``handle`` the load generator and the router together; for HTTP the driver only waits, and the load
generator's own process, the HTTP client, is not counted) and ``server_ms`` = proxy + replicas (+ the
handle arm's caller, whose router does the proxy's routing work there). Rounds alternate the arms'
order; the table gives each column's mean over rounds with a 95 % t-interval.

    python benchmarks/http_cpu.py [--quick] [--rounds N] [--rate R] [--duration S] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentic_ray.testing.chaos import actor_pids, cpu_s

REPO = Path(__file__).resolve().parents[1]
HTTP_PORT = int(os.environ.get("AGENTIC_BENCH_CPU_HTTP_PORT", "31970"))
ARMS = ("http_direct", "http_serve_path", "handle")
SLOTS, REPLICAS = 2, 2
SERVICE_S = 0.005
IDLE_S = 3.0
BUDGETS = {"critical": 2000.0, "standard": 5000.0, "sheddable": 10000.0}  # nothing shed: CPU per answer
MIX = "critical=0.2,standard=0.4,sheddable=0.4"


def per_request_ms(before: float, after: float, idle_rate: float, seconds: float, requests: int) -> float:
    """CPU ms per request: the CPU a process spent over a load window of ``seconds`` (``after - before``)
    less its idle rate (CPU seconds per second) over as long, over ``requests``. Hand-checkable: 2.0 s
    spent over 10 s at an idle rate of 0.05 over 500 requests is (2.0 - 0.5) / 500 = 3 ms."""
    if requests <= 0:
        return math.nan
    return max(0.0, (after - before) - idle_rate * seconds) / requests * 1000.0


def _deploy() -> Any:
    from ray import serve

    import agentic_ray

    @agentic_ray.deployment(slots=SLOTS, num_replicas=REPLICAS, ray_actor_options={"num_cpus": 0})
    class Model:
        async def __call__(self, prompt: Any) -> str:
            await asyncio.sleep(SERVICE_S)
            return "ok"

    return serve.run(Model.bind(), name="cpu", route_prefix="/cpu")


def _http(rate: float, duration: float, seed: int) -> int:
    """Open-loop HTTP load in its own process; the answers that were 200."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    budgets = ",".join(f"{k}={v}" for k, v in BUDGETS.items())
    cmd = [sys.executable, "-m", "agentic_ray.testing.http_load", f"http://127.0.0.1:{HTTP_PORT}/cpu",
           "--rate", str(rate), "--duration", str(duration), "--mix", MIX, "--budgets", budgets,
           "--seed", str(seed), "--json", out]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=duration + 120, env=env)
    with open(out) as fh:
        records = json.load(fh)["records"]
    os.unlink(out)
    return sum(1 for r in records if r["status"] == 200)


def _handle(handle: Any, rate: float, duration: float, seed: int) -> int:
    from agentic_ray.testing.chaos import drive_handle
    from agentic_ray.testing.ledger import Ledger

    ledger = Ledger(1.0)
    asyncio.run(drive_handle(handle, ledger, rate_rps=rate, duration_s=duration, budgets_ms=BUDGETS, seed=seed))
    return sum(1 for e in ledger.entries.values() if e.kind == "ok")


def run_arm(arm: str, rate: float, duration: float, seed: int) -> dict[str, Any]:
    """One arm in this process's own Ray (the caller set the arm's environment before)."""
    from ray import serve

    from agentic_ray.demo import local_ray

    with local_ray(num_cpus=2):
        serve.start(http_options={"host": "127.0.0.1", "port": HTTP_PORT})
        handle = _deploy()
        # warm every path the arm uses (router, replicas, proxy, the door's route)
        _handle(handle, 20.0, 1.0, seed + 7) if arm == "handle" else _http(20.0, 1.0, seed + 7)
        time.sleep(1.0)
        procs = {
            "proxy": actor_pids("ProxyActor"),
            "replicas": actor_pids("ServeReplica:cpu:"),
            "caller": [os.getpid()],
        }

        def spent() -> dict[str, float]:  # CPU seconds so far, per kind of process
            return {kind: sum(cpu_s(p) for p in pids) for kind, pids in procs.items()}

        idle0 = spent()
        time.sleep(IDLE_S)
        idle1 = spent()
        began = time.time()
        before = spent()
        ok = _handle(handle, rate, duration, seed) if arm == "handle" else _http(rate, duration, seed)
        after = spent()
        window = time.time() - began
    row: dict[str, Any] = {"arm": arm, "ok": ok, "window_s": round(window, 2), "pids": procs}
    for kind in procs:
        idle = idle1[kind] - idle0[kind]
        row[f"{kind}_ms"] = round(per_request_ms(before[kind], after[kind], idle / IDLE_S, window, ok), 3)
        row[f"{kind}_idle_rate"] = round(idle / IDLE_S, 4)
    row["server_ms"] = round(row["proxy_ms"] + row["replicas_ms"] + (row["caller_ms"] if arm == "handle" else 0.0), 3)
    return row


def _arm_in_subprocess(arm: str, rate: float, duration: float, seed: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    if arm == "http_serve_path":
        env["AGENTIC_PROXY_DIRECT_CALL"] = "0"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--arm", arm, "--rate", str(rate), "--duration",
           str(duration), "--seed", str(seed), "--out", out]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=duration + 300, env=env)
    with open(out) as fh:
        row = json.load(fh)
    os.unlink(out)
    return row


# Student's t 0.975 quantile by sample size (degrees of freedom n - 1); the normal's 1.96 past 31
_T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262, 11: 2.228,
         12: 2.201, 13: 2.179, 14: 2.160, 15: 2.145, 16: 2.131, 17: 2.120, 18: 2.110, 19: 2.101, 20: 2.093,
         21: 2.086, 22: 2.080, 23: 2.074, 24: 2.069, 25: 2.064, 26: 2.060, 27: 2.056, 28: 2.052, 29: 2.048,
         30: 2.045, 31: 2.042}  # fmt: skip


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of ``values`` (the interval is NaN for fewer than two)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = _T975.get(len(values), 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per arm and column: ``[mean, low, high]``."""
    out: dict[str, dict[str, list[float]]] = {}
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        out[arm] = {col: [round(x, 3) for x in t_interval([r[col] for r in mine])]
                    for col in ("proxy_ms", "replicas_ms", "caller_ms", "server_ms")}  # fmt: skip
    return out


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = ["# CPU per request: HTTP (door's direct call, Serve's path) and handle calls", "",
             f"Host: {meta['cpus']} CPUs, {meta['platform']}; load {meta['loadavg']}; {meta['rounds']} round(s) "
             f"of {meta['duration_s']} s at {meta['rate_rps']} requests/s, arms alternating; mean [95 % interval].",
             "", "| arm | proxy ms | replicas ms | caller ms | server ms |", "|---|---|---|---|---|"]  # fmt: skip

    def cell(v: list[float]) -> str:
        return f"{v[0]:.2f}" + ("" if math.isnan(v[1]) else f" [{v[1]:.2f}, {v[2]:.2f}]")

    for arm, cols in summary.items():
        lines.append(f"| {arm} | {cell(cols['proxy_ms'])} | {cell(cols['replicas_ms'])} | "
                     f"{cell(cols['caller_ms'])} | {cell(cols['server_ms'])} |")  # fmt: skip
    lines += ["", "server ms: proxy + replicas, plus the caller's for `handle` (its router runs there). The HTTP "
              "client's own process is not counted."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds of 5 s")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--rate", type=float, default=30.0, help="requests/s, open loop (default 30)")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm, in this process
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "http_cpu"))
    args = parser.parse_args(argv)
    if not args.rate > 0:
        parser.error(f"--rate: must be > 0, got {args.rate}")
    duration = args.duration or (5.0 if args.quick else 8.0)
    if not duration > 0:
        parser.error(f"--duration: must be > 0, got {duration}")
    if args.arm:
        Path(args.out).write_text(json.dumps(run_arm(args.arm, args.rate, duration, args.seed)))
        return 0
    rounds = args.rounds or (2 if args.quick else 3)
    if rounds < 1:
        parser.error(f"--rounds: must be >= 1, got {rounds}")
    rows = []
    for rnd in range(rounds):
        order = ARMS[rnd % len(ARMS) :] + ARMS[: rnd % len(ARMS)]  # each arm first in turn
        for arm in order:
            row = _arm_in_subprocess(arm, args.rate, duration, seed=rnd)
            row["round"] = rnd
            rows.append(row)
            print(f"[http_cpu] round {rnd} {arm:16s} proxy {row['proxy_ms']:6.2f} replicas {row['replicas_ms']:6.2f}"
                  f" caller {row['caller_ms']:6.2f} server {row['server_ms']:6.2f} ms/request ({row['ok']} ok)",
                  flush=True)  # fmt: skip
    meta = {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "rounds": rounds, "duration_s": duration, "rate_rps": args.rate}  # fmt: skip
    summary = summarize(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(markdown(summary, meta))
    print(markdown(summary, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
