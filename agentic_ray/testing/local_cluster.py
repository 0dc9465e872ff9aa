"""Tearing down a local ``ray.cluster_utils.Cluster`` that a test or benchmark started with Serve and the
control plane on it, in the order that leaves nothing behind on the machine."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["close"]


def close(cluster: Any) -> None:
    """Shut down Serve and the control plane (each may be absent or already gone: ignored), then this
    process's connection to Ray and ``cluster``'s processes (errors there are raised: something is left
    running)."""
    import ray
    from ray import serve

    import agentic_ray

    with contextlib.suppress(Exception):
        serve.shutdown()
    with contextlib.suppress(Exception):
        agentic_ray.shutdown(stop_control_plane=True)
    ray.shutdown()
    cluster.shutdown()
