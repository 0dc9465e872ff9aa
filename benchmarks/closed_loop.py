"""The closed loop on real Serve: one replica slows down 5x; critical SLO attainment with the loop off
and on.

One private local Ray (token authentication on) with the control plane at short drift windows (burn
rate over 3 s and 1 s, threshold 2; p99 over 2 s), one ``@agentic_ray.deployment`` of 3 replicas
(``--slots`` 1 each, ``--service-ms`` 30 per call). The same seeded open-loop Poisson arrivals
(``--rate`` rps; critical, standard, sheddable 30/40/30 %) run with the loop off and on, ``--rounds``
times in alternating order, each on a fresh deployment: at ``--slow-at`` s one replica's service time
goes up ``--factor`` x (the TEST HOOK ``agentic_ray.testing.slowdown``). The control plane's policy has
two ``actions`` rules on a burn-rate alert of the critical class on the deployment: ``avoid_replica``
(route away from the replica whose recent latency drifted) and ``tighten_admission`` (halve the caps of
the less urgent classes); with the loop **off** the same policy runs with ``dry_run: true`` (the log
says what would be done, nothing is done), with the loop **on** it acts.

``--blind-router`` deploys with a router that learns no service times (its estimates lag the drift, as a
router in another process or a baseline's would), so routing around the slowed replica is left to the
control plane. Reported per run: critical SLO attainment per second of arrival (requests answered within their class
budget / requests sent), when the first alert rose, when attainment was back at or above 99 % after it
(the first 1 s bucket from which it stays there, and the first one at all), and the actions' log
sequence (alert -> action -> clear -> restore -> revert).

Writes ``benchmarks/results/closed_loop.json``, ``.md`` and ``closed_loop.png`` (``--out``: another path).

    python benchmarks/closed_loop.py [--duration 30] [--slow-at 10] [--rate 50] [--slots 1] [--service-ms 30]
                                     [--factor 5] [--seed 11] [--rounds 2] [--blind-router] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Token authentication on, with a token made for this run (read by Ray when it is imported: set first).
os.environ.setdefault("RAY_AUTH_MODE", "token")
if os.environ["RAY_AUTH_MODE"] == "token" and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

RESULTS = Path(__file__).resolve().parent / "results"
APP, DEPLOYMENT = "closedloop", "closedloop/Model"
BUDGET_MS = {"critical": 80.0, "standard": 400.0, "sheddable": 2000.0}
MIX = (("critical", 0.3), ("standard", 0.4), ("sheddable", 0.3))
POLICY = """apiVersion: agentic-ray/v1
kind: Policy
metadata: {{name: closed-loop-bench, version: "{version}"}}
default_class: standard
classes:
  critical: {{priority: 0, budget_ms: 80, shedding: never}}
  standard: {{priority: 1, budget_ms: 400}}
  sheddable: {{priority: 2, budget_ms: 2000, shedding: first}}
entitlements: {{anonymous: {{allowed_classes: [critical, standard, sheddable]}}}}
"""
ACTIONS = """actions:
  dry_run: {dry_run}
  rules:
    - id: slow-replica
      when: {{alert: burn_rate, class: critical, deployment: closedloop/Model}}
      do: avoid_replica
      hold_s: 5
    - id: shed-less
      when: {{alert: burn_rate, class: critical, deployment: closedloop/Model}}
      do: tighten_admission
      factor: 0.5
      hold_s: 5
      restore_step: 0.25
      restore_every_s: 1
