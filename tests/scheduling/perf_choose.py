"""Tiny timing script (not a test): decision latency of each router with 64 replicas.

    .venv/bin/python -m tests.scheduling.perf_choose

Prints p50/p99 of ``choose`` over 20 000 requests (three classes, half with a placement rule). Timings
are measured here, never asserted; the comparative benchmark lives in ``benchmarks/``.
"""

from __future__ import annotations

import random
import time

from agentic_ray.policies.types import NodeAttrs, QosClass, Shedding
from agentic_ray.scheduling import ReplicaView, Request, create_router, router_names

CLASSES = {
    "critical": QosClass("critical", 0, 500, Shedding.NEVER),
    "standard": QosClass("standard", 1, 1000),
    "sheddable": QosClass("sheddable", 2, 5000, Shedding.FIRST, shed_threshold=0.8),
}


def main(n_replicas: int = 64, n_requests: int = 20_000) -> None:
    rng = random.Random(1)
    views = [
        ReplicaView(
            f"r{i}",
            NodeAttrs(node_id=f"n{i}", zone="eu" if i % 2 else "us", accelerator="gpu" if i % 4 == 0 else "cpu"),
            slots=4,
            max_ongoing=32,
            ongoing=rng.randrange(0, 20),
            queued_by_priority={0: 1, 1: 3, 2: 4},
            service_ms={"default": 20.0 if i % 4 == 0 else 100.0},
            cost=10.0 if i % 4 == 0 else 1.0,
        )
        for i in range(n_replicas)
    ]
    eu_only = lambda attrs: attrs.zone == "eu"  # noqa: E731
    names = list(CLASSES)
    for name in router_names():
        router = create_router(name, random.Random(0), **({"classes": CLASSES} if name == "agentic" else {}))
        warm = Request(-1, "standard", 1, 0.0, 1.0)
        for view in views:
            router.on_dispatch(warm, view.replica_id, 0.0)
            router.observe(warm, view.replica_id, 50.0, 55.0, True, 0.0)
        samples = []
        for k in range(n_requests):
            q = names[k % 3]
            request = Request(
                k, q, CLASSES[q].priority, 0.0, 0.8, shedding=CLASSES[q].shedding, allows=eu_only if k % 2 else None
            )
            t0 = time.perf_counter_ns()
            router.choose(request, views, 0.0)
            samples.append(time.perf_counter_ns() - t0)
        samples.sort()
        p50 = samples[len(samples) // 2] / 1000
        p99 = samples[int(len(samples) * 0.99)] / 1000
        print(f"{name:14s} replicas={n_replicas} p50={p50:.1f}us p99={p99:.1f}us")


if __name__ == "__main__":
    main()
