"""What-if replay: recorded arrivals through the simulator under two policies, side by side.

``replay(scenario, trace, new_policy, routers)`` takes a scenario (its replicas, network, router
settings and its policy, the *current* one) and a trace of recorded arrivals (``agentic-ray trace
export``: time, class, tenant, workflow, stage, model, data class and the observed service time, which
every replica group then takes instead of a sampled one), and runs the same arrivals twice with each
router: under the scenario's policy and under ``new_policy``. Both runs see the same requests with the
same service demands (common random numbers), so a difference is the policy's.

Per class it reports both runs' requests, SLO attainment, p99, shed and the difference in shed, and
**placement changes**: requests whose eligible replica groups differ between the two policies (each
request classified under both, its ``allows`` checked against every group's zone, accelerator and
labels): where the new policy would send work elsewhere, or nowhere. Pure: no Ray, no clock.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from agentic_ray.policies.types import NodeAttrs, RequestMeta
from agentic_ray.sim.arrivals import read_trace
from agentic_ray.sim.scenario import Scenario, TraceSpec
from agentic_ray.sim.simulate import simulate_runs

__all__ = ["placement_changes", "replay", "replay_scenario"]


def replay_scenario(scenario: Scenario, trace: str | os.PathLike[str], policy: str | None) -> Scenario:
    """``scenario`` with its arrivals replaced by ``trace`` (long enough to hold every arrival, no
    warm-up) and, when given, ``policy`` (a path) as its policy."""
    records = read_trace(trace)
    duration = max([scenario.duration_s, *(r.at_s + 1.0 for r in records)])
    workload = scenario.workload.model_copy(update={"arrivals": TraceSpec(process="trace", file=os.fspath(trace))})
    update: dict[str, Any] = {"workload": workload, "duration_s": duration, "warmup_s": 0.0}
    if policy is not None:
        update["policy"] = os.fspath(policy)
    return scenario.model_copy(update=update)


def placement_changes(scenario: Scenario, trace: str | os.PathLike[str], old: Any, new: Any) -> dict[str, int]:
    """Per class (the new policy's), the requests whose eligible replica groups differ between the
    ``old`` and ``new`` compiled policies (``None``: every group is eligible)."""
    groups = [NodeAttrs(node_id=g.name, zone=g.zone, accelerator=g.accelerator, labels=dict(g.labels))
              for g in scenario.replicas]  # fmt: skip
    out: dict[str, int] = {}
    for r in read_trace(trace):
        meta = RequestMeta(qos=r.qos, model=r.model, tenant=r.tenant, data_class=r.data_class, workflow=r.workflow,
                           stage=r.stage)  # fmt: skip
        before = _eligible(old, meta, r.at_s, groups)
        after = _eligible(new, meta, r.at_s, groups)
        if before != after:
            qos = after[0] if after[0] is not None else before[0]
            out[str(qos)] = out.get(str(qos), 0) + 1
    return out


def _eligible(policy: Any, meta: RequestMeta, at: float, groups: list[NodeAttrs]) -> tuple[str | None, tuple[str, ...]]:
    if policy is None:
        return meta.qos, tuple(g.node_id for g in groups)
    try:
        c = policy.classify(meta, at, check_entitlement=False)
    except Exception:
        return meta.qos, ()
    allows = c.allows
    return c.qos.name, tuple(g.node_id for g in groups if allows is None or allows(g))


def replay(
    scenario: Scenario,
    trace: str | os.PathLike[str],
    new_policy: str | os.PathLike[str],
    routers: Sequence[str] = ("agentic",),
    seed: int | None = None,
) -> dict[str, Any]:
    """Both runs and their per-class differences (see the module docstring), as JSON."""
    from agentic_ray.policies import load_policy

    old_scenario = replay_scenario(scenario, trace, None)
    new_scenario = replay_scenario(scenario, trace, os.fspath(new_policy))
    before = simulate_runs(old_scenario, routers, seed=seed)
    after = simulate_runs(new_scenario, routers, seed=seed)
    old = load_policy(scenario.policy) if scenario.policy is not None else None
    moved = placement_changes(scenario, trace, old, load_policy(new_policy))
    results: dict[str, Any] = {}
    for name in routers:
        a, b = before[name].to_json(), after[name].to_json()
        classes: dict[str, Any] = {}
        for qos in sorted(set(a["classes"]) | set(b["classes"])):
            ca, cb = a["classes"].get(qos) or {}, b["classes"].get(qos) or {}
            classes[qos] = {
                "requests": [ca.get("requests", 0), cb.get("requests", 0)],
                "slo_attainment": [ca.get("slo_attainment"), cb.get("slo_attainment")],
                "p99_ms": [ca.get("p99_ms"), cb.get("p99_ms")],
                "shed": [ca.get("shed", 0), cb.get("shed", 0)],
                "shed_change": cb.get("shed", 0) - ca.get("shed", 0),
                "placement_changes": moved.get(qos, 0),
            }
        results[name] = {"classes": classes, "goodput_rps": [a["goodput_rps"], b["goodput_rps"]]}
    return {
        "scenario": scenario.name,
        "trace": os.fspath(trace),
        "policies": [scenario.policy or "<scenario classes>", os.fspath(new_policy)],
        "results": results,
    }


def format_replay(report: dict[str, Any]) -> str:
    """The side-by-side table of ``replay``."""

    def pct(x: Any) -> str:
        return "-" if x is None else f"{100.0 * x:.2f}"

    def ms(x: Any) -> str:
        return "-" if x is None else f"{x:.1f}"

    old, new = report["policies"]
    lines = [f"replay of {report['trace']} on scenario {report['scenario']}", f"  before: {old}", f"  after:  {new}"]
    head = (f"{'router':<10} {'class':<12} {'requests':>8} {'SLO % before':>12} {'after':>7} {'p99 before':>10} "
            f"{'after':>7} {'shed before':>11} {'after':>6} {'change':>7} {'placement changes':>17}")  # fmt: skip
    lines += [head, "-" * len(head)]
    for router, res in report["results"].items():
        for qos, c in res["classes"].items():
            lines.append(
                f"{router:<10} {qos:<12} {c['requests'][1]:>8} {pct(c['slo_attainment'][0]):>12} "
                f"{pct(c['slo_attainment'][1]):>7} {ms(c['p99_ms'][0]):>10} {ms(c['p99_ms'][1]):>7} "
                f"{c['shed'][0]:>11} {c['shed'][1]:>6} {c['shed_change']:>+7} {c['placement_changes']:>17}"
            )
        g = res["goodput_rps"]
        lines.append(f"{router:<10} goodput {g[0]:.1f} -> {g[1]:.1f} rps")
    return "\n".join(lines)
