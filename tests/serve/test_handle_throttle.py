"""Client-side throttling of handle calls on real Serve: while the router refuses most of a class,
``serve.call`` refuses that share in the caller (``Overloaded``, reason ``throttled``), never a class that
is never shed; ``AGENTIC_CALL_THROTTLE=0`` turns it off. And the demo's replay calls through ``call``."""

from __future__ import annotations

import asyncio
import collections

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

POLICY = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: throttle-test}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 5000, shedding: never}
  standard: {priority: 1, budget_ms: 200, shedding: when_overloaded}
entitlements: {anonymous: {allowed_classes: [critical, standard]}}
"""


@pytest.fixture(scope="module")
def slow_app(ray_cluster, tmp_path_factory):
    from ray import serve

    import agentic_ray.serve as ars

    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)

    @ars.deployment(policy=str(path), slots=1, num_replicas=1, ray_actor_options={"num_cpus": 0})
    class Slow:
        async def __call__(self, payload: object = None) -> str:
            await asyncio.sleep(0.1)  # 10 calls/s: far below what the test offers
            return "ok"

    serve.start(proxy_location="Disabled")
    handle = serve.run(Slow.bind(), name="throttle-test", route_prefix=None)
    try:
        yield handle
    finally:
        serve.delete("throttle-test")


async def _burst(handle, qos: str, n: int, gap_s: float) -> collections.Counter:
    """``n`` calls of ``qos``, one every ``gap_s``; how each ended (``ok`` or the error's reason)."""
    import agentic_ray.serve as ars

    async def one() -> str:
        try:
            await ars.call(handle, qos=qos)
            return "ok"
        except Exception as exc:
            return getattr(exc, "reason", type(exc).__name__)

    tasks = []
    for _ in range(n):
        tasks.append(asyncio.ensure_future(one()))
        await asyncio.sleep(gap_s)
    return collections.Counter(await asyncio.gather(*tasks))


def test_a_class_the_router_refuses_is_refused_in_the_caller_and_a_never_shed_one_is_not(slow_app):
    from agentic_ray.serve import _handle_throttle

    async def go():
        first = await _burst(slow_app, "standard", 60, 0.005)  # the router refuses most of these
        critical, second = await asyncio.gather(
            _burst(slow_app, "critical", 10, 0.02), _burst(slow_app, "standard", 60, 0.005)
        )
        return first, second, critical

    first, second, critical = asyncio.run(go())
    assert first["ok"] < 30, first  # the router refused most of the first burst itself
    assert second["throttled"] > 0, second  # then the caller refused a share of the class at once
    assert "throttled" not in critical and critical["ok"] == 10, critical
    stats = _handle_throttle.stats()["throttle-test/Slow"]
    assert stats["standard"]["refused_total"] == first["throttled"] + second["throttled"]
    assert stats.get("critical", {}).get("refused_total", 0) == 0


def test_the_throttle_turns_off_in_the_callers_environment(slow_app, monkeypatch):
    from agentic_ray.serve import _handle_throttle

    asyncio.run(asyncio.sleep(2.5))  # the previous test's window slides out
    monkeypatch.setenv(_handle_throttle.ENV, "0")
    before = _handle_throttle.stats().get("throttle-test/Slow", {}).get("standard", {}).get("refused_total", 0)
    outcomes = asyncio.run(_burst(slow_app, "standard", 120, 0.005))
    assert "throttled" not in outcomes and outcomes["ok"] < 60, outcomes
    after = _handle_throttle.stats()["throttle-test/Slow"]["standard"]["refused_total"]
    assert after == before


def test_the_demo_replay_calls_within_a_budget_scope_so_float_noise_is_not_a_bigger_budget(slow_app):
    """A workload's budget is its class's up to float rounding (deadline - arrival): asked as ``budget_ms``
    it exceeds the class's and is refused (every critical request of serve_live's agreement run failed
    with ``EntitlementError``); the replay's budget scope only ever shortens the class's deadline."""
    import agentic_ray.serve as ars
    from agentic_ray.demo._live import _send
    from agentic_ray.errors import EntitlementError

    noisy = 5000.0 * (1 + 1e-12)
    with pytest.raises(EntitlementError):
        asyncio.run(ars.call(slow_app, qos="critical", budget_ms=noisy))
    assert asyncio.run(_send("agentic", slow_app, None, "critical", noisy)) == "ok"
