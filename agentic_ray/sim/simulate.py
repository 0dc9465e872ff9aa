"""Running a scenario with named routers from the registry: the entry point of the CLI and benchmarks.

``simulate`` builds the seeded workload once and runs every router on it (same requests, same service
demands), each router on a fresh cluster with its own ``random.Random`` derived from the seed. Routers
are built with ``agentic_ray.scheduling.registry.create_router(name, rng, **config)``; the simulator
offers the keyword arguments a router's constructor accepts among ``classes`` (the QoS classes) and
``service_time`` (the true ``(request, replica_id) -> ms`` that ``clairvoyant`` and ``central_edf`` use:
the pre-sampled service time of that request on that replica's group times the replica's current
slowdown) and ``network_ms`` (the scenario's one-way delay), then the scenario's ``router_config.<name>``
on top. Routers with gates also get the run's breaker and retry settings and
tenant shares (``scenario_admission``: the scenario's, else the policy's).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentic_ray.errors import Problem, ScenarioValidationError
from agentic_ray.policies.types import BreakerSettings, QosClass, RetrySettings
from agentic_ray.scheduling.admission import tenant_shares_of
from agentic_ray.scheduling.types import Request, Router
from agentic_ray.sim.runner import RunResult, run_router
from agentic_ray.sim.scenario import Scenario
from agentic_ray.sim.workload import Workload, build_workload, stream

__all__ = [
    "ServiceOracle",
    "load_policy_for",
    "make_router",
    "scenario_admission",
    "scenario_classes",
    "simulate",
    "simulate_runs",
]


class ServiceOracle:
    """The true service time (ms) of a workload request on a replica: ``oracle(request, replica_id)``."""

    def __init__(self, scenario: Scenario, workload: Workload) -> None:
        self._items = workload.items
        self._group: dict[str, int] = {}
        for gi, g in enumerate(scenario.replicas):
            for i in range(g.count):
                self._group[f"{g.name}-{i}"] = gi
        self.slowdowns: dict[str, float] = {}

    def __call__(self, request: Request, replica_id: str) -> float:
        base = self._items[request.id].service_ms[self._group[replica_id]]
        return float(base * self.slowdowns.get(replica_id, 1.0))


def load_policy_for(scenario: Scenario) -> Any:
    """The compiled policy named by ``scenario.policy`` (``None`` when the scenario has none)."""
    if scenario.policy is None:
        return None
    from agentic_ray.policies import load_policy

    return load_policy(scenario.policy)


def scenario_classes(scenario: Scenario, policy: Any = None) -> dict[str, QosClass]:
    """The QoS classes of the run: the policy's when given, else the scenario's inline ``classes``."""
    if policy is not None:
        return dict(policy.classes)
    return {
        name: QosClass(
            name=name,
            priority=c.priority,
            budget_ms=c.budget_ms,
            shedding=c.shedding,
            max_queue_wait_ms=c.max_queue_wait_ms,
            hedge_after_ms=c.hedge_after_ms,
            queue_bound=c.queue_bound,
            shed_threshold=c.shed_threshold,
            ttft_ms=c.ttft_ms,
            tpot_ms=c.tpot_ms,
        )
        for name, c in (scenario.classes or {}).items()
    }


def scenario_admission(
    scenario: Scenario, policy: Any = None
) -> tuple[BreakerSettings | None, RetrySettings | None, dict[str, float] | None]:
    """``(breaker, retry, tenant_shares)`` of the run: the scenario's own when it sets them, else the
    policy's (None: the defaults; no tenant shares)."""
    breaker = retry = None
    shares: dict[str, float] | None = None
    if policy is not None:
        breaker, retry = policy.breaker, policy.retry
        shares = tenant_shares_of(policy.tenants) or None
    if scenario.breaker is not None:
        b = scenario.breaker
        breaker = BreakerSettings(
            b.consecutive_failures, b.ejection_s, b.max_ejection_s, b.max_ejected_fraction, b.latency_outlier_factor
        )
    if scenario.retry is not None:
        retry = RetrySettings(scenario.retry.ratio, scenario.retry.min_per_s, scenario.retry.max_attempts)
    if scenario.tenant_shares is not None:
        shares = dict(scenario.tenant_shares)
    return breaker, retry, shares


def _accepted_params(name: str) -> set[str] | None:
    from agentic_ray.scheduling import registry

    factory = getattr(registry, "_REGISTRY", {}).get(registry.canonical_name(name))
    if factory is None:
        return None
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None


def make_router(name: str, seed: int, context: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> Router:
    """Build registry router ``name`` with its seeded rng, the accepted ``context`` kwargs and ``config``.

    An unknown name raises ``ValueError`` listing the registered routers.
    """
    from agentic_ray.scheduling.registry import create_router

    accepted = _accepted_params(name)
    kwargs = {k: v for k, v in context.items() if accepted is not None and k in accepted}
    kwargs.update(config or {})
    return create_router(name, stream(seed, f"router:{name}"), **kwargs)


def check_router_names(names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the registered routers when any of ``names`` is unknown."""
    from agentic_ray.scheduling.registry import ALIASES, router_names

    known = router_names()
    unknown = [n for n in names if n not in known and n not in ALIASES]
    if unknown:
        raise ValueError(f"unknown router(s) {', '.join(unknown)}; registered routers: {', '.join(known)}")


def simulate_runs(
    scenario: Scenario,
    routers: Sequence[str],
    *,
    seed: int | None = None,
    timer: Callable[[], int] | None = None,
    cpu_timer: Callable[[], int] | None = None,
) -> dict[str, RunResult]:
    """Run each registry router in ``routers`` on the same seeded workload; ``seed`` overrides the file's."""
    check_router_names(routers)
    seed = scenario.seed if seed is None else seed
    policy = load_policy_for(scenario)
    if policy is not None:
        unknown = [c for c in scenario.workload.mix if c not in policy.classes]
        if unknown:
            problems = [
                Problem(f"workload.mix.{c}", f"unknown class; the policy's classes are {sorted(policy.classes)}")
                for c in unknown
            ]
            raise ScenarioValidationError(problems, scenario.name)
    workload = build_workload(scenario, seed, policy)
    classes = scenario_classes(scenario, policy)
    breaker, retry, tenant_shares = scenario_admission(scenario, policy)
    results: dict[str, RunResult] = {}
    for name in routers:
        oracle = ServiceOracle(scenario, workload)
        context = {"classes": classes, "service_time": oracle, "network_ms": scenario.network_ms}
        router = make_router(name, seed, context, scenario.router_config.get(name))
        results[name] = run_router(
            scenario,
            workload,
            router,
            classes=classes,
            timer=timer,
            name=name,
            slowdowns=oracle.slowdowns,
            cpu_timer=cpu_timer,
            breaker=breaker,
            retry=retry,
            tenant_shares=tenant_shares,
            costs=scenario.costs
            if scenario.costs is not None
            else (dict(policy.costs) if policy is not None else None),
        )
    return results


def simulate(
    scenario: Scenario,
    routers: Sequence[str],
    *,
    seed: int | None = None,
    timer: Callable[[], int] | None = None,
    cpu_timer: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """``simulate_runs`` as the JSON document of ``agentic-ray sim --json``."""
    runs = simulate_runs(scenario, routers, seed=seed, timer=timer, cpu_timer=cpu_timer)
    return {
        "scenario": scenario.name,
        "seed": scenario.seed if seed is None else seed,
        "results": {name: r.to_json() for name, r in runs.items()},
    }
