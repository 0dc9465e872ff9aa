"""``agentic-ray demo`` and the live harness: the demo service, and replays of simulator scenarios on Serve.

- ``DemoModel`` / ``PlainDemoModel``, ``demo_scenario_path()``, ``demo_policy_path()``: the demo service
  (its scenario and policy are the YAML files beside this module);
- ``run_live(scenario, seed, ...)``, ``LiveOptions``, ``local_ray()``, ``print_progress``: replay a
  scenario's seeded requests live against the agentic path and Serve's default (``_live``);
- ``run_llm_live``, ``SyntheticStreamer`` / ``PlainSyntheticStreamer``, ``llm_scenario_path()``: the LLM
  demo (``--workload llm``), a synthetic token streamer replayed agentic against plain Serve, reporting
  TTFT / TPOT attainment per class (``_llm``);
- ``plot_cdfs``: latency CDF plots (matplotlib, imported on first use).

Nothing here is needed to serve: ``agentic_ray.serve`` does not import this package.
"""

from __future__ import annotations

from typing import Any

from agentic_ray.demo._live import LiveOptions, local_ray, print_progress, run_live
from agentic_ray.demo._llm import PlainSyntheticStreamer, SyntheticStreamer, llm_scenario_path, run_llm_live
from agentic_ray.demo._models import DemoModel, PlainDemoModel, demo_policy_path, demo_scenario_path

__all__ = [
    "DemoModel",
    "LiveOptions",
    "PlainDemoModel",
    "PlainSyntheticStreamer",
    "SyntheticStreamer",
    "demo_policy_path",
    "demo_scenario_path",
    "llm_scenario_path",
    "local_ray",
    "plot_cdfs",
    "print_progress",
    "run_live",
    "run_llm_live",
]


def __getattr__(name: str) -> Any:
    if name == "plot_cdfs":
        from agentic_ray.demo._plot import plot_cdfs

        return plot_cdfs
    raise AttributeError(name)
