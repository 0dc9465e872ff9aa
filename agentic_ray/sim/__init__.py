"""The discrete-event simulator: runs any router of the registry on a virtual clock.

    from agentic_ray.sim import load_scenario, simulate
    report = simulate(load_scenario("benchmarks/scenarios/surge.yaml"), ["agentic", "pow2"], seed=7)

Modules: ``engine`` (event heap), ``distributions`` (service times), ``arrivals`` (Poisson, MMPP, ramp,
trace), ``scenario`` (YAML schema and loader), ``workload`` (seeded requests), ``cluster`` (replicas),
``runner`` (the run loop; routers with gated replicas run through ``scheduling.RoutingState``, the
routing state of Serve's router: breaker, retry budget, hedges), ``metrics`` (figures), ``simulate``
(registry routers, JSON report).
Pure: no Ray, no asyncio, no clock reads (a wall-clock ``timer`` may be passed in to time decisions).
"""

from agentic_ray.sim.runner import RunResult, run_router
from agentic_ray.sim.scenario import Scenario, load_scenario, parse_scenario, scale_load
from agentic_ray.sim.simulate import ServiceOracle, make_router, simulate, simulate_runs
from agentic_ray.sim.workload import Workload, build_workload

__all__ = [
    "RunResult",
    "Scenario",
    "ServiceOracle",
    "Workload",
    "build_workload",
    "load_scenario",
    "make_router",
    "parse_scenario",
    "run_router",
    "scale_load",
    "simulate",
    "simulate_runs",
]
