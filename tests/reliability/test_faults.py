"""Smaller versions of the chaos suite's faults (``benchmarks/chaos.py``) on the session cluster: every
request ends with a result or a typed error within its deadline plus a grace; none is lost."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import ray

from tests.integration._control_plane import FRAUD_POLICY, wait_for

pytestmark = pytest.mark.ray

GRACE_S = 5.0  # a shared two-core machine: generous


def _deploy(name: str, replicas: int, sleep_s: float):
    from ray import serve

    import agentic_ray

    @agentic_ray.deployment(policy=str(FRAUD_POLICY), slots=2, num_replicas=replicas,
                            ray_actor_options={"num_cpus": 0})  # fmt: skip
    class Slow:
        async def __call__(self, x=None):
            await asyncio.sleep(sleep_s)
            return "ok"

    return serve.run(Slow.bind(), name=name, route_prefix=None)


def _assert_accounted(ledger, now: float) -> dict:
    tally = ledger.tally(now)
    assert tally.lost == 0 and tally.hung == 0 and tally.untyped_error == 0, tally
    return tally.to_dict()


def test_killed_replica_ends_in_flight_calls_typed_and_is_replaced(agentic):
    from ray import serve

    from agentic_ray.testing import chaos
    from agentic_ray.testing.ledger import Ledger

    handle = _deploy("chaos-replica", 2, 1.5)
    try:
        ledger = Ledger(GRACE_S)

        async def run():
            loop = asyncio.get_running_loop()
            load = chaos.drive_handle(handle, ledger, rate_rps=6, duration_s=3.0, seed=1,
                                      budgets_ms={"standard": 20_000.0}, mix={"standard": 1.0})  # fmt: skip
            await asyncio.gather(load, _later(loop, 1.0, chaos.kill_replica, "chaos-replica", "Slow"))

        asyncio.run(run())
        counts = _assert_accounted(ledger, time.time())
        assert counts["ok"] > 0
        wait_for(lambda: len(chaos.replica_actors("chaos-replica", "Slow")) == 2, timeout=120, what="replacement")
        wait_for(lambda: serve.status().applications["chaos-replica"].deployments["Slow"].replica_states.get(
            "RUNNING") == 2, timeout=120, what="two running replicas")  # fmt: skip
    finally:
        serve.delete("chaos-replica")


async def _later(loop, delay: float, fn, *args):
    await asyncio.sleep(delay)
    return await asyncio.to_thread(fn, *args)


def _variant(tmp_path, version: str, standard_ms: int) -> str:
    text = FRAUD_POLICY.read_text()
    assert 'version: "1"' in text and "    budget_ms: 800\n" in text
    text = text.replace('version: "1"', f'version: "{version}"').replace(
        "    budget_ms: 800\n", f"    budget_ms: {standard_ms}\n", 1
    )
    path = tmp_path / f"{version}.yaml"
    path.write_text(text)
    return str(path)


def test_coordinator_killed_twice_during_rollout_no_member_goes_back(agentic, tmp_path):
    from agentic_ray.testing import chaos

    handle = _deploy("chaos-rollout", 1, 0.01)
    watch = chaos.VersionWatch()
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            watch.poll(timeout_s=3.0)
            time.sleep(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    answered = []
    try:
        for version, ms in (("chaos-2", 900), ("chaos-3", 1000)):
            path = _variant(tmp_path, version, ms)
            rollout = threading.Thread(target=lambda p=path: agentic.apply_policy(p, wait=True), daemon=True)
            rollout.start()
            time.sleep(0.05)
            chaos.kill_global_coordinator()
            answered.append(handle.remote(qos="standard", budget_ms=60_000).result(timeout_s=60))
            rollout.join(timeout=120)
        wait_for(lambda: ray.get(chaos.global_coordinator().policy.remote(), timeout=5)["version"] == "chaos-3",
                 timeout=60, what="v3 active after the restarts")  # fmt: skip
        time.sleep(2.0)  # members catch up
    finally:
        stop.set()
        poller.join(timeout=10)
        from ray import serve

        serve.delete("chaos-rollout")
    watch.poll()
    assert answered == ["ok", "ok"]  # the data plane kept answering
    assert watch.polls > 0 and watch.highest
    assert watch.regressions == []


def test_removed_node_tasks_end_in_zone_or_typed(agentic, ray_cluster):
    import agentic_ray
    from agentic_ray.testing import chaos
    from agentic_ray.testing.ledger import Ledger

    node = ray_cluster.add_node(num_cpus=2, labels={"zone": "eu-west", "accelerator": "cpu"})
    try:
        ray_cluster.wait_for_nodes()
        wait_for(lambda: chaos.agents_info().get(node.node_id, {}).get("reported"), timeout=60, what="new agent")
        time.sleep(1.0)

        @agentic_ray.task(num_cpus=0, tenant="bank-eu")
        def where(sleep_s):
            time.sleep(sleep_s)
            return ray.get_runtime_context().get_node_labels().get("zone")

        ledger = Ledger(GRACE_S)

        def check(zone):
            return None if str(zone).startswith("eu-") else f"residency_breach:{zone}"

        async def run():
            loop = asyncio.get_running_loop()
            load = chaos.drive_tasks(where, ledger, rate_rps=6, duration_s=4.0, args=(1.0,), seed=3, check=check,
                                     budgets_ms={"sheddable": 30_000.0}, mix={"sheddable": 1.0})  # fmt: skip
            await asyncio.gather(load, _later(loop, 2.0, ray_cluster.remove_node, node, False))

        asyncio.run(run())
        node = None
        _assert_accounted(ledger, time.time())
    finally:
        if node is not None:
            ray_cluster.remove_node(node)
