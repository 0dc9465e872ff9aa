"""An agentic deployment on a cluster without a control plane: it serves on its deploy-time policy,
nothing registers, and ``agentic_ray.status()`` says there is no control plane."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def test_a_deployment_works_without_a_control_plane_and_status_says_so(ray_cluster):
    import ray
    from ray import serve

    import agentic_ray
    import agentic_ray.serve as ars
    from agentic_ray.actors._common import GLOBAL_NAME, NAMESPACE, read_serve_targets

    with pytest.raises(ValueError):  # no control plane on this cluster
        ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)

    @ars.deployment(slots=2, num_replicas=1, ray_actor_options={"num_cpus": 0})
    class Echo:
        async def __call__(self, x):
            return x

    handle = serve.run(Echo.bind(), name="no-plane", route_prefix=None)
    try:
        assert [handle.remote(i, qos="standard").result(timeout_s=60) for i in range(5)] == list(range(5))
        status = agentic_ray.status()
        assert status["control_plane"] is False
        assert status["serve"]["control_plane"] is False and "deploy-time" in status["serve"]["detail"]
        from agentic_ray.serve._plane import current_plane

        plane = current_plane()  # the driver's router joined its process's plane, which found nothing
        assert plane is not None and not plane.connected and plane.members
        time.sleep(0.5)
        assert read_serve_targets() == {}
        assert handle.remote("still", qos="critical").result(timeout_s=60) == "still"
        with pytest.raises(ValueError):  # looking did not create one
            ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)
    finally:
        serve.delete("no-plane")
        agentic_ray.shutdown(stop_control_plane=False)  # this process's threads (the serve plane's too)
