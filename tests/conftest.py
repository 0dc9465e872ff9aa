"""Shared fixtures. Ray-backed fixtures start one real cluster per test session (starting Ray is slow).

Tests run with Ray's token authentication on, as Ray's default is for a new cluster: ``RAY_AUTH_MODE=token``
and a token made for this session in ``RAY_AUTH_TOKEN`` (Ray's token loader reads it), which every process
the session starts inherits (cluster nodes, CLI subprocesses), so nothing is written to ``~/.ray``. Tests
use their own temp dir and ports outside Ray's worker range 10002-19999. Two environment variables let parallel
runs on one machine stay apart: ``AGENTIC_TEST_PORT`` (GCS port of the test cluster, default 26379) and
``AGENTIC_TEST_TMP`` (temp dir root, default ``/tmp/agr-<pid>``).
"""

from __future__ import annotations

import os
import secrets
import shutil

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "token")
if os.environ["RAY_AUTH_MODE"] == "token" and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# What ``agentic_ray.init`` sets up for a local Ray (``agentic_ray._ray_env.prepare``): the front door in Serve's
# proxies, gRPC to replicas, workers at the host's normal priority. The nodes inherit this process's environment.
from agentic_ray._ray_env import prepare  # after the auth variables above: it imports agentic_ray

prepare()

# The labelled three-node test cluster: two nodes in eu-west, one in us-east with a GPU-like resource.
CLUSTER_NODES = (
    {"labels": {"zone": "eu-west", "accelerator": "cpu"}, "num_cpus": 2},
    {"labels": {"zone": "eu-west", "accelerator": "cpu"}, "num_cpus": 2},
    {"labels": {"zone": "us-east", "accelerator": "gpu"}, "num_cpus": 2, "resources": {"fake_gpu": 1}},
)


def _test_port() -> int:
    return int(os.environ.get("AGENTIC_TEST_PORT", "26379"))


def _test_tmp() -> tuple[str, bool]:
    """The temp dir root, and whether this session owns it (and so removes it at the end)."""
    given = os.environ.get("AGENTIC_TEST_TMP")
    root = given or f"/tmp/agr-{os.getpid()}"
    os.makedirs(root, exist_ok=True)
    os.environ["TMPDIR"] = root  # the dashboard's pymp-* dirs go here too
    return root, given is None


@pytest.fixture(scope="session")
def ray_cluster():
    """A real ``ray.cluster_utils.Cluster`` with the three labelled nodes of ``CLUSTER_NODES``.

    The driver is connected (``ray.init(address=...)``) for the whole session; tests that add nodes
    must remove them again. Yields the ``Cluster``.
    """
    import ray
    from ray.cluster_utils import Cluster

    tmp, owned = _test_tmp()
    head, *workers = CLUSTER_NODES
    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(
            gcs_server_port=_test_port(),
            include_dashboard=False,
            temp_dir=os.path.join(tmp, "ray"),
            **head,
        ),
    )
    for spec in workers:
        cluster.add_node(**spec)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="agentic-tests", log_to_driver=False)
    try:
        yield cluster
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception:
            pass
        ray.shutdown()
        cluster.shutdown()
        if owned:
            shutil.rmtree(tmp, ignore_errors=True)


# Fixtures that start or use the real Ray cluster: a test using any of them (directly or through another
# fixture) is marked ``ray``, so ``pytest -m "not ray"`` runs the pure tests alone, in seconds.
_RAY_FIXTURES = frozenset({"ray_cluster"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _RAY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)
