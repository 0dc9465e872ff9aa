"""``agentic-ray sim SCENARIO.yaml --router NAME[,NAME...] [--seed N] [--json OUT]``, and
``agentic-ray sim SCENARIO.yaml --replay TRACE.csv --policy NEW.yaml [--router ...]`` (what-if replay of
recorded arrivals under the scenario's policy and NEW, per class side by side: ``sim.replay``).

Runs the scenario with each router on the same seeded workload, prints one table row per router and
class (requests, completed, shed, failed, p50/p99/p99.9 ms, SLO attainment), goodput, router decision
time (wall clock, measured with ``time.perf_counter_ns``) and the simulator's own speed, and writes
the JSON report to ``OUT`` when asked (``-`` for stdout). A renamed router (``oracle``, now
``central_edf``) still runs under its old name, with a note on stderr. Invalid scenario: every problem printed as
``FILE:LINE: field.path: reason``, exit 2. Unknown router: the registered ones are listed, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["format_table", "register"]


def register(subparsers: Any) -> None:
    """Add ``sim`` to the ``agentic-ray`` parser."""
    p = subparsers.add_parser("sim", help="simulate a scenario with one or more routers")
    p.add_argument("scenario", metavar="SCENARIO.yaml")
    p.add_argument(
        "--router",
        "-r",
        default=None,
        metavar="NAME[,NAME...]",
        help="registered router name(s), comma separated (e.g. agentic,pow2,clairvoyant)",
    )
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument(
        "--replay",
        metavar="TRACE.csv",
        default=None,
        help="replay recorded arrivals (agentic-ray trace export) instead of the scenario's workload",
    )
    p.add_argument("--policy", metavar="NEW.yaml", default=None,
                   help="with --replay: the policy to compare with the scenario's, side by side")  # fmt: skip
    p.add_argument("--json", dest="json_out", metavar="OUT", default=None, help="write the JSON report here")
    p.set_defaults(func=_run)


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def format_table(report: dict[str, Any]) -> str:
    """The human table of a ``simulate`` report."""
    head = (
        f"{'router':<14} {'class':<12} {'requests':>8} {'done':>8} {'shed':>7} {'failed':>6} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'SLO %':>8}"
    )
    lines = [f"scenario {report['scenario']}  seed {report['seed']}", head, "-" * len(head)]
    for router, res in report["results"].items():
        rows = [*res["classes"].items(), ("(all)", res["overall"])]
        for cls, c in rows:
            slo = None if c["slo_attainment"] is None else 100.0 * c["slo_attainment"]
            lines.append(
                f"{router:<14} {cls:<12} {c['requests']:>8} {c['completed']:>8} {c['shed']:>7} {c['failed']:>6} "
                f"{_fmt(c['p50_ms'], '8.2f')} {_fmt(c['p99_ms'], '8.2f')} {_fmt(c['p999_ms'], '9.2f')} "
                f"{_fmt(slo, '8.3f')}"
            )
        extra = f"  goodput {res['goodput_rps']:.1f} rps, decision p50/p99 "
        extra += f"{_fmt(res['decision_us_p50'], '.2f')}/{_fmt(res['decision_us_p99'], '.2f')} us, "
        extra += f"placement violations {res['violations']}"
        if "sim_requests_per_s" in res:
            extra += f", simulated {res['sim_requests_per_s']:.0f} requests/s of wall time"
        if "sim_requests_per_cpu_s" in res:
            extra += f" ({res['sim_requests_per_cpu_s']:.0f} per CPU second)"
        lines.append(extra)
        lines.extend(_stream_lines(rows))
    return "\n".join(lines)


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100.0 * fraction:.1f} %"


def _stream_lines(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Per class with LLM streams: TTFT and TPOT p50/p99 and their attainment (empty without streams)."""
    out = []
    for cls, c in rows:
        if "ttft_p50_ms" not in c:
            continue
        out.append(
            f"  streams {cls:<12} TTFT p50/p99 {_fmt(c['ttft_p50_ms'], '.1f')}/{_fmt(c['ttft_p99_ms'], '.1f')} ms "
            f"(within ttft_ms {_pct(c['ttft_attainment'])}), TPOT p50/p99 {_fmt(c['tpot_p50_ms'], '.1f')}/"
            f"{_fmt(c['tpot_p99_ms'], '.1f')} ms (within tpot_ms {_pct(c['tpot_attainment'])})"
        )
    return out


def _run(args: argparse.Namespace) -> int:
    from agentic_ray.cli import UsageError
    from agentic_ray.sim import load_scenario, simulate
    from agentic_ray.sim.simulate import check_router_names

    if (args.replay is None) != (args.policy is None):
        raise UsageError("--replay and --policy go together: recorded arrivals under the scenario's policy and NEW")
    if args.router is None and args.replay is None:
        raise UsageError("--router: give at least one router name")
    routers = [n.strip() for n in (args.router or "agentic").split(",") if n.strip()]
    if not routers:
        raise UsageError("--router: give at least one router name")
    try:
        check_router_names(routers)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from agentic_ray.scheduling.registry import ALIASES

    for name in routers:
        if name in ALIASES:
            print(f"note: {ALIASES[name][1]}; running it as {ALIASES[name][0]!r}", file=sys.stderr)
    scenario = load_scenario(args.scenario)
    if args.replay is not None:
        return _replay(args, scenario, routers)
    report = simulate(scenario, routers, seed=args.seed, timer=time.perf_counter_ns, cpu_timer=time.process_time_ns)
    return _emit(args.json_out, report, format_table(report))


def _emit(json_out: str | None, report: dict[str, Any], table: str) -> int:
    """Print the table (to stderr when the JSON goes to stdout, ``-``) and write the JSON report."""
    text = json.dumps(report, indent=2, allow_nan=False)
    if json_out == "-":
        print(text)
        print(table, file=sys.stderr)
        return 0
    print(table)
    if json_out:
        with open(json_out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


def _replay(args: argparse.Namespace, scenario: Any, routers: list[str]) -> int:
    from agentic_ray.policies import load_policy
    from agentic_ray.sim.replay import format_replay, replay

    load_policy(args.policy)  # every problem of the new policy, exit 2, before any run
    report = replay(scenario, args.replay, args.policy, routers, seed=args.seed)
    return _emit(args.json_out, report, format_replay(report))
