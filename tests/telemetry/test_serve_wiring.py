"""The telemetry hook wired into real Serve through the deployment's hook seams (no code change)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

HOOK = "agentic_ray.telemetry.hotpath:process_hook"


def _by_where_outcome(totals: dict) -> dict:
    out: dict = {}
    for (where, outcome, _qos, _reason), n in totals.items():
        out[(where, outcome)] = out.get((where, outcome), 0) + n
    return out


def test_router_and_gate_decisions_reach_the_hook(ray_cluster):
    from ray import serve

    import agentic_ray.serve as ars
    from agentic_ray.telemetry.hotpath import process_hook

    @ars.deployment(decision_hook=HOOK, router_hook=HOOK, num_replicas=1, ray_actor_options={"num_cpus": 0})
    class Echo:
        async def work(self, x: int) -> int:
            return x

        @ars.ungated
        def telemetry(self) -> list:
            hook = process_hook()
            hook.flush()
            return [[list(k), n] for k, n in hook.totals.items()]

    serve.start(proxy_location="Disabled")
    handle = serve.run(Echo.bind(), name="telemetry-wiring", route_prefix=None)
    try:
        driver_hook = process_hook()
        driver_hook.flush()
        before = _by_where_outcome(driver_hook.totals)
        assert [handle.work.remote(i).result(timeout_s=30) for i in range(5)] == list(range(5))
        driver_hook.flush()
        after = _by_where_outcome(driver_hook.totals)
        assert after.get(("router", "route"), 0) - before.get(("router", "route"), 0) == 5
        replica = _by_where_outcome({tuple(k): n for k, n in handle.telemetry.remote().result(timeout_s=30)})
        assert replica.get(("gate", "start"), 0) == 5
    finally:
        serve.delete("telemetry-wiring")
        serve.shutdown()
