"""The control plane on a real NVIDIA GPU node (skipped without one): the node agent's accelerator state
comes from NVML, the node counts as ``gpu`` for placement, and GPU tasks run there with a GPU assigned.

Runs its own single-node Ray (the GPU is auto-detected), so it is skipped inside a session that already
connected to the shared test cluster. On a GPU host: ``RAY_AUTH_MODE=disabled python -m pytest
tests/integration/test_gpu_node.py``.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from agentic_ray.actors._probe import AcceleratorProbe

pytestmark = [pytest.mark.ray, pytest.mark.slow]

_probe = AcceleratorProbe()
if not _probe.has_gpu:
    pytest.skip(f"no NVIDIA GPU here ({_probe.unavailable_reason or 'NVML reports 0 devices'})",
                allow_module_level=True)  # fmt: skip


@pytest.fixture(scope="module")
def gpu_ray():
    import ray

    if ray.is_initialized():
        pytest.skip("needs its own Ray; this session is connected to another cluster")
    import agentic_ray

    tmp = tempfile.mkdtemp(prefix="agr-gpu-")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=tmp, labels={"zone": "gpu-zone"})
    agentic_ray.init(wait_s=60)
    yield agentic_ray
    agentic_ray.shutdown(stop_control_plane=True)
    ray.shutdown()


def test_agent_reports_the_real_gpu_through_nvml(gpu_ray):
    from tests.integration._control_plane import wait_for

    def agent_state():
        agents = [a for zone in gpu_ray.status()["zones"].values() for a in zone]
        return agents and agents[0].get("accelerator_state")

    state = wait_for(agent_state, timeout=30, what="agent accelerator state")
    assert state["kind"] == "gpu" and state["nvml"] is None, state
    gpu = state["gpus"][0]
    assert "NVIDIA" in gpu["name"] and gpu["mem_total_mb"] >= 1024, gpu
    assert gpu["mem_total_mb"] == pytest.approx(_probe.sample()["gpus"][0]["mem_total_mb"])
    print("agent accelerator state:", state)


def test_gpu_node_is_placed_as_gpu_and_gpu_tasks_get_the_device(gpu_ray):
    import ray

    view = gpu_ray.cluster_view()
    assert [n["accelerator"] for n in view["nodes"]] == ["gpu"], view

    @gpu_ray.task(qos="critical", budget_ms=30_000, accelerator="gpu", num_gpus=1)
    def on_gpu():
        return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

    ids, visible = ray.get(on_gpu.remote(), timeout=60)
    assert len(ids) == 1 and visible not in (None, ""), (ids, visible)

    @gpu_ray.task(qos="critical", budget_ms=30_000, accelerator="cpu")
    def on_cpu():
        return 1

    from agentic_ray.errors import NoEligibleNode

    with pytest.raises(NoEligibleNode):
        on_cpu.remote()  # the only node is a GPU node
