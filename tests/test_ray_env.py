"""What a Ray started by agentic-ray inherits (``agentic_ray._ray_env``): the variables, and on the
session's real cluster that the niceness variable is what decides a worker's priority."""

from __future__ import annotations

import os

import pytest

from agentic_ray._ray_env import WORKER_NICENESS_ENV, prepare
from agentic_ray.serve._door import ENV, GRPC_ENV, IMPORT_PATH


def test_prepare_sets_the_door_the_transport_and_normal_priority():
    env: dict[str, str] = {}
    prepare(env)
    assert env == {ENV: IMPORT_PATH, GRPC_ENV: "1", WORKER_NICENESS_ENV: "0"}


def test_prepare_keeps_a_users_own_values():
    mine = {ENV: "my_module:callback", GRPC_ENV: "0", WORKER_NICENESS_ENV: "15"}
    prepare(mine)
    assert mine == {ENV: "my_module:callback", GRPC_ENV: "0", WORKER_NICENESS_ENV: "15"}


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no niceness on this platform")
def test_workers_run_at_the_niceness_the_environment_names(ray_cluster):
    """The suite's cluster inherits ``prepare``'s environment (``tests/conftest.py``): its workers run at
    niceness 0, not Ray's 15; an actor whose ``runtime_env`` names 15 runs at 15, so the variable decides."""
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def niceness(self) -> int:
            return os.nice(0)

    assert os.environ.get(WORKER_NICENESS_ENV) == "0"
    plain = Probe.remote()
    niced = Probe.options(runtime_env={"env_vars": {WORKER_NICENESS_ENV: "15"}}).remote()
    try:
        assert ray.get(plain.niceness.remote(), timeout=60) == 0
        assert ray.get(niced.niceness.remote(), timeout=60) == 15
    finally:
        ray.kill(plain)
        ray.kill(niced)
