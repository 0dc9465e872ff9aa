"""The Ray control plane of agentic-ray and the pieces the SDK runs in each process.

Ray actors (loaded on first use; importing this package does not import Ray):

- ``NodeAgent``         one per node, pinned to it: accelerator state, in-flight and EWMA service times
                        per class, budget lease, local admission (its pure core: ``NodeAgentImpl``)
- ``ZoneCoordinator``   one per zone: merges agents' reports, passes leases down
- ``GlobalCoordinator`` membership, policy rollout, allocation, drift, cluster view

Also: ``AcceleratorProbe`` (NVML / CPU snapshot of a node), ``ControlPlaneConfig`` and the actor names
(``GLOBAL_NAME``, ``NAMESPACE``, ``agent_name``, ``zone_name``), and per process ``ClusterViewCache``
(the policy and cluster view the SDK places from). The decisions these actors make live in
``agentic_ray.control`` (pure); the task wrapper run on Ray workers is ``_worker``; the inside of a
governed actor (``@agentic_ray.actor``: its class wrapper and the queue in front of its methods) is
``_actor_class`` and ``_actor_admission``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GLOBAL_NAME",
    "NAMESPACE",
    "AcceleratorProbe",
    "ClusterViewCache",
    "ControlPlaneConfig",
    "GlobalCoordinator",
    "NodeAgent",
    "NodeAgentImpl",
    "ZoneCoordinator",
    "agent_name",
    "zone_name",
]

_WHERE = {
    "GLOBAL_NAME": "_common",
    "NAMESPACE": "_common",
    "ControlPlaneConfig": "_common",
    "agent_name": "_common",
    "zone_name": "_common",
    "AcceleratorProbe": "_probe",
    "ClusterViewCache": "_view_cache",
    "GlobalCoordinator": "_global_coordinator",
    "NodeAgent": "_node_agent",
    "NodeAgentImpl": "_node_agent",
    "ZoneCoordinator": "_zone",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agentic_ray.actors' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"agentic_ray.actors.{module}"), name)