"""


@contextlib.contextmanager
def token_ray(num_cpus: int = 2) -> Iterator[str]:
    """A private one-node Ray (token authentication as set at the top of this module), connected."""
    import ray
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="agr-closed-loop-")
    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(num_cpus=num_cpus, include_dashboard=False, temp_dir=os.path.join(tmp, "ray")),
    )
    ray.init(address=cluster.address, namespace="agentic-bench", log_to_driver=False, logging_level="ERROR")
    try:
        yield cluster.address
    finally:
        with contextlib.suppress(Exception):
            from ray import serve

            serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


def schedule(rate: float, duration: float, seed: int) -> list[tuple[float, str]]:
    """The seeded arrivals: ``(seconds from the start, class)``, the same for both runs."""
    rng = random.Random(seed)
    classes, weights = zip(*MIX, strict=True)
    out, t = [], rng.expovariate(rate)
    while t < duration:
        out.append((t, rng.choices(classes, weights)[0]))
        t += rng.expovariate(rate)
    return out


# ``--blind-router``: a router that does not learn service times (what a router whose estimates lag sees,
# or one in another process); the control plane's action then has to route around the slowed replica.
BLIND_ROUTER = {"alpha": 0.001, "deviation_beta": 0.001, "deviation_k": 0.0, "residual": False}


def deploy(policy_path: str, slots: int = 1, service_s: float = 0.03, blind: bool = False) -> Any:
    from ray import serve

    import agentic_ray.serve as ars

    @ars.deployment(policy=policy_path, slots=slots, num_replicas=3, ray_actor_options={"num_cpus": 0},
                    router_options=dict(BLIND_ROUTER) if blind else None)  # fmt: skip
    class Model:
        async def __call__(self, payload: Any = None) -> str:
            from ray import serve

            from agentic_ray.testing import slowdown

            if payload == "who":
                return str(serve.get_replica_context().replica_id.unique_id)
            await asyncio.sleep(service_s * slowdown.factor())  # TEST HOOK: 5x on the slowed replica
            return "ok"

    return serve.run(Model.bind(), name=APP, route_prefix=None)


def drive(handle: Any, arrivals: list[tuple[float, str]], started: float) -> list[dict[str, Any]]:
    """Send every arrival at its time from one event loop; each result: ``{t, qos, ok, latency_ms}``."""
    results: list[dict[str, Any]] = []

    async def one(t: float, qos: str) -> None:
        sent = time.monotonic()
        try:
            await handle.remote(None, qos=qos)
            ok = True
        except Exception:
            ok = False
        results.append({"t": t, "qos": qos, "ok": ok, "latency_ms": (time.monotonic() - sent) * 1000.0})

    async def run() -> None:
        tasks = []
        for t, qos in arrivals:
            await asyncio.sleep(max(0.0, started + t - time.monotonic()))
            tasks.append(asyncio.get_running_loop().create_task(one(t, qos)))
        await asyncio.gather(*tasks)

    asyncio.run(run())
    return results


def attainment_per_second(results: list[dict[str, Any]], duration: float, qos: str = "critical") -> list[float | None]:
    """Per 1 s bucket of arrival: the share of ``qos`` requests answered within the class budget."""
    buckets: list[list[int]] = [[0, 0] for _ in range(int(duration) + 1)]
    for r in results:
        if r["qos"] == qos:
            b = buckets[int(r["t"])]
            b[0] += 1
            b[1] += int(r["ok"] and r["latency_ms"] <= BUDGET_MS[qos])
    return [good / n if n else None for n, good in buckets]


def recovery(per_s: list[float | None], alert_s: float | None, floor: float = 0.99) -> dict[str, float | None]:
    """After the alert: the first bucket at or above ``floor`` and the first from which every later one is
    (seconds after the alert, to the bucket's end)."""
    if alert_s is None:
        return {"first_s": None, "stays_s": None}
    start = int(alert_s)
    first = next((i for i in range(start, len(per_s)) if per_s[i] is not None and per_s[i] >= floor), None)
    stays = None
    for i in range(start, len(per_s)):
        if all(v is None or v >= floor for v in per_s[i:]):
            stays = i
            break
    return {
        "first_s": None if first is None else first + 1 - alert_s,
        "stays_s": None if stays is None else stays + 1 - alert_s,
    }


def one_run(sdk: Any, folder: Path, loop_on: bool, arrivals: list[tuple[float, str]], args: Any) -> dict[str, Any]:
    from ray import serve

    from agentic_ray.testing import slowdown

    slowdown.clear()
    version = "loop-on" if loop_on else "loop-off"
    deploy_time = folder / "deploy.yaml"
    deploy_time.write_text(POLICY.format(version="deploy"))
    handle = deploy(str(deploy_time), args.slots, args.service_ms / 1000.0, args.blind_router)
    for _ in range(10):
        handle.remote(None, qos="standard").result(timeout_s=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        d = sdk.status()["serve"]["deployments"].get(DEPLOYMENT) or {}
        if len(d.get("replicas") or []) >= 3:
            break
        time.sleep(0.2)
    # The previous run's alerts must have cleared (its slow completions age out of the drift windows), or
    # this run would start with an alert, and with the loop on, with actions, that the run did not cause.
    while time.monotonic() < deadline + 60:
        st = sdk.status()
        if not (st["alerts"] or st["actions"].get("active")):
            break
        time.sleep(0.5)
    policy = folder / f"{version}.yaml"
    policy.write_text(POLICY.format(version=version) + ACTIONS.format(dry_run=str(not loop_on).lower()))
    sdk.apply_policy(str(policy))
    # The replica the router prefers at light load (one that gets no traffic would prove nothing).
    answers = [handle.remote("who", qos="critical").result(timeout_s=60) for _ in range(10)]
    slow = max(sorted(set(answers)), key=answers.count)
    wall0 = time.time()
    started = time.monotonic() + 0.5

    def slow_down() -> None:
        time.sleep(max(0.0, started + args.slow_at - time.monotonic()))
        slowdown.set_slowdown(slow, args.factor)

    timer = threading.Thread(target=slow_down, daemon=True)
    timer.start()
    results = drive(handle, arrivals, started)
    timer.join()
    time.sleep(args.tail)  # let the alert clear and the actions revert while idle
    log = [r for r in action_log(folder / "logs") if r["at"] >= wall0]
    slowdown.clear()
    serve.delete(APP)
    offset = started - time.monotonic() + time.time()  # wall clock of t = 0
    alert_at = next((r["at"] - offset for r in log if r["event"] == "alert"), None)
    per_s = attainment_per_second(results, args.duration)
    late = [r for r in results if r["qos"] == "critical" and not (r["ok"] and r["latency_ms"] <= BUDGET_MS["critical"])]
    return {
        "loop": "on" if loop_on else "off",
        "slowed_replica": slow,
        "alert_s": alert_at,
        "critical_attainment_per_s": per_s,
        "critical_attainment": 1 - len(late) / max(1, sum(r["qos"] == "critical" for r in results)),
        "critical_missed": len(late),
        "recovery_after_alert": recovery(per_s, alert_at),
        "log": [
            {
                "t": round(r["at"] - offset, 3),
                "event": r["event"],
                "rule": r["rule"],
                "target": r["target"],
                "dry_run": r["dry_run"],
            }
            for r in log
        ],
        "sequence": {rule: [r["event"] for r in log if r["rule"] == rule] for rule in ("slow-replica", "shed-less")},
        "requests": len(results),
    }


def action_log(directory: Path) -> list[dict[str, Any]]:
    """The actions' records of the coordinator's decision log (every one; ``status()`` keeps the last 50)."""
    out = []
    for path in sorted(directory.glob("coordinator-*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            body = rec.get("body") or {}
            if rec.get("kind") == "decision" and str(body.get("action", "")).startswith("control:"):
                inputs = body.get("inputs") or {}
                if "target" in inputs:
                    out.append({"at": rec["ts"], "event": body["action"].split(":", 1)[1],
                                "rule": (body.get("rule_ids") or [""])[0], "target": inputs["target"],
                                "dry_run": bool(inputs.get("dry_run"))})  # fmt: skip
    return sorted(out, key=lambda r: r["at"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals per run")
    parser.add_argument("--slow-at", type=float, default=10.0, help="when the replica slows down")
    parser.add_argument("--factor", type=float, default=5.0, help="its service time multiplier")
    parser.add_argument("--rate", type=float, default=50.0, help="arrivals per second")
    parser.add_argument("--slots", type=int, default=1, help="slots per replica")
    parser.add_argument("--service-ms", type=float, default=30.0, help="service time per call")
    parser.add_argument("--tail", type=float, default=10.0, help="idle seconds after the arrivals")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=2, help="(off, on) pairs, the order alternating")
    parser.add_argument("--blind-router", action="store_true", help="a router that learns no service times")
    parser.add_argument("--out", default=str(RESULTS / "closed_loop"), help="output path without suffix")
    args = parser.parse_args()

    import agentic_ray
    from agentic_ray.actors._common import ControlPlaneConfig

    folder = Path(tempfile.mkdtemp(prefix="agr-closed-loop-"))
    arrivals = schedule(args.rate, args.duration, args.seed)
    load0 = os.getloadavg()[0]
    config = ControlPlaneConfig(
        report_interval_s=0.25,
        reconcile_interval_s=0.2,
        p99_window_s=2.0,
        min_samples=5,
        burn_windows=((3.0, 1.0, 2.0),),
        decision_log_dir=str(folder / "logs"),
    )
    runs = []
    with token_ray():
        agentic_ray.init(config=config, wait_s=60)
        order = [(False, True) if i % 2 == 0 else (True, False) for i in range(args.rounds)]
        for loop_on in (x for pair in order for x in pair):
            runs.append(one_run(agentic_ray, folder, loop_on, arrivals, args))
            r = runs[-1]
            print(
                f"loop {r['loop']}: critical attainment {100 * r['critical_attainment']:.2f} % "
                f"({r['critical_missed']} missed), alert at {r['alert_s']}, recovery {r['recovery_after_alert']}, "
                f"sequence {r['sequence']}",
                flush=True,
            )
            time.sleep(5.0)  # the drift windows forget the run
        agentic_ray.shutdown()
    report = {
        "benchmark": "closed_loop",
        "settings": vars(args),
        "arrivals": len(arrivals),
        "host": {"cpus": os.cpu_count(), "load_1m": [load0, os.getloadavg()[0]]},
        "runs": runs,
        "summary": summary(runs),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report) + "\n")
    plot(report, out.with_suffix(".png"))
    print(markdown(report))
    return 0


def _f(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per loop setting: mean critical attainment over the runs, its 95 % t-interval half-width (None with
    one run) and the runs' recovery figures."""
    out: dict[str, Any] = {}
    for name in ("off", "on"):
        mine = [r for r in runs if r["loop"] == name]
        vals = [r["critical_attainment"] for r in mine]
        half = None
        if len(vals) > 1:
            t95 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78}.get(len(vals), 2.26)
            half = t95 * statistics.stdev(vals) / math.sqrt(len(vals))
        out[name] = {"runs": len(vals), "critical_attainment_mean": statistics.fmean(vals) if vals else None,
                     "ci95_half_width": half,
                     "first_99_after_alert_s": [r["recovery_after_alert"]["first_s"] for r in mine],
                     "stays_99_after_alert_s": [r["recovery_after_alert"]["stays_s"] for r in mine]}  # fmt: skip
    return out


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    runs = report["runs"]
    on = runs[-1]
    lines = [
        "# Closed loop: a replica slows down 5x, critical SLO attainment with the loop off and on",
        "",
        " ".join(
            [
                f"3 replicas x {s['slots']} slot(s) ({s['service_ms']:g} ms calls);",
                f"{report['arrivals']} seeded Poisson arrivals ({s['rate']:g} rps,",
                "critical/standard/sheddable 30/40/30 %, critical budget 80 ms)",
                f"over {s['duration']:g} s, the same in every run;",
                f"{s['rounds']} (off, on) round(s), order alternating;",
                "router: "
                + (
                    "blind (learns no service times: `--blind-router`)"
                    if s.get("blind_router")
                    else "agentic, default options"
                )
                + ";",
                f"at {s['slow_at']:g} s one replica's service time x{s['factor']:g} (test hook).",
                "Actions: avoid_replica + tighten_admission (factor 0.5) on a burn-rate alert of critical on the",
                "deployment; loop off = the same policy with `dry_run: true`.",
                "Drift windows: burn rate over 3 s and 1 s (threshold 2), p99 over 2 s.",
                f"Host: {report['host']['cpus']} CPUs, load {report['host']['load_1m'][0]:.1f} ->",
                f"{report['host']['load_1m'][1]:.1f}.",
            ]
        ),
        "",
        "| loop | runs | critical attainment (mean, 95 % CI) |",
        "|---|---:|---:|",
    ]
    for name, row in report["summary"].items():
        half = row["ci95_half_width"]
        ci = "" if half is None else f" +- {100 * half:.2f}"
        mean = row["critical_attainment_mean"]
        lines.append(f"| {name} | {row['runs']} | {_f(None if mean is None else 100 * mean, '.2f')} %{ci} |")
    lines += [
        "",
        "| run | loop | critical attainment | missed | alert at s | >= 99 % again after s (first / for good) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(runs):
        rec = r["recovery_after_alert"]
        lines.append(
            f"| {i + 1} | {r['loop']} | {100 * r['critical_attainment']:.2f} % | {r['critical_missed']} | "
            f"{_f(r['alert_s'])} | {_f(rec['first_s'])} / {_f(rec['stays_s'])} |"
        )
    lines += [
        "",
        "Critical attainment per second of arrival (%):",
        "",
        "| s | " + " | ".join(str(i) for i in range(len(on["critical_attainment_per_s"]))) + " |",
        "|---|" + "---:|" * len(on["critical_attainment_per_s"]),
    ]
    for i, r in enumerate(runs):
        cells = [_f(None if v is None else 100 * v, ".0f") for v in r["critical_attainment_per_s"]]
        lines.append(f"| {i + 1} {r['loop']} | " + " | ".join(cells) + " |")
    lines += ["", "Action log (seconds from the start of the run):", ""]
    for i, r in enumerate(runs):
        lines.append(
            f"- run {i + 1}, loop {r['loop']}: "
            + "; ".join(
                f"{e['t']:.1f} {e['event']} {e['rule']}{' (dry run)' if e['dry_run'] else ''}"
                for e in r["log"]
                if e["event"] in ("alert", "action", "clear", "revert", "skip")
            )
            or "none"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (the bench extra): no plot")
        return
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for r in report["runs"]:
        style = "-" if r["loop"] == "on" else "--"
        ys = [None if v is None else 100 * v for v in r["critical_attainment_per_s"]]
        ax.plot(range(len(ys)), ys, style, marker="o", markersize=3, label=f"loop {r['loop']}")
        if r["alert_s"] is not None:
            ax.axvline(r["alert_s"], linestyle=style, color="grey", linewidth=0.8)
    ax.axvline(report["settings"]["slow_at"], color="red", linewidth=0.8, label="replica x5")
    ax.axhline(99, color="green", linewidth=0.6, label="99 %")
    ax.set_xlabel("second of arrival")
    ax.set_ylabel("critical in budget (%)")
    ax.set_ylim(0, 102)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
