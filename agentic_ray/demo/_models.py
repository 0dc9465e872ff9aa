"""The demo service: its scenario and policy (YAML beside this file) and its model replicas.

``scenario.yaml`` is an ``agentic-ray sim`` scenario; ``agentic-ray demo`` replays the same seeded
requests live. Each replica takes the kind of one replica group of the scenario from its Serve replica
rank (rank 0 -> the first group's first replica, ...), labels itself with that group's accelerator kind,
zone and cost, and serves a request by sleeping for the request's sampled service time on that group
(``payload["service_ms"][group]``). The "gpu" replicas are therefore simulated: no GPU work is done.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DemoModel", "PlainDemoModel", "demo_policy_path", "demo_scenario_path"]


def demo_scenario_path() -> Path:
    """Path of the demo's scenario YAML."""
    return Path(str(resources.files(__package__).joinpath("scenario.yaml")))


def demo_policy_path() -> Path:
    """Path of the demo's policy YAML."""
    return Path(str(resources.files(__package__).joinpath("policy.yaml")))


def _group_for_rank(groups: list[dict[str, Any]], rank: int) -> dict[str, Any]:
    total = sum(int(g["count"]) for g in groups)
    r = rank % total
    for g in groups:
        if r < int(g["count"]):
            return g
        r -= int(g["count"])
    return groups[-1]


class DemoModel:
    """A replica of the demo service; ``groups`` are the scenario's replica groups (plain dicts)."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        from ray import serve

        rank = serve.get_replica_context().rank
        self.group = _group_for_rank(groups, int(getattr(rank, "rank", rank)))
        self.name = str(self.group["name"])

    def agentic_replica_attrs(self) -> dict[str, Any]:
        """Published to routers by ``@agentic_ray.deployment`` (overrides the node's labels)."""
        g = self.group
        return {
            "zone": g["zone"],
            "accelerator": g["accelerator"],
            "slots": int(g["slots"]),
            "cost": float(g["cost"]),
            "labels": {"group": self.name, **g.get("labels", {})},
            # The group's mean service time as a prior until the replica has measured its own.
            "service_ms": dict(g.get("service_ms", {})),
        }

    async def _serve_request(self, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(payload["service_ms"][self.name]) / 1000.0)
        return {"group": self.name, "zone": self.group["zone"], "accelerator": self.group["accelerator"]}

    async def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._serve_request(payload)


class PlainDemoModel(DemoModel):
    """The same replica for a plain ``@serve.deployment``: ``slots`` requests run at once, the rest wait
    in arrival order (a FIFO semaphore), as in the simulator's ``fifo`` replica discipline."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        super().__init__(groups)
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(int(self.group["slots"]))
        async with self._slots:
            return await self._serve_request(payload)
