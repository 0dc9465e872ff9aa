"""The Ray control plane of agentic-ray and the pieces the SDK runs in each process.

Ray actors (import the module to get them; importing this package does not import Ray):

- ``node_agent.NodeAgent``               one per node, pinned to it: accelerator state, in-flight and
                                          EWMA service times per class, budget lease, local admission
- ``zone.ZoneCoordinator``               one per zone: merges agents' reports, passes leases down
- ``global_coordinator.GlobalCoordinator``  membership, policy rollout, allocation, drift, cluster view

Pure modules (no Ray, asyncio or clock): ``summary`` (mergeable latency histograms), ``drift`` (p99 vs
budget and multiwindow burn-rate alerts), ``placement`` (node choice and residency-safe fallback),
``leases`` (per-node caps from the BudgetAllocator), ``probe`` (NVML / CPU snapshot), ``common``
(names, settings, checkpoint keys). Per process: ``view_cache.ClusterViewCache`` (policy + view the
SDK places from) and ``worker`` (the task wrapper run on Ray workers).
"""
