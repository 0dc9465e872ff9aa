"""Live policy on Serve: the time from ``apply_policy`` to the last acknowledgement, and the data-plane
errors during rollouts under load.

One private local Ray (``agentic_ray.demo.local_ray``) with the control plane at its default intervals
(``agentic_ray.init``), one ``@agentic_ray.deployment`` of ``--replicas`` replicas (2 slots each, ~5 ms
per call) on its deploy-time policy ``v0``. A driver thread replays an open-loop Poisson load
(``--rate`` rps, classes critical/standard/sheddable 20/50/30 %) through a handle, so the driver's
router is a member too. Meanwhile the main thread rolls out ``--rollouts`` times: ``apply_policy(v1)``
(the standard class's budget changed), then ``rollback_policy()`` (back to ``v0``); for each it measures
the time from the call to the moment ``status()["serve"]`` shows every router and replica running the
new version (polled every 20 ms: the figure is at most that much late).

Errors: every failed call is counted by type. Admission refusals (``AdmissionError``: the policy
shedding under load) are reported apart; any other error during the run is a data-plane error of the
rollout (floor: 0).

Writes ``benchmarks/results/serve_rollout.json`` and ``.md``.

    python benchmarks/serve_rollout.py [--rollouts 3] [--rate 100] [--replicas 2] [--seed 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agentic_ray.demo import local_ray

RESULTS = Path(__file__).resolve().parent / "results"
APP, DEPLOYMENT = "rollout", "rollout/Model"
POLICY = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {{name: rollout-bench, version: "{version}"}}
default_class: standard
classes:
  critical: {{priority: 0, budget_ms: 500, shedding: never}}
  standard: {{priority: 1, budget_ms: {standard}, shedding: when_overloaded}}
  sheddable: {{priority: 2, budget_ms: 5000, shedding: first}}
entitlements: {{anonymous: {{allowed_classes: [critical, standard, sheddable]}}}}
"""
MIX = (("critical", 0.2), ("standard", 0.5), ("sheddable", 0.3))


def _policy_file(folder: Path, version: str, standard: int) -> str:
    path = folder / f"rollout-{version}.yaml"
    path.write_text(POLICY.format(version=version, standard=standard))
    return str(path)


def deploy(policy_path: str, replicas: int) -> Any:
    from ray import serve

    import agentic_ray.serve as ars

    @ars.deployment(policy=policy_path, slots=2, num_replicas=replicas, ray_actor_options={"num_cpus": 0})
    class Model:
        async def __call__(self, _payload: Any = None) -> str:
            await asyncio.sleep(0.005)
            return "ok"

    return serve.run(Model.bind(), name=APP, route_prefix=None)


class Load:
    """Open-loop Poisson load on a thread of its own; counts outcomes by type."""

    def __init__(self, handle: Any, rate: float, seed: int) -> None:
        self.handle, self.rate, self.rng = handle, rate, random.Random(seed)
        self.sent = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    async def _one(self, qos: str) -> None:
        from agentic_ray.errors import AdmissionError

        try:
            await self.handle.remote(None, qos=qos)
            self.ok += 1
        except AdmissionError as exc:
            key = f"{type(exc).__name__}:{exc.reason}"
            self.refused[key] = self.refused.get(key, 0) + 1
        except Exception as exc:
            key = type(exc).__name__
            self.errors[key] = self.errors.get(key, 0) + 1

    async def _run(self) -> None:
        pending: set[asyncio.Task] = set()
        classes, weights = zip(*MIX, strict=True)
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += self.rng.expovariate(self.rate)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            task = asyncio.get_running_loop().create_task(self._one(self.rng.choices(classes, weights)[0]))
            self.sent += 1
            pending.add(task)
            task.add_done_callback(pending.discard)
        while pending:
            await asyncio.gather(*list(pending))


def _members_on(sdk: Any, version: str) -> tuple[bool, int]:
    d = sdk.status()["serve"]["deployments"].get(DEPLOYMENT) or {}
    members = (d.get("routers") or []) + (d.get("replicas") or [])
    return bool(members) and d.get("policy_version") == version and all(
        m["policy_version"] == version for m in members
    ), len(members)


