"""Run in its own process by ``tests/test_ray_env.py``: a Ray started with none of agentic-ray's variables
(as ``ray start`` with Ray's defaults), then a plain job and agentic jobs on it (``agentic_ray.init`` with
an address): one with ``AGENTIC_JOB_RUNTIME_ENV=0`` whose control plane is then stopped; one that starts
the control plane again, a Serve and a direct HTTP request to an ``@agentic_ray.deployment``; the same
with ``AGENTIC_JOB_RUNTIME_ENV=0``; then an agentic job deploying onto that Serve. Prints one JSON line:
the niceness each process ran at, init's warnings, and the ``serve`` section of ``agentic_ray.status()``.

Usage: ``python _foreign_cluster.py GCS_PORT HTTP_PORT TEMP_DIR``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.request

from agentic_ray._ray_env import JOB_ENV_SWITCH, WORKER_NICENESS_ENV
from agentic_ray.serve._door import ENV, GRPC_ENV
from agentic_ray.testing.local_cluster import close


def _agent_processes(agentic_ray, wait_s: float = 60.0) -> list:
    """The ``process`` of every node agent in ``status()["zones"]``, once each has reported one."""
    deadline = time.monotonic() + wait_s
    while True:
        agents = [a for rows in (agentic_ray.status().get("zones") or {}).values() for a in rows]
        if (agents and all(a.get("process") for a in agents)) or time.monotonic() > deadline:
            return [a.get("process") for a in agents]
        time.sleep(0.5)


def main(gcs_port: int, http_port: int, temp_dir: str) -> dict:
    for name in (ENV, GRPC_ENV, WORKER_NICENESS_ENV, JOB_ENV_SWITCH):
        os.environ.pop(name, None)
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "gcs_server_port": gcs_port, "include_dashboard": False, "temp_dir": temp_dir,
        "labels": {"zone": "eu-west", "accelerator": "cpu"}})  # fmt: skip
    out: dict = {}
    try:

        @ray.remote(num_cpus=0)
        def niceness() -> int:
            return os.nice(0)

        ray.init(address=cluster.address, log_to_driver=False)  # another job, without agentic-ray
        out["plain_job_task"] = ray.get(niceness.remote(), timeout=120)
        ray.shutdown()

        from ray import serve

        import agentic_ray

        warnings = _Warnings()
        logging.getLogger("agentic_ray.sdk._admin").addHandler(warnings)
        # A control plane started by a job without agentic-ray's runtime_env (AGENTIC_JOB_RUNTIME_ENV=0, as
        # after a plain ray.init): Ray's niceness, which init warns of; then stopped.
        os.environ[JOB_ENV_SWITCH] = "0"
        agentic_ray.init(address=cluster.address, wait_s=60, log_to_driver=False)
        out["niced_coordinator"] = agentic_ray.status().get("process")
        out["niced_agents"] = _agent_processes(agentic_ray)
        out["niced_warnings"] = warnings.take()
        agentic_ray.shutdown(stop_control_plane=True)
        ray.shutdown()
        del os.environ[JOB_ENV_SWITCH]

        agentic_ray.init(address=cluster.address, wait_s=60, log_to_driver=False)
        out["agentic_job_task"] = ray.get(niceness.remote(), timeout=120)
        out["coordinator"] = agentic_ray.status().get("process")  # the control plane this job started
        out["agents"] = _agent_processes(agentic_ray)
        out["warnings"] = warnings.take()
        out["with"] = _serve_probe(agentic_ray, serve, http_port)
        # The same without the job's variables (AGENTIC_JOB_RUNTIME_ENV=0): a Serve started as on a cluster
        # of Ray's defaults, which ``status`` must warn of.
        serve.shutdown()
        ray.shutdown()
        os.environ[JOB_ENV_SWITCH] = "0"
        agentic_ray.init(address=cluster.address, wait_s=60, log_to_driver=False)
        out["without"] = _serve_probe(agentic_ray, serve, http_port, want_door=False)
        # An agentic job deploying onto that Serve: its replicas take the job's runtime_env (Serve's default
        # for a deployment without one of its own); the proxies keep theirs.
        ray.shutdown()
        del os.environ[JOB_ENV_SWITCH]
        agentic_ray.init(address=cluster.address, wait_s=60, log_to_driver=False)
        out["onto"] = _serve_probe(agentic_ray, serve, http_port, want_door=False, app="late")
    finally:
        close(cluster)
    return out


class _Warnings(logging.Handler):
    """The messages of the warnings logged to it since the last ``take``."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def take(self) -> list[str]:
        out, self.messages = self.messages, []
        return out


def _serve_probe(agentic_ray: object, serve: object, http_port: int, want_door: bool = True,
                 app: str = "probe") -> dict:  # fmt: skip
    """Serve started by this job (unless it runs), an agentic deployment ``app`` at ``/app``, one direct
    HTTP request; the replica's answer (its niceness) and ``status()["serve"]`` once a router of the app in
    a proxy with the door ``want_door`` registered."""
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})  # a running Serve is kept as it is

    @agentic_ray.deployment(slots=2, ray_actor_options={"num_cpus": 0})
    class Probe:
        async def __call__(self, payload: object = None) -> int:
            return os.nice(0)

    serve.run(Probe.bind(), name=app, route_prefix=f"/{app}")
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/{app}", data=b"{}", method="POST",
                                     headers={"x-qos": "standard"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as answer:
        out = {"http": json.loads(answer.read())}
    deadline = time.monotonic() + 60
    while True:  # the proxy's router registers with its first request, then heartbeats
        serve_status = agentic_ray.status()["serve"]
        routers = (serve_status.get("deployments") or {}).get(f"{app}/Probe", {}).get("routers") or []
        if any(r.get("process", {}).get("door") is want_door for r in routers) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out["serve"] = serve_status
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])))
