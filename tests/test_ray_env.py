"""What a Ray started by agentic-ray inherits (``agentic_ray._ray_env``): the variables, and on the
session's real cluster that the niceness variable is what decides a worker's priority."""

from __future__ import annotations

import json
import os

import pytest

from agentic_ray._ray_env import JOB_ENV_SWITCH, WORKER_NICENESS_ENV, job_runtime_env, prepare, variables
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


# -- a cluster started without them: the job's runtime_env -------------------------------------------------
WANTED = {ENV: IMPORT_PATH, GRPC_ENV: "1", WORKER_NICENESS_ENV: "0"}


def test_job_runtime_env_adds_the_variables_to_a_jobs_env_vars():
    assert job_runtime_env(None, {}) == {"env_vars": WANTED}
    mine = {"working_dir": ".", "env_vars": {"A": "1"}}
    assert job_runtime_env(mine, {}) == {"working_dir": ".", "env_vars": {"A": "1", **WANTED}}
    assert mine == {"working_dir": ".", "env_vars": {"A": "1"}}  # the caller's dict is not changed
    # The driver's own values are what the job gets (under ``ray job submit`` the supervisor sets niceness 0).
    assert job_runtime_env(None, {WORKER_NICENESS_ENV: "15"})["env_vars"][WORKER_NICENESS_ENV] == "15"


def test_job_runtime_env_keeps_a_users_values_and_a_submitted_jobs():
    mine = {"env_vars": {WORKER_NICENESS_ENV: "10"}}
    assert job_runtime_env(mine, {})["env_vars"] == {WORKER_NICENESS_ENV: "10", ENV: IMPORT_PATH, GRPC_ENV: "1"}
    # ``ray job submit --runtime-env-json '{"env_vars": {...}}'``: Ray refuses to merge a second value of one
    # variable into the job's, so a variable the submission names is left out.
    submitted = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {"env_vars": {GRPC_ENV: "0"}}})}
    assert job_runtime_env(None, submitted) == {"env_vars": {ENV: IMPORT_PATH, WORKER_NICENESS_ENV: "0"}}
    every = {"env_vars": dict(WANTED)}
    assert job_runtime_env(every, {}) == every  # nothing left to add
    assert job_runtime_env(None, {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": every})}) is None
    assert job_runtime_env(None, {"RAY_JOB_CONFIG_JSON_ENV_VAR": "not json"}) == {"env_vars": WANTED}
    # Switched off: the caller's runtime_env as it is.
    assert job_runtime_env(None, {JOB_ENV_SWITCH: "0"}) is None
    assert job_runtime_env(mine, {JOB_ENV_SWITCH: "0"}) == mine
    with pytest.raises(ValueError, match=r"runtime_env\.env_vars"):
        job_runtime_env({"env_vars": ["A=1"]}, {})


def test_variables_are_what_prepare_sets_with_the_environments_own_values():
    assert variables({}) == WANTED
    assert variables({WORKER_NICENESS_ENV: "5", "OTHER": "x"}) == {**WANTED, WORKER_NICENESS_ENV: "5"}


@pytest.mark.ray
@pytest.mark.timeout(420)
@pytest.mark.skipif(not hasattr(os, "nice"), reason="no niceness on this platform")
def test_a_cluster_started_without_the_variables_gets_them_through_the_agentic_job():
    """On a Ray started with Ray's defaults, a plain job's task runs at niceness 15; ``agentic_ray.init``
    with the address puts the variables in its job's runtime_env, so its task, the Serve it starts
    (controller, proxy, replicas: the controller's children) run at 0 and the proxy installs the door,
    which its router reports (``agentic-ray status`` then has nothing to warn of; a control plane started
    by a job without them runs at 15, and ``init`` warns of it); with
    ``AGENTIC_JOB_RUNTIME_ENV=0`` the Serve it starts has neither, and status warns of both; an agentic
    job deploying onto that Serve gets its replicas at 0, not its proxy."""
    import shutil
    import subprocess
    import sys
    import tempfile

    port = int(os.environ.get("AGENTIC_TEST_PORT", "26379")) + 50  # beside the session's cluster
    temp = tempfile.mkdtemp(prefix="agr-fc-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    os.makedirs(os.path.join(temp, "ray"))  # Ray writes its address file in $TMPDIR/ray
    env = dict(os.environ, TMPDIR=temp)
    script = os.path.join(os.path.dirname(__file__), "integration", "_foreign_cluster.py")
    try:
        proc = subprocess.run([sys.executable, script, str(port), str(port + 1), os.path.join(temp, "ray")],
                              capture_output=True, text=True, timeout=400, env=env)  # fmt: skip
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["plain_job_task"] == 15  # the cluster has none of the variables: Ray's default
    assert out["agentic_job_task"] == 0
    assert out["coordinator"] == {"niceness": 0, "proxy": False}  # the control plane it started, and its agents
    assert out["agents"] == [{"niceness": 0, "proxy": False}]  # reported in the agent's snapshots (wire v4)
    assert out["warnings"] == []
    # A control plane a job without the runtime_env started (AGENTIC_JOB_RUNTIME_ENV=0) runs at 15: init says so.
    assert out["niced_coordinator"] == {"niceness": 15, "proxy": False}
    assert out["niced_agents"] == [{"niceness": 15, "proxy": False}]  # agentic-ray status warns of them
    assert len(out["niced_warnings"]) == 1 and "runs at niceness 15" in out["niced_warnings"][0]
    with_ = out["with"]
    assert with_["http"]["result"] == 0  # the replica
    dep = with_["serve"]["deployments"]["probe/Probe"]
    proxies = [r["process"] for r in dep["routers"] if r["process"].get("proxy")]
    assert proxies and all(p == {"niceness": 0, "proxy": True, "door": True} for p in proxies), dep["routers"]
    assert [r["process"]["niceness"] for r in dep["replicas"]] == [0]
    assert with_["serve"]["environment"] == []
    # The same job with AGENTIC_JOB_RUNTIME_ENV=0: Serve as a cluster of Ray's defaults runs it, and status
    # says so (the first Serve's router and replica may still be listed until they go stale).
    without = out["without"]
    assert without["http"]["result"] == 15
    rows = without["serve"]["deployments"]["probe/Probe"]["routers"]
    assert {"niceness": 15, "proxy": True, "door": False} in [r["process"] for r in rows], rows
    findings = without["serve"]["environment"]
    assert any("without the front door" in line for line in findings), findings
    assert any("at niceness 15" in line for line in findings), findings
    # An agentic job deploying onto that Serve: its replica runs at 0 (the job's runtime_env is Serve's
    # default for a deployment without its own), the proxy it cannot change, and status says which.
    onto = out["onto"]
    assert onto["http"]["result"] == 0
    late = onto["serve"]["deployments"]["late/Probe"]
    assert [r["process"]["niceness"] for r in late["replicas"]] == [0]
    assert {"niceness": 15, "proxy": True, "door": False} in [r["process"] for r in late["routers"]], late
    late_findings = [line for line in onto["serve"]["environment"] if line.startswith("late/Probe")]
    assert len(late_findings) == 2 and "at niceness 15 (router " in late_findings[1], late_findings
