"""The environment of a Ray that agentic-ray starts: what its processes inherit.

Ray passes the environment of the process that starts it on to its raylets, and from them to every
worker and to Serve's proxies. ``prepare()``, called before a local Ray starts (``agentic_ray.init``,
``agentic-ray demo``, the benchmarks' clusters, the test suite's), sets each of these unless it is set:

- the front door in Serve's proxies and their gRPC transport (``serve._door.enable``);
- ``RAY_worker_niceness=0``: workers run at the host's normal priority.

Why the niceness. Ray starts every worker process at niceness 15 (its ``worker_niceness``, so that the
raylet and GCS come first). A replica, a node agent or a Serve proxy then yields to any process of normal
priority on its host: under Linux's fair scheduler a niceness-15 process has weight 36 against 1024 for
niceness 0, so beside one busy normal process it gets about 3 % of a core, and the kernel's load
balancer, which balances weights, piles the light niced workers onto the busy process's core. In the
chaos suite's noisy neighbour (a busy process of the harness's own, niceness 0, on a two-core host) that
was where the critical work went: five alternating pairs of quick runs of the same code gave critical
attainment over handles 0.44-0.86 with ``RAY_worker_niceness=0`` against 0.22-0.45 at 15 (higher in
every pair), and over HTTP no request hung against 1-10 per run. The caller of a handle (niceness 0 in
a benchmark's driver) no longer outweighs the workers: its refusals' p99 in the overload ladder rose
from 4-8 ms to 20-110 ms. Ray's job supervisor sets the same variable to 0 for a job's
driver (``dashboard/modules/job/job_manager.py``); a worker reads it from its own environment at start,
so a ``runtime_env`` can set it per actor too.

On a cluster you start yourself, start Ray with the same variables (``RAY_worker_niceness=0 ray start
...``; ``examples/kuberay/raycluster.yaml`` sets them in every container). A value of your own is kept:
``RAY_worker_niceness=15`` keeps Ray's default.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["WORKER_NICENESS", "WORKER_NICENESS_ENV", "prepare"]

WORKER_NICENESS_ENV = "RAY_worker_niceness"  # Ray's RayConfig ``worker_niceness`` (default 15)
WORKER_NICENESS = "0"


def prepare(environ: MutableMapping[str, str] | None = None) -> None:
    """Set, in ``environ`` (``os.environ`` by default), what a Ray started from it should inherit (module
    docstring), each variable unless it is set already. Call it before Ray starts."""
    from agentic_ray.serve._door import enable

    env = os.environ if environ is None else environ
    enable(env)
    env.setdefault(WORKER_NICENESS_ENV, WORKER_NICENESS)
