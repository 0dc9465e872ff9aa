"""SLO matrix: every benchmark scenario with every registered router, on the same seeded workload.

For each scenario in ``benchmarks/scenarios/`` (steady, surge, straggler, failure, heterogeneous, hol,
bimodal, tenant_skew, residency, inversion, large64) the simulator builds one seeded workload (arrivals,
classes, models, tenants and per-replica-group service demands) and runs each router on it; figures per class:
SLO attainment (completed within budget / all requests; shed and failed are misses; no grace), p50/p99/
p99.9 latency (nearest rank, completed requests), goodput (completed within budget per measured second),
shed and failed counts (shed by reason and class), placement violations, the cost of the replica time used
per 1,000 requests completed in budget (busy replica-seconds x the replica's cost per second: the
scenario's ``costs`` by accelerator kind or the group's ``cost``), router decision time
(``time.perf_counter_ns`` around each ``choose``; includes the timer's own overhead) and the simulator's
speed (requests simulated per second of wall time, timer overhead included).

Routers, named for what they are: ``clairvoyant`` is the bound (true service times, a central queue by
priority then deadline, earliest finish, late work dropped at dispatch; a strong heuristic, not a proven
optimum), printed beside the capacity bound ``goodput <= min(offered, capacity)`` that no router passes;
``central_edf`` is a class-blind central EDF queue with true service times (a reference, not a bound);
the baselines are the routers a deployment can run without knowing service times in advance:
``pow2`` (Ray Serve's default), ``round_robin``, ``random``, ``least_loaded``, ``peak_ewma_p2c``.

Shedding variants: the agentic router also runs every scenario with its classes' shedding modes reset to
the default (``when_overloaded`` for all) and set explicitly (the most urgent class ``never``, the least
urgent ``first``), the rest of the scenario unchanged.

Floors (reported, not asserted; ``floors``), on every scenario:

- agentic critical SLO attainment >= ``clairvoyant``'s - 0.5 pp, and >= every baseline's;
- agentic goodput >= 95 % of ``clairvoyant``'s;
- priority orders who is shed: the agentic router's per-class rate of requests shed by a decision
  (refused by the router or a gate, or displaced; not those whose deadline passed while they waited, nor
  those refused over their tenant's share, which is fairness between tenants, not priority) is
  non-increasing from the least to the most urgent class;
- critical attainment with default shedding >= the explicit run's - 0.1 pp;
- cost: agentic's cost per 1,000 in-budget requests <= that of the baseline with the best critical
  attainment (+ 0.5 %), at equal or better critical attainment;

and router decision p99 <= 50 us with 64 replicas (``large64``); the simulator runs >= 20,000 requests
per CPU second with ``agentic``.

A load sweep runs ``steady`` at 0.5x to 1.5x of its nominal capacity (sum over replicas of
slots / mean service time) and records SLO attainment against offered load.

Writes ``benchmarks/results/slo_matrix.json``, ``slo_matrix.md`` and, when matplotlib is importable,
``slo_matrix_cdf_<scenario>.png`` (latency CDF per class) and ``slo_matrix_load_sweep.png``.

Usage: ``python benchmarks/slo_matrix.py [--quick] [--scenarios a,b] [--routers a,b] [--out DIR]
[--no-plots]``. ``--quick`` compresses every scenario's time axis 6x (durations, warm-up, faults and
burst periods) and sweeps three load levels; the smoke test uses it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform as host_platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentic_ray.policies.types import Shedding
from agentic_ray.scheduling.registry import router_names
from agentic_ray.sim import Scenario, load_scenario, scale_load, simulate_runs
from agentic_ray.sim.scenario import MmppSpec, PoissonSpec, RampSpec

HERE = Path(__file__).resolve().parent
SCENARIO_DIR = HERE / "scenarios"
RESULTS_DIR = HERE / "results"
SCENARIOS = (
    "steady",
    "surge",
    "straggler",
    "failure",
    "heterogeneous",
    "hol",
    "bimodal",
    "tenant_skew",
    "residency",
    "inversion",
    "large64",
)
AGENTIC = "agentic"
BOUND = "clairvoyant"
BASELINES = ("pow2", "round_robin", "random", "least_loaded", "peak_ewma_p2c")
CRITICAL_VS_BOUND_PP = 0.5  # agentic critical attainment >= bound's - this (percentage points)
GOODPUT_VS_BOUND = 0.95  # agentic goodput >= this x bound's
DEFAULT_SHEDDING_PP = 0.1  # critical attainment with default shedding >= explicit run's - this
DECIDED_SHED_EXCLUDES = frozenset({"deadline_passed", "deadline_passed_in_queue", "tenant_share"})
VARIANTS = ("default", "explicit")
# Cost floor slack: on equal-cost replicas the busy time per good request differs only by work a crash or
# a cancelled copy wasted, a few hundredths of a percent.
COST_TOLERANCE = 0.005
SWEEP_SCENARIO = "steady"
SWEEP_LEVELS = (0.5, 0.75, 1.0, 1.25, 1.5)
QUICK_SWEEP_LEVELS = (0.5, 1.0, 1.5)
QUICK_TIME_FACTOR = 1 / 6
CDF_POINTS = 400


def capacity_rps(sc: Scenario) -> float:
    """Nominal capacity: sum over replicas of slots / mean service time (model mix weighted)."""
    models = sc.workload.models
    total_w = sum(models.values())
    cap = 0.0
    for g in sc.replicas:
        dists = {m: spec.build() for m, spec in g.service.items()}
        mean_ms = sum(w * (dists.get(m) or dists["default"]).mean for m, w in models.items()) / total_w
        cap += g.count * g.slots * 1000.0 / mean_ms
    return cap


def offered_rps(sc: Scenario) -> float:
    """Long-run mean arrival rate of the scenario (traces: not computed, ``nan``)."""
    a = sc.workload.arrivals
    if isinstance(a, PoissonSpec):
        return a.rate_rps
    if isinstance(a, MmppSpec):
        return (a.base_rps * (a.burst_every_s - a.burst_for_s) + a.burst_rps * a.burst_for_s) / a.burst_every_s
    if isinstance(a, RampSpec):
        return (a.from_rps + a.to_rps) / 2
    return float("nan")


def compress_time(sc: Scenario, factor: float) -> Scenario:
    """``sc`` with its time axis scaled by ``factor``: duration, warm-up, faults and MMPP periods."""
    groups = []
    for g in sc.replicas:
        faults = [
            f.model_copy(update={"at_s": f.at_s * factor, "for_s": None if f.for_s is None else f.for_s * factor})
            for f in g.faults
        ]
        groups.append(g.model_copy(update={"faults": faults}))
    a = sc.workload.arrivals
    if isinstance(a, MmppSpec):
        a = a.model_copy(update={"burst_every_s": a.burst_every_s * factor, "burst_for_s": a.burst_for_s * factor})
    workload = sc.workload.model_copy(update={"arrivals": a})
    return sc.model_copy(
        update={
            "duration_s": sc.duration_s * factor,
            "warmup_s": sc.warmup_s * factor,
            "replicas": groups,
            "workload": workload,
        }
    )


def _cdf(latencies: list[float]) -> list[list[float]]:
    """Up to ``CDF_POINTS`` (latency_ms, fraction) points of the empirical CDF."""
    xs = sorted(latencies)
    n = len(xs)
    if n == 0:
        return []
    step = max(1, n // CDF_POINTS)
    pts = [[round(xs[i], 3), round((i + 1) / n, 5)] for i in range(0, n, step)]
    if pts[-1][1] != 1.0:
        pts.append([round(xs[-1], 3), 1.0])
    return pts


def _shed_from(res: dict[str, Any], cls: str) -> float | None:
    total = res["overall"]["shed"]
    return None if total == 0 else res["classes"].get(cls, {}).get("shed", 0) / total


def shedding_variant(sc: Scenario, mode: str) -> Scenario | None:
    """``sc`` with its inline classes' shedding reset: ``default`` (every class ``when_overloaded``) or
    ``explicit`` (the most urgent class ``never``, the least urgent ``first``, the rest
    ``when_overloaded``). None for a scenario whose classes come from a policy file."""
    if not sc.classes:
        return None
    prios = sorted({c.priority for c in sc.classes.values()})
    classes = {}
    for name, c in sc.classes.items():
        shedding = Shedding.WHEN_OVERLOADED
        if mode == "explicit" and c.priority == prios[0]:
            shedding = Shedding.NEVER
        elif mode == "explicit" and c.priority == prios[-1] and len(prios) > 1:
            shedding = Shedding.FIRST
        classes[name] = c.model_copy(update={"shedding": shedding})
    return sc.model_copy(update={"classes": classes})


def class_priorities(sc: Scenario) -> dict[str, int]:
    """Class name -> priority (inline classes, else the policy's)."""
    if sc.classes:
        return {n: c.priority for n, c in sc.classes.items()}
    from agentic_ray.sim.simulate import load_policy_for

    policy = load_policy_for(sc)
    return {} if policy is None else {n: c.priority for n, c in policy.classes.items()}


def run_scenario(sc: Scenario, routers: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``routers`` on ``sc`` (and the agentic router on its shedding variants); returns the JSON
    figures and the latency CDF points per router/class."""
    wall0 = time.perf_counter()
    runs = simulate_runs(sc, routers, timer=time.perf_counter_ns, cpu_timer=time.process_time_ns)
    results = {name: r.to_json() for name, r in runs.items()}
    cdfs = {name: {c: _cdf(s.latencies_ms) for c, s in r.classes.items()} for name, r in runs.items()}
    variants: dict[str, Any] = {}
    if AGENTIC in routers:
        for mode in VARIANTS:
            v = shedding_variant(sc, mode)
            if v is not None:
                variants[mode] = simulate_runs(v, [AGENTIC])[AGENTIC].to_json()
    cap, offered = capacity_rps(sc), offered_rps(sc)
    arrived = next(iter(results.values()))["overall"]["requests"] / sc.measured_s if results else offered
    doc = {
        "scenario": sc.name,
        "seed": sc.seed,
        "duration_s": sc.duration_s,
        "replicas": sc.replica_count,
        "capacity_rps": round(cap, 1),
        "offered_rps": round(offered, 1),
        "arrived_rps": round(arrived, 1),
        "capacity_bound_rps": round(min(arrived, cap), 1),
        "priorities": class_priorities(sc),
        "wall_s": round(time.perf_counter() - wall0, 2),
        "results": results,
        "shedding_variants": variants,
    }
    return doc, cdfs


def sweep(sc: Scenario, routers: Sequence[str], levels: Sequence[float]) -> list[dict[str, Any]]:
    """SLO attainment of each router with ``sc``'s load scaled to ``level`` x capacity."""
    cap, offered = capacity_rps(sc), offered_rps(sc)
    out = []
    for level in levels:
        scaled = scale_load(sc, level * cap / offered)
        runs = simulate_runs(scaled, routers)
        row: dict[str, Any] = {"load": level, "offered_rps": round(level * cap, 1), "routers": {}}
        for name, r in runs.items():
            j = r.to_json()
            row["routers"][name] = {
                "slo_attainment": j["overall"]["slo_attainment"],
                "classes": {c: v["slo_attainment"] for c, v in j["classes"].items()},
                "goodput_rps": j["goodput_rps"],
            }
        out.append(row)
    return out


def _critical(res: dict[str, Any], critical: str) -> float | None:
    return res["classes"].get(critical, {}).get("slo_attainment")


def decided_shed_rates(res: dict[str, Any]) -> dict[str, float]:
    """Per class: requests shed by a decision (refused or displaced; not expired while waiting) / requests."""
    out = {}
    for cls, c in res["classes"].items():
        reasons = res.get("shed_reasons_by_class", {}).get(cls, {})
        decided = sum(n for r, n in reasons.items() if r not in DECIDED_SHED_EXCLUDES)
        out[cls] = decided / c["requests"] if c["requests"] else 0.0
    return out


def shed_monotone(rates: dict[str, float], priorities: dict[str, int]) -> bool:
    """True when the shed rate never rises from a less urgent class to a more urgent one (per priority
    level: the rate of all its classes together is compared by mean over classes)."""
    by_level: dict[int, list[float]] = {}
    for cls, rate in rates.items():
        if cls in priorities:
            by_level.setdefault(priorities[cls], []).append(rate)
    levels = [sum(v) / len(v) for _, v in sorted(by_level.items())]  # most urgent first
    return all(a <= b + 1e-12 for a, b in itertools.pairwise(levels))


def scenario_floors(doc: dict[str, Any], critical: str = "critical") -> dict[str, Any] | None:
    """The floors of one scenario for the agentic router (see the module docstring); None without it."""
    res = doc["results"]
    a = res.get(AGENTIC)
    if a is None:
        return None
    crit = _critical(a, critical)
    out: dict[str, Any] = {"critical_slo_attainment": crit, "goodput_rps": a["goodput_rps"]}
    bound = res.get(BOUND)
    if bound is not None:
        b_crit = _critical(bound, critical)
        out["bound_critical"] = b_crit
        out["critical_vs_bound_ok"] = (
            None if crit is None or b_crit is None else crit >= b_crit - CRITICAL_VS_BOUND_PP / 100 - 1e-12
        )
        ratio = None if not bound["goodput_rps"] else a["goodput_rps"] / bound["goodput_rps"]
        out["goodput_vs_bound"] = None if ratio is None else round(ratio, 4)
        out["goodput_ok"] = ratio is None or ratio >= GOODPUT_VS_BOUND
    base = {n: res[n] for n in BASELINES if n in res}
    if base and crit is not None:
        best_name = max(base, key=lambda n: (_critical(base[n], critical) or 0.0, -(base[n]["cost_per_1k_good"] or 0)))
        best = base[best_name]
        best_crit = _critical(best, critical) or 0.0
        out["best_baseline"] = best_name
        out["best_baseline_critical"] = best_crit
        out["critical_vs_baselines_ok"] = crit >= best_crit - 1e-12
        a_cost, b_cost = a.get("cost_per_1k_good"), best.get("cost_per_1k_good")
        out["cost_per_1k_good"] = a_cost
        out["best_baseline_cost_per_1k_good"] = b_cost
        out["cost_ok"] = (
            a_cost is None or b_cost is None or (crit >= best_crit - 1e-12 and a_cost <= b_cost * (1 + COST_TOLERANCE))
        )
    rates = decided_shed_rates(a)
    out["decided_shed_rate"] = {c: round(r, 6) for c, r in rates.items()}
    out["shed_order_ok"] = shed_monotone(rates, doc.get("priorities", {}))
    variants = doc.get("shedding_variants", {})
    if "default" in variants and "explicit" in variants:
        d, e = _critical(variants["default"], critical), _critical(variants["explicit"], critical)
        out["critical_default_shedding"] = d
        out["critical_explicit_shedding"] = e
        out["default_shedding_ok"] = d is None or e is None or d >= e - DEFAULT_SHEDDING_PP / 100 - 1e-12
    checks = [v for k, v in out.items() if k.endswith("_ok") and v is not None]
    out["ok"] = all(checks)
    return out


def floors(docs: dict[str, Any]) -> dict[str, Any]:
    """The reported floors (see the module docstring): per scenario for ``agentic``, then the decision
    time with 64 replicas and the simulator's speed."""
    out: dict[str, Any] = {"scenarios": {}}
    for name, doc in docs.items():
        entry = scenario_floors(doc)
        if entry is not None:
            out["scenarios"][name] = entry
    big = docs.get("large64")
    if big is not None:
        out["decision_us_p99_64_replicas"] = {
            r: {"p99_us": big["results"][r]["decision_us_p99"], "ok": big["results"][r]["decision_us_p99"] <= 50}
            for r in ("agentic", "pow2")
            if r in big["results"]
        }
    speed = {}
    for router in ("agentic", "pow2"):
        cpu = [d["results"][router]["sim_requests_per_cpu_s"] for d in docs.values() if router in d["results"]]
        wall = [d["results"][router]["sim_requests_per_s"] for d in docs.values() if router in d["results"]]
        if cpu:
            speed[router] = {
                "min_requests_per_cpu_s": min(cpu),
                "min_requests_per_wall_s": min(wall),
                "ok": min(cpu) >= 20_000,
            }
    out["sim_speed"] = speed
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _num(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(report: dict[str, Any]) -> str:
    """The Markdown tables of ``report``."""
    lines = [
        "# SLO matrix",
        "",
        f"Generated by `benchmarks/slo_matrix.py{' --quick' if report['quick'] else ''}`"
        f" on {report['host']}, load average {report['loadavg_at_start']} at start (wall-clock figures, such as"
        " decision times, are inflated while other processes use the CPUs). Same seeded workload for every"
        " router of a scenario. SLO columns:",
        "completed within budget / all requests (%). Shed: total, and the share from `sheddable`. Cost: replica",
        "time used (busy replica-seconds x cost per second) per 1,000 requests completed in budget.",
        f"`{BOUND}` is the bound (true service times; a strong heuristic, not a proven optimum), `central_edf` a",
        "class-blind central EDF queue with true service times; the capacity bound is min(arrived, capacity).",
        "",
    ]
    for name, doc in report["scenarios"].items():
        lines += [
            f"## {name}",
            "",
            f"{doc['replicas']} replicas, capacity {doc['capacity_rps']} rps, offered {doc['offered_rps']} rps"
            f" ({doc.get('arrived_rps', '-')} arrived), {doc['duration_s']} s, seed {doc['seed']}."
            f" Capacity bound on goodput: {doc.get('capacity_bound_rps', '-')} rps.",
            "",
            "| router | critical SLO | standard SLO | sheddable SLO | all SLO | goodput rps | critical p99 ms |"
            " all p99 ms | shed (sheddable %) | failed | violations | cost / 1k good | decision p99 us | sim req/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        rows = list(doc["results"].items())
        rows += [(f"agentic ({mode} shedding)", r) for mode, r in doc.get("shedding_variants", {}).items()]
        for router, r in rows:
            cls = r["classes"]
            shed_frac = _shed_from(r, "sheddable")
            lines.append(
                f"| {router} | {_pct(cls.get('critical', {}).get('slo_attainment'))} "
                f"| {_pct(cls.get('standard', {}).get('slo_attainment'))} "
                f"| {_pct(cls.get('sheddable', {}).get('slo_attainment'))} "
                f"| {_pct(r['overall']['slo_attainment'])} | {_num(r['goodput_rps'])} "
                f"| {_num(cls.get('critical', {}).get('p99_ms'))} | {_num(r['overall']['p99_ms'])} "
                f"| {r['overall']['shed']} ({_pct(shed_frac)}) | {r['overall']['failed']} | {r['violations']} "
                f"| {_num(r.get('cost_per_1k_good'), '.2f')} "
                f"| {_num(r.get('decision_us_p99'), '.2f')} | {_num(r.get('sim_requests_per_s'), '.0f')} |"
            )
        if any("tenants" in r for r in doc["results"].values()):
            lines += ["", "Per tenant SLO attainment (%):", ""]
            tenants = sorted(next(r["tenants"] for r in doc["results"].values() if "tenants" in r))
            lines += ["| router | " + " | ".join(tenants) + " |", "|---|" + "---|" * len(tenants)]
            for router, r in doc["results"].items():
                t = r.get("tenants", {})
                lines.append(
                    f"| {router} | " + " | ".join(_pct(t.get(x, {}).get("slo_attainment")) for x in tenants) + " |"
                )
        lines.append("")
    if report["sweep"]:
        routers = list(report["sweep"][0]["routers"])
        lines += [
            f"## Load sweep ({SWEEP_SCENARIO}): overall / critical SLO attainment (%)",
            "",
            "| load x capacity | offered rps | " + " | ".join(routers) + " |",
            "|---|---|" + "---|" * len(routers),
        ]
        for row in report["sweep"]:
            cells = [
                f"{_pct(row['routers'][r]['slo_attainment'])} / {_pct(row['routers'][r]['classes'].get('critical'))}"
                for r in routers
            ]
            lines.append(f"| {row['load']} | {row['offered_rps']} | " + " | ".join(cells) + " |")
        lines.append("")
    fl = report["floors"]
    lines += [
        "## Floors for `agentic` (reported, not asserted)",
        "",
        f"Critical SLO >= {BOUND}'s - {CRITICAL_VS_BOUND_PP} pp and >= every baseline's"
        f" ({', '.join(BASELINES)}); goodput >= {GOODPUT_VS_BOUND:.0%} of {BOUND}'s; shed by decision"
        " (refused or displaced, not expired) non-increasing from the least to the most urgent class; critical"
        f" SLO with default shedding >= the explicit run's - {DEFAULT_SHEDDING_PP} pp; cost per 1k good <= that"
        " of the baseline with the best critical SLO.",
        "",
        "| scenario | critical SLO (bound) | vs best baseline | goodput / bound | decided shed % by class"
        " | default / explicit shedding critical | cost / 1k good (best baseline) | all |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ok(x: Any) -> str:
        return "-" if x is None else ("ok" if x else "MISS")

    for name, e in fl.get("scenarios", {}).items():
        shed = ", ".join(f"{c} {100 * r:.2f}" for c, r in e.get("decided_shed_rate", {}).items())
        lines.append(
            f"| {name} | {_pct(e['critical_slo_attainment'])} ({_pct(e.get('bound_critical'))})"
            f" {ok(e.get('critical_vs_bound_ok'))}"
            f" | {e.get('best_baseline', '-')} {_pct(e.get('best_baseline_critical'))}"
            f" {ok(e.get('critical_vs_baselines_ok'))}"
            f" | {_pct(e.get('goodput_vs_bound'))} {ok(e.get('goodput_ok'))}"
            f" | {shed} {ok(e.get('shed_order_ok'))}"
            f" | {_pct(e.get('critical_default_shedding'))} / {_pct(e.get('critical_explicit_shedding'))}"
            f" {ok(e.get('default_shedding_ok'))}"
            f" | {_num(e.get('cost_per_1k_good'), '.2f')} ({_num(e.get('best_baseline_cost_per_1k_good'), '.2f')})"
            f" {ok(e.get('cost_ok'))} | {ok(e['ok'])} |"
        )
    lines.append("")
    for router, e in fl.get("decision_us_p99_64_replicas", {}).items():
        lines.append(
            f"- decision p99 with 64 replicas, {router}: {_num(e['p99_us'], '.2f')} us "
            f"({'ok' if e['ok'] else 'MISS'}, floor 50 us)"
        )
    for router, e in fl.get("sim_speed", {}).items():
        lines.append(
            f"- simulator speed with {router}: >= {e['min_requests_per_cpu_s']:.0f} requests per CPU second "
            f"({e['min_requests_per_wall_s']:.0f} per wall second) in every scenario "
            f"({'ok' if e['ok'] else 'MISS'}, floor 20,000)"
        )
    return "\n".join(lines) + "\n"


def plots(report: dict[str, Any], cdfs: dict[str, Any], out_dir: Path) -> list[str]:
    """Latency CDF per class per scenario, and SLO attainment against offered load; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for scenario, per_router in cdfs.items():
        classes = sorted({c for r in per_router.values() for c in r})
        fig, axes = plt.subplots(1, len(classes), figsize=(5 * len(classes), 4), squeeze=False)
        budgets = report["scenarios"][scenario].get("budgets_ms", {})
        for ax, cls in zip(axes[0], classes, strict=True):
            for router, by_class in per_router.items():
                pts = by_class.get(cls) or []
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=router)
            if cls in budgets:
                ax.axvline(budgets[cls], color="grey", linestyle="--", linewidth=1)
            ax.set_xscale("log")
            ax.set_title(f"{scenario}: {cls}")
            ax.set_xlabel("latency (ms), completed requests")
            ax.set_ylabel("fraction")
            ax.grid(True, alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"slo_matrix_cdf_{scenario}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)
    if report["sweep"]:
        rows = report["sweep"]
        routers = list(rows[0]["routers"])
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for router in routers:
            xs = [r["load"] for r in rows]
            axes[0].plot(xs, [r["routers"][router]["classes"].get("critical") for r in rows], marker="o", label=router)
            axes[1].plot(xs, [r["routers"][router]["slo_attainment"] for r in rows], marker="o", label=router)
        for ax, title in zip(axes, ("critical", "all classes"), strict=True):
            ax.set_title(f"{SWEEP_SCENARIO}: SLO attainment, {title}")
            ax.set_xlabel("offered load / capacity")
            ax.set_ylabel("SLO attainment")
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "slo_matrix_load_sweep.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="compress time 6x and sweep three load levels")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated scenario names")
    parser.add_argument("--routers", default=None, help="comma-separated routers (default: all registered)")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-sweep", action="store_true", help="skip the load sweep")
    args = parser.parse_args(argv)
    routers = args.routers.split(",") if args.routers else router_names()
    names = [s for s in args.scenarios.split(",") if s]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    factor = QUICK_TIME_FACTOR if args.quick else 1.0
    t0 = time.perf_counter()
    docs: dict[str, Any] = {}
    cdfs: dict[str, Any] = {}
    for name in names:
        sc = load_scenario(SCENARIO_DIR / f"{name}.yaml")
        if factor != 1.0:
            sc = compress_time(sc, factor)
        doc, cdf = run_scenario(sc, routers)
        doc["budgets_ms"] = {n: c.budget_ms for n, c in (sc.classes or {}).items()}
        docs[name], cdfs[name] = doc, cdf
        print(f"{name}: {doc['wall_s']} s", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    if not args.no_sweep and SWEEP_SCENARIO in names:
        sc = load_scenario(SCENARIO_DIR / f"{SWEEP_SCENARIO}.yaml")
        sc = compress_time(sc, factor * 0.5)
        rows = sweep(sc, routers, QUICK_SWEEP_LEVELS if args.quick else SWEEP_LEVELS)
        print("sweep done", file=sys.stderr)
    report = {
        "benchmark": "slo_matrix",
        "quick": args.quick,
        "host": f"{host_platform.node()} / Python {host_platform.python_version()} / {host_platform.machine()}",
        "loadavg_at_start": _loadavg(),
        "routers": list(routers),
        "scenarios": docs,
        "sweep": rows,
        "floors": {},
        "wall_s": 0.0,
    }
    report["floors"] = floors(docs)
    report["plots"] = [] if args.no_plots else plots(report, cdfs, out_dir)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    (out_dir / "slo_matrix.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    md = markdown(report)
    (out_dir / "slo_matrix.md").write_text(md)
    print(md)
    print(f"total wall time {report['wall_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
