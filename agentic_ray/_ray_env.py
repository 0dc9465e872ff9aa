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

On a cluster started without them (``ray start`` with Ray's defaults, a cluster someone else runs),
``agentic_ray.init(address=...)`` (or with ``RAY_ADDRESS``, as under ``ray job submit``) puts the same
variables in the job's ``runtime_env`` instead (``job_runtime_env``): Ray gives a job's ``env_vars`` to
every worker it starts for the job, and a detached actor the job creates passes them on to the actors it
creates, so a Serve that the job starts (its first ``serve.run``) has the door and the gRPC transport in
its proxies and every replica and proxy at niceness 0, as its controller's children. Checked on a Ray
started with none of the variables (``tests/test_ray_env.py``): the controller, the proxy and a replica
ran at niceness 0 with the door's variable, a plain task of another job at 15. On a Serve another job
started, the replicas of an application this job deploys get them too (Serve gives a deployment without
a ``runtime_env`` of its own the deploying job's, ``serve/_private/build_app.py``), its proxies not: what
runs already keeps its environment, as do other jobs' workers and a control plane another job started
(``agentic-ray status`` warns of proxies without the door and of a GlobalCoordinator, routers and
replicas above niceness 0, from what each reports of its process: ``process_env``). Starting Ray with
the variables (``RAY_worker_niceness=0 ray start ...``; ``examples/kuberay/raycluster.yaml`` sets them in
every container) covers every process from the start.

A value of your own is kept everywhere: in the environment (``RAY_worker_niceness=15`` keeps Ray's
default), in ``runtime_env`` ``env_vars`` given to ``init``, or in the runtime_env of a submitted job.
``AGENTIC_JOB_RUNTIME_ENV=0`` leaves the job's runtime_env alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["JOB_ENV_SWITCH", "WORKER_NICENESS", "WORKER_NICENESS_ENV", "job_runtime_env", "prepare", "process_env",
           "variables"]  # fmt: skip

WORKER_NICENESS_ENV = "RAY_worker_niceness"  # Ray's RayConfig ``worker_niceness`` (default 15)
WORKER_NICENESS = "0"
JOB_ENV_SWITCH = "AGENTIC_JOB_RUNTIME_ENV"  # "0": ``job_runtime_env`` adds nothing
_SUBMITTED_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # Ray's job supervisor: the submitted job's config as JSON


def prepare(environ: MutableMapping[str, str] | None = None) -> None:
    """Set, in ``environ`` (``os.environ`` by default), what a Ray started from it should inherit (module
    docstring), each variable unless it is set already. Call it before Ray starts."""
    from agentic_ray.serve._door import enable

    env = os.environ if environ is None else environ
    enable(env)
    env.setdefault(WORKER_NICENESS_ENV, WORKER_NICENESS)


def variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables ``prepare`` sets, with the values a Ray started from ``environ`` (``os.environ`` by
    default) would inherit: the process's own where it has them."""
    from agentic_ray.serve._door import ENV, GRPC_ENV

    env = dict(os.environ if environ is None else environ)
    prepare(env)
    return {name: env[name] for name in (ENV, GRPC_ENV, WORKER_NICENESS_ENV)}


def job_runtime_env(runtime_env: Mapping[str, Any] | None = None,
                    environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:  # fmt: skip
    """The ``runtime_env`` for ``ray.init`` connecting to a cluster: ``runtime_env`` (a caller's, or None)
    with ``variables(environ)`` added to its ``env_vars``, each unless ``runtime_env`` names it or the
    submitted job's runtime_env does (``ray job submit --runtime-env...``: Ray refuses to merge two values
    of one variable). Returns ``runtime_env`` unchanged (None stays None) when ``environ`` has
    ``AGENTIC_JOB_RUNTIME_ENV=0`` or nothing is left to add. Raises ``ValueError`` naming the field when a
    given ``env_vars`` is not a mapping."""
    env = os.environ if environ is None else environ
    if env.get(JOB_ENV_SWITCH, "1") == "0":
        return None if runtime_env is None else dict(runtime_env)
    given = dict(runtime_env or {})
    mine = given.get("env_vars") or {}
    if not isinstance(mine, Mapping):
        raise ValueError(f"runtime_env.env_vars: expected a mapping of names to values, got {type(mine).__name__}")
    taken = set(mine) | set(_submitted_env_vars(env))
    add = {name: value for name, value in variables(env).items() if name not in taken}
    if not add:
        return None if runtime_env is None else given
    given["env_vars"] = {**mine, **add}
    return given


def _submitted_env_vars(environ: Mapping[str, str]) -> Mapping[str, Any]:
    """The ``env_vars`` of the job's submitted runtime_env (none outside ``ray job submit``)."""
    try:
        config = json.loads(environ.get(_SUBMITTED_JOB_ENV) or "{}")
        env_vars = (config.get("runtime_env") or {}).get("env_vars") or {}
    except (ValueError, AttributeError):  # not ours to judge: Ray reads it too, and says what is wrong
        return {}
    return env_vars if isinstance(env_vars, Mapping) else {}


def process_env() -> dict[str, Any]:
    """What this process runs with, for ``agentic-ray status`` (the GlobalCoordinator's own, and each
    router's and replica's registration):
    ``niceness`` (None where the platform has none), ``proxy`` (whether it is one of Serve's proxies)
    and, in a proxy, ``door`` (whether the proxy installed the front door)."""
    from agentic_ray.serve import _door

    out: dict[str, Any] = {"niceness": os.nice(0) if hasattr(os, "nice") else None, "proxy": _in_proxy()}
    if out["proxy"]:
        out["door"] = _door.installed()
    return out


PROXY_ACTOR_PREFIX = "SERVE_PROXY_ACTOR"  # Serve's ``SERVE_PROXY_NAME``: its proxies' actor names start so


def _in_proxy() -> bool:
    try:
        import ray

        if not ray.is_initialized():
            return False
        name = ray.get_runtime_context().get_actor_name() or ""
    except Exception:  # outside a worker, or Ray's context unavailable: not a proxy we can tell
        return False
    return name.startswith(PROXY_ACTOR_PREFIX)
