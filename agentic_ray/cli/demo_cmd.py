"""``agentic-ray demo``: the agentic router and gate against Ray Serve, default and tuned, live.

Starts a private local Ray and Serve (nothing else is touched), deploys the demo service (one fast
"gpu"-labelled replica and two slow "cpu"-labelled ones; replicas *sleep* for each request's sampled
service time, no real model work), replays the same seeded, open-loop, mixed-class arrival schedule with
a burst above capacity once per path: ``agentic`` (agentic router + admission gate), ``tuned`` (a plain
deployment tuned as a competent user would: ``max_ongoing_requests`` = slots, a bounded
``max_queued_requests``) and ``default`` (a plain deployment with Serve's defaults), prints progress and
a per-class table for each, and shuts down what it started. ``--json`` keys them ``agentic``, ``tuned``
and ``default``; claims are made against ``tuned``. ``--rounds N`` replays each path N times, the order
rotating between rounds.

    agentic-ray demo [--workload default|llm] [--quick] [--duration S] [--rate RPS] [--seed N] [--rounds N]
                     [--json OUT] [--plot OUT.png]

``--duration`` sets the run length, ``--rate`` the base arrival rate (the burst keeps its ratio to it:
6x), ``--seed`` the workload seed. ``--json OUT`` writes the report in the shape of
``agentic-ray sim --json`` (``-``: stdout); ``--plot`` draws latency CDFs (needs matplotlib, the
``bench`` extra). ``--scenario`` runs another simulator scenario live instead of the built-in one.
``--quick`` runs 6 s of arrivals (9 s with ``--workload llm``, to take in its first burst) unless
``--duration`` says otherwise.

``--workload llm`` runs the LLM streams demo instead (``demo._llm``): a *synthetic token streamer* (its
replicas sleep per prompt token and per output token; no model runs) replayed agentic against plain
Serve, with a table of TTFT / TPOT attainment per class against the policy's ``ttft_ms`` / ``tpot_ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

__all__ = ["register"]

_QUICK_S = 6.0
_QUICK_LLM_S = 9.0  # the LLM scenario's first burst runs from 5 to 8 s


def register(subparsers: Any) -> None:
    """Add ``demo`` to the ``agentic-ray`` parser."""
    p = subparsers.add_parser("demo", help="live demo: agentic router vs Serve's default router on a local Ray")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="seconds of arrivals (default 20)")
    p.add_argument("--rate", type=float, default=None, metavar="RPS", help="base arrival rate (default 30)")
    p.add_argument("--seed", type=int, default=None, help="workload seed (default: the scenario's, 7)")
    p.add_argument("--json", dest="json_out", metavar="OUT", default=None, help="write the JSON report here")
    p.add_argument("--plot", metavar="OUT.png", default=None, help="draw latency CDFs (needs matplotlib)")
    p.add_argument("--scenario", metavar="SCENARIO.yaml", default=None, help="a simulator scenario to run live")
    p.add_argument(
        "--paths",
        default="agentic,tuned,default",
        metavar="P[,P]",
        help="which runs: agentic, tuned, default (default all three)",
    )
    p.add_argument(
        "--workload", choices=("default", "llm"), default="default",
        help="default: the mixed-class service; llm: LLM streams from a synthetic token streamer (TTFT/TPOT)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a short run: 6 s of arrivals, 9 s for llm (unless --duration)")
    p.add_argument("--rounds", type=int, default=1, help="replays per path, order rotating (default 1)")
    p.set_defaults(func=_run_keeping_env)


def _scenario(args: argparse.Namespace) -> Any:
    from agentic_ray.cli import UsageError
    from agentic_ray.demo import demo_scenario_path, llm_scenario_path
    from agentic_ray.sim.scenario import MmppSpec, PoissonSpec, load_scenario

    builtin = llm_scenario_path() if getattr(args, "workload", "default") == "llm" else demo_scenario_path()
    scenario = load_scenario(args.scenario or builtin)
    if getattr(args, "quick", False) and args.duration is None:
        args.duration = _QUICK_LLM_S if getattr(args, "workload", "default") == "llm" else _QUICK_S
    update: dict[str, Any] = {}
    if args.duration is not None:
        if not args.duration > 0 or args.duration > 3600:
            raise UsageError(f"--duration: must be in (0, 3600] seconds, got {args.duration}")
        update["duration_s"] = float(args.duration)
        update["warmup_s"] = min(scenario.warmup_s, float(args.duration) / 4)
    if args.rate is not None:
        if not args.rate > 0 or args.rate > 5000:
            raise UsageError(f"--rate: must be in (0, 5000] requests/s, got {args.rate}")
        arrivals = scenario.workload.arrivals
        if isinstance(arrivals, MmppSpec):
            ratio = arrivals.burst_rps / arrivals.base_rps
            arrivals = arrivals.model_copy(update={"base_rps": args.rate, "burst_rps": args.rate * ratio})
        elif isinstance(arrivals, PoissonSpec):
            arrivals = arrivals.model_copy(update={"rate_rps": args.rate})
        else:
            raise UsageError("--rate: the scenario's arrivals are not poisson or mmpp")
        update["workload"] = scenario.workload.model_copy(update={"arrivals": arrivals})
    return scenario.model_copy(update=update) if update else scenario


def _run_keeping_env(args: argparse.Namespace) -> int:
    """``_run``, then this process's ``RAY_AUTH_MODE`` as it was (the demo sets it for its private Ray;
    a caller running the CLI in-process, a test for one, must not inherit that)."""
    previous = os.environ.get("RAY_AUTH_MODE")
    try:
        return _run(args)
    finally:
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous


def _run(args: argparse.Namespace) -> int:
    from agentic_ray.cli import UsageError

    # The demo's Ray is private to this process and its children: one auth mode for all of them, set
    # before Ray's core library first reads it (it aborts the process when token mode has no token).
    previous_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"

    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    for p in paths:
        if p not in ("agentic", "tuned", "default"):
            raise UsageError(f"--paths: unknown path {p!r}; expected agentic, tuned and/or default")
    if args.rounds < 1:
        raise UsageError(f"--rounds: must be >= 1, got {args.rounds}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot: matplotlib is not installed (pip install 'agentic-ray[bench]')") from None
    scenario = _scenario(args)
    if args.workload == "llm":
        return _run_llm(args, scenario, paths, previous_auth)

    from agentic_ray.cli.sim_cmd import format_table
    from agentic_ray.demo import LiveOptions, local_ray, print_progress, run_live

    arrivals = scenario.workload.arrivals
    say = print_progress
    say(f"agentic-ray demo: scenario {scenario.name!r}, {scenario.duration_s:.0f} s of open-loop arrivals "
        f"({arrivals.model_dump()}), classes {dict(scenario.workload.mix)}")  # fmt: skip
    say(
        "  replicas: "
        + ", ".join(f"{g.count} x {g.name} ({g.accelerator}, {g.slots} slot(s))" for g in scenario.replicas)
    )
    say("  service times are simulated: each replica sleeps for the request's sampled service time")
    if previous_auth not in (None, "disabled"):
        say(f"  note: RAY_AUTH_MODE={previous_auth!r} ignored; the demo's private local Ray runs with it disabled")
    started = time.time()
    say("  starting a private local Ray and Serve ...")
    with local_ray() as address:
        say(f"  Ray up at {address} ({time.time() - started:.1f} s)")
        latencies: dict[str, dict[str, list[float]]] = {}
        report = run_live(
            scenario, args.seed, paths, options=LiveOptions(progress=say), latencies_out=latencies, rounds=args.rounds
        )
    say(f"  done in {time.time() - started:.1f} s; Ray and Serve shut down")
    report.setdefault("results", {})
    for res in report["results"].values():
        res.setdefault("violations", 0)
    table_out = sys.stderr if args.json_out == "-" else sys.stdout  # keep stdout pure JSON for "--json -"
    print(format_table(report), file=table_out)
    _print_floors(report, table_out)
    _write_json(report, args.json_out)
    if args.plot:
        from agentic_ray.demo import plot_cdfs

        plot_cdfs(latencies, args.plot, title=f"agentic-ray demo: {scenario.name}, seed {report['seed']}")
        say(f"  latency CDF written to {args.plot}")
    return 0


def _print_floors(report: dict[str, Any], out: Any) -> None:
    res = report["results"]
    a = res.get("agentic", {}).get("classes", {}).get("critical")
    if not a:
        return
    parts = [f"agentic {100 * (a['slo_attainment'] or 0):.1f} %"]
    for name in ("tuned", "default"):
        b = res.get(name, {}).get("classes", {}).get("critical")
        if b:
            parts.append(f"{name} Serve {100 * (b['slo_attainment'] or 0):.1f} %")
    line = "critical SLO attainment: " + ", ".join(parts)
    for name in ("tuned", "default"):
        b = res.get(name, {}).get("classes", {}).get("critical")
        if b and a["p99_ms"] and b["p99_ms"]:
            line += f"; critical p99 agentic/{name} = {a['p99_ms'] / b['p99_ms']:.2f}"
    costs = [f"{n} {r['cost_per_1k_good']:.2f}" for n, r in res.items() if r.get("cost_per_1k_good") is not None]
    if costs:
        line += "; cost per 1k in budget: " + ", ".join(costs)
    print(line, file=out, flush=True)


def _run_llm(args: argparse.Namespace, scenario: Any, paths: list[str], previous_auth: str | None) -> int:
    """``--workload llm``: the synthetic token streamer, agentic against plain Serve (``demo._llm``)."""
    from agentic_ray.cli import UsageError
    from agentic_ray.cli.sim_cmd import format_table
    from agentic_ray.demo import local_ray, print_progress, run_llm_live
    from agentic_ray.demo._live import LiveOptions
    from agentic_ray.demo._llm import SERVICE_NOTE

    if args.plot:
        raise UsageError("--plot: not available with --workload llm")
    if args.paths == "agentic,tuned,default":  # the default: the LLM demo has no tuned path
        paths = ["agentic", "default"]
    elif "tuned" in paths:
        raise UsageError("--paths: the llm workload compares agentic with plain Serve (agentic, default)")
    if scenario.workload.tokens is None or any(g.stream is None for g in scenario.replicas):
        raise UsageError("--workload llm: the scenario needs workload.tokens and a stream model per replica group")
    say = print_progress
    tokens = scenario.workload.tokens
    arrivals = scenario.workload.arrivals.model_dump()
    say(f"agentic-ray demo --workload llm: scenario {scenario.name!r}, {scenario.duration_s:.0f} s of open-loop "
        f"stream arrivals ({arrivals}), classes {dict(scenario.workload.mix)}")  # fmt: skip
    say("  replicas: " + ", ".join(
        f"{g.count} x {g.name} ({g.slots} streams at once; prefill {g.stream.prefill_ms_per_token:g} ms per prompt "
        f"token, decode {g.stream.decode_ms_per_token:g} ms per output token)" for g in scenario.replicas))  # fmt: skip
    say(f"  streams: ~{tokens.prompt.mean:g} prompt tokens, ~{tokens.output.mean:g} output tokens")
    say(f"  SYNTHETIC: {SERVICE_NOTE}")
    if previous_auth not in (None, "disabled"):
        say(f"  note: RAY_AUTH_MODE={previous_auth!r} ignored; the demo's private local Ray runs with it disabled")
    started = time.time()
    say("  starting a private local Ray and Serve ...")
    with local_ray() as address:
        say(f"  Ray up at {address} ({time.time() - started:.1f} s)")
        report = run_llm_live(scenario, args.seed, paths, options=LiveOptions(progress=say))
    say(f"  done in {time.time() - started:.1f} s; Ray and Serve shut down")
    for res in report["results"].values():
        res.setdefault("violations", 0)
    table_out = sys.stderr if args.json_out == "-" else sys.stdout
    print(f"LLM streams from a {SERVICE_NOTE}", file=table_out)
    print(format_table(report), file=table_out)
    _print_token_attainment(report, table_out)
    _write_json(report, args.json_out)
    return 0


def _write_json(report: dict[str, Any], json_out: str | None) -> None:
    """``--json OUT``: the report to ``OUT`` (``-``: standard output)."""
    if not json_out:
        return
    text = json.dumps(report, indent=2, sort_keys=False)
    if json_out == "-":
        print(text)
    else:
        with open(json_out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


def _print_token_attainment(report: dict[str, Any], out: Any) -> None:
    """One line per class: TTFT and TPOT attainment of each path side by side."""
    res = report["results"]
    classes = sorted({c for r in res.values() for c in r["classes"]})
    for cls in classes:
        parts = []
        for path, r in res.items():
            c = r["classes"].get(cls) or {}
            ttft, tpot = c.get("ttft_attainment"), c.get("tpot_attainment")
            parts.append(f"{path} TTFT {_pct(ttft)} TPOT {_pct(tpot)}")
        print(f"{cls} within token budgets: " + "; ".join(parts), file=out, flush=True)


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100.0 * fraction:.1f} %"
