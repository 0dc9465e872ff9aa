"""``agentic_ray.serve.call`` on real Serve: hedged requests go to another replica and win when the first
copy is slow; a hedge with no other replica is refused and the first copy still answers; the caller's
budget scope reaches the replica's gate; a call with no answer past its deadline raises
``deadline_exceeded`` and its work on the replica is cancelled."""

from __future__ import annotations

import asyncio
import time

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

POLICY = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: hedge-test}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 10000, shedding: never, hedge_after_ms: 300}
  standard: {priority: 1, budget_ms: 10000, shedding: when_overloaded}
entitlements: {anonymous: {allowed_classes: [critical, standard]}}
admission:
  retry: {ratio: 1.0, min_per_s: 10}
"""

SLOW_S = 3.0


@pytest.fixture(scope="module")
def hedge_app(ray_cluster, tmp_path_factory):
    import ray
    from ray import serve

    import agentic_ray.serve as ars

    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)

    @ray.remote(num_cpus=0)
    class FirstCall:
        """The first call a replica claims is slow; records which replica that was."""

        def __init__(self) -> None:
            self.slow: str | None = None
            self.calls: list[str] = []
            self.cancels: list[str] = []

        def claim(self, replica: str) -> bool:
            self.calls.append(replica)
            if self.slow is None:
                self.slow = replica
                return True
            return False

        def cancelled(self, replica: str) -> None:
            self.cancels.append(replica)

        def reset(self) -> None:
            self.slow, self.calls, self.cancels = None, [], []

        def cancelled_calls(self) -> list:
            return list(self.cancels)

        def state(self) -> tuple:
            return self.slow, list(self.calls)

    first = FirstCall.options(name="hedge-first-call", namespace="hedge-test").remote()

    def make(name: str, replicas: int):
        @ars.deployment(policy=str(path), slots=1, num_replicas=replicas, name=name,
                        ray_actor_options={"num_cpus": 0})  # fmt: skip
        class Model:
            async def __call__(self, sleep_s: float = 0.0) -> str:
                me = serve.get_replica_context().replica_id.unique_id
                counter = ray.get_actor("hedge-first-call", namespace="hedge-test")
                try:
                    if await counter.claim.remote(me):
                        await asyncio.sleep(SLOW_S)
                    await asyncio.sleep(sleep_s)
                except asyncio.CancelledError:
                    counter.cancelled.remote(me)
                    raise
                return me

        return Model

    serve.start(proxy_location="Disabled")
    two = serve.run(make("Two", 2).bind(), name="hedge-two", route_prefix=None)
    one = serve.run(make("One", 1).bind(), name="hedge-one", route_prefix=None)
    try:
        yield {"two": two, "one": one, "first": first}
    finally:
        serve.delete("hedge-two")
        serve.delete("hedge-one")
        ray.kill(first)


def test_a_hedge_goes_to_another_replica_and_wins(hedge_app):
    import ray

    import agentic_ray.serve as ars

    ray.get(hedge_app["first"].reset.remote(), timeout=30)

    async def go():
        t0 = time.monotonic()
        answer = await ars.call(hedge_app["two"], qos="critical", hedge_after_ms=300)
        return answer, time.monotonic() - t0

    answer, elapsed = asyncio.run(go())
    slow, calls = ray.get(hedge_app["first"].state.remote(), timeout=30)
    assert len(calls) == 2 and len(set(calls)) == 2, calls  # primary and hedge on different replicas
    assert answer != slow and answer in calls
    assert elapsed < SLOW_S, elapsed  # the hedge's answer, not the slow first copy's


def test_without_another_replica_the_hedge_is_refused_and_the_first_copy_answers(hedge_app):
    import ray

    import agentic_ray.serve as ars

    ray.get(hedge_app["first"].reset.remote(), timeout=30)

    async def go():
        return await ars.call(hedge_app["one"], qos="critical", hedge_after_ms=200)

    answer = asyncio.run(go())
    slow, calls = ray.get(hedge_app["first"].state.remote(), timeout=30)
    assert calls == [slow] and answer == slow  # only the first copy ran


def test_the_callers_budget_scope_reaches_the_replica_gate(hedge_app):
    import ray

    import agentic_ray
    import agentic_ray.serve as ars
    from agentic_ray.errors import BudgetExhausted, Overloaded

    ray.get(hedge_app["first"].reset.remote(), timeout=30)

    async def go():
        busy = asyncio.ensure_future(ars.call(hedge_app["one"], qos="standard"))  # holds the only slot 3 s
        await asyncio.sleep(0.5)
        # The class would allow 10 s; the scope leaves 300 ms. On a saturated host the router may refuse
        # the call first for host pressure (``host_saturated``, before any gate): ask again, up to 2 s.
        for _ in range(8):
            try:
                with agentic_ray.budget(300), pytest.raises(BudgetExhausted) as info:
                    await ars.call(hedge_app["one"], qos="standard")
                break
            except Overloaded as exc:
                assert exc.reason == "host_saturated", exc
                await asyncio.sleep(exc.retry_after_s or 0.25)
        await busy
        return info.value

    error = asyncio.run(go())
    assert error.reason in ("deadline_passed_in_queue", "cannot_meet_deadline", "deadline_passed"), error
    slow, calls = ray.get(hedge_app["first"].state.remote(), timeout=30)
    assert calls == [slow]  # the scoped call never ran


def test_a_call_with_no_answer_past_its_deadline_raises_and_its_replica_work_is_cancelled(hedge_app):
    import ray

    import agentic_ray.serve as ars
    from agentic_ray.errors import BudgetExhausted
    from agentic_ray.serve import _call

    ray.get(hedge_app["first"].reset.remote(), timeout=30)

    async def go():
        t0 = time.monotonic()
        with pytest.raises(BudgetExhausted) as info:  # never shed: it runs, and would answer after SLOW_S
            await ars.call(hedge_app["one"], qos="critical", budget_ms=300)
        return info.value, time.monotonic() - t0

    error, elapsed = asyncio.run(go())
    assert error.reason == "deadline_exceeded", error
    assert 0.3 + _call.DEADLINE_SLACK_S <= elapsed < SLOW_S, elapsed
    slow, calls = ray.get(hedge_app["first"].state.remote(), timeout=30)
    assert calls == [slow]
    end = time.monotonic() + 15
    while ray.get(hedge_app["first"].cancelled_calls.remote(), timeout=30) != [slow]:  # Serve's work ended too
        assert time.monotonic() < end, "the replica's work for the expired call was not cancelled"
        time.sleep(0.1)


def test_the_call_deadline_slack_is_on_by_default():
    from agentic_ray.serve import _call
    from agentic_ray.serve._meta import env_number

    assert _call.DEFAULT_SLACK_S == 0.25 and env_number(None, _call.DEFAULT_SLACK_S) == 0.25
    assert env_number("1.5", 0.25) == 1.5 and env_number("0", 0.25) == 0.0
    assert env_number("inf", 0.25) == float("inf")  # off
    assert env_number("-1", 0.25) == env_number("soon", 0.25) == 0.25


def test_hedge_after_ms_must_be_positive(hedge_app):
    import agentic_ray.serve as ars

    with pytest.raises(ValueError, match="hedge_after_ms"):
        asyncio.run(ars.call(hedge_app["one"], hedge_after_ms=0))