def _time_to_ack(sdk: Any, version: str, started: float, timeout_s: float = 30.0) -> tuple[float | None, int]:
    while time.monotonic() - started < timeout_s:
        done, members = _members_on(sdk, version)
        if done:
            return time.monotonic() - started, members
        time.sleep(0.02)
    return None, 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=3, help="apply + rollback pairs")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--settle-s", type=float, default=2.0, help="load before the first and between rollouts")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    import agentic_ray

    folder = Path(tempfile.mkdtemp(prefix="agr-rollout-"))
    v0, v1 = _policy_file(folder, "v0", 800), _policy_file(folder, "v1", 400)
    load0 = os.getloadavg()[0]
    acks: list[dict[str, Any]] = []
    with local_ray():
        agentic_ray.init(wait_s=60)
        handle = deploy(v0, args.replicas)
        for _ in range(20):
            handle.remote(None, qos="standard").result(timeout_s=60)
        _time_to_ack(agentic_ray, "v0", time.monotonic(), 60.0)  # every member registered
        load = Load(handle, args.rate, args.seed)
        load.start()
        time.sleep(args.settle_s)
        for i in range(args.rollouts):
            for step, version in (("apply", "v1"), ("rollback", "v0")):
                started = time.monotonic()
                if step == "apply":
                    agentic_ray.apply_policy(v1, wait=False)
                else:
                    agentic_ray.rollback_policy(wait=False)
                took, members = _time_to_ack(agentic_ray, version, started)
                acks.append({"rollout": i, "step": step, "version": version, "last_ack_s": took, "members": members})
                print(f"rollout {i} {step} -> {version}: last ack after {took} s ({members} members)", flush=True)
                time.sleep(args.settle_s)
        load.stop()
        agentic_ray.shutdown()
    times = [a["last_ack_s"] for a in acks if a["last_ack_s"] is not None]
    report = {
        "benchmark": "serve_rollout",
        "settings": vars(args),
        "host": {"cpus": os.cpu_count(), "load_1m": [load0, os.getloadavg()[0]]},
        "acks": acks,
        "last_ack_s": {
            "min": min(times) if times else None,
            "median": statistics.median(times) if times else None,
            "max": max(times) if times else None,
            "timed_out": len(acks) - len(times),
        },
        "load": {"sent": load.sent, "ok": load.ok, "refused": load.refused, "errors": load.errors},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_rollout.json").write_text(json.dumps(report, indent=2) + "\n")
    lat = report["last_ack_s"]
    lines = [
        "# Live policy on Serve: apply_policy to the last acknowledgement, under load",
        "",
        f"{args.replicas} replicas x 2 slots (~5 ms calls) and the driver's router; {args.rate:g} rps open-loop "
        f"Poisson (critical/standard/sheddable 20/50/30 %); {args.rollouts} apply + rollback pairs; control plane "
        f"at its default intervals; status polled every 20 ms. Host: {os.cpu_count()} CPUs, load "
        f"{load0:.1f} -> {os.getloadavg()[0]:.1f}.",
        "",
        "| step | version | last ack s | members |",
        "|---|---|---:|---:|",
        *(f"| {a['step']} {a['rollout']} | {a['version']} | {_fmt(a['last_ack_s'])} | {a['members']} |" for a in acks),
        "",
        f"Last acknowledgement: min {_fmt(lat['min'])} s, median {_fmt(lat['median'])} s, max {_fmt(lat['max'])} s"
        f" ({lat['timed_out']} not within 30 s).",
        "",
        f"Load: {load.sent} requests sent, {load.ok} answered, refused by admission "
        f"{sum(load.refused.values())} ({_counts(load.refused)}), data-plane errors {sum(load.errors.values())} "
        f"({_counts(load.errors)}; floor 0).",
    ]
    (RESULTS / "serve_rollout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


if __name__ == "__main__":
    raise SystemExit(main())
