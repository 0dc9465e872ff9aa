"""The calling process's door for handle calls: a few calls per replica slot in Serve's path, the rest
waiting in priority order, fresh ones first once a queue stands (pure asyncio, no Ray)."""

from __future__ import annotations

import asyncio
import time

import pytest


@pytest.fixture
def door(monkeypatch):
    from agentic_ray.serve import _call_door

    monkeypatch.setattr(_call_door, "MIN_INFLIGHT", 1)
    monkeypatch.setattr(_call_door, "INTERVAL_S", 60.0)  # calls that may be shed wait (the default: they do not)
    monkeypatch.setenv(_call_door.ENV, "1")
    return _call_door


class _Router:
    door_slots = 1


def _classes():
    from agentic_ray.policies import default_policy

    return default_policy().classes


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_calls_past_the_limit_wait_and_go_in_by_priority(door):
    classes = _classes()

    async def go():
        deadline = time.time() + 10.0
        first = await door.enter("dep", _Router(), classes["standard"], deadline)
        assert first is not None
        shed = asyncio.create_task(door.enter("dep", _Router(), classes["sheddable"], deadline))
        std = asyncio.create_task(door.enter("dep", _Router(), classes["standard"], deadline))
        await _settle()
        assert not shed.done() and not std.done()  # both wait: the standard call inside counts for them
        crit = await door.enter("dep", _Router(), classes["critical"], deadline)  # in at once: less urgent inside
        assert door.stats()["/dep"] == {"limit": 1, "inflight": 2, "waiting": 2, "expired_total": 0, "full_total": 0,
                                        "delayed_total": 0}  # fmt: skip
        crit.done(True)
        await _settle()
        assert not std.done() and not shed.done()  # the standard call inside still counts for both
        first.done(True)
        await _settle()
        assert std.done() and not shed.done()  # the more urgent waiter first
        std.result().done(True)
        await _settle()
        assert shed.done()
        shed.result().done(True)
        assert door.stats()["/dep"]["inflight"] == 0

    asyncio.run(go())


def test_a_waiter_without_the_time_a_call_takes_gives_up_and_a_full_queue_refuses_the_least_urgent(door, monkeypatch):
    from agentic_ray.errors import BudgetExhausted, Overloaded

    monkeypatch.setattr(door, "WAITING_PER_INFLIGHT", 1)
    classes = _classes()

    async def go():
        inside = await door.enter("dep", _Router(), classes["critical"], time.time() + 10.0)
        inside.done(True)  # a call that took ~0 s: path_s learnt
        inside = await door.enter("dep", _Router(), classes["critical"], time.time() + 10.0)
        door._doors[asyncio.get_running_loop()]["dep"].path_s = 0.05
        at = time.time()
        with pytest.raises(BudgetExhausted) as late:  # 60 ms left, calls take 50: gives up after ~10 ms
            await door.enter("dep", _Router(), classes["standard"], at + 0.06)
        assert late.value.reason == "deadline_exceeded" and time.time() - at < 0.05
        shed = asyncio.create_task(door.enter("dep", _Router(), classes["sheddable"], time.time() + 10.0))
        await _settle()
        std = asyncio.create_task(door.enter("dep", _Router(), classes["standard"], time.time() + 10.0))
        with pytest.raises(Overloaded) as full:  # the queue holds one: the more urgent waiter displaces it
            await asyncio.wait_for(shed, 5)
        assert full.value.reason == "caller_queue_full"
        crit = asyncio.create_task(door.enter("dep", _Router(), classes["critical"], time.time() + 10.0))
        with pytest.raises(Overloaded):
            await asyncio.wait_for(std, 5)  # displaced by the critical waiter
        # the queue is full of critical work: a class that is never shed goes in past the limit, not refused
        past = await asyncio.wait_for(door.enter("dep", _Router(), classes["critical"], time.time() + 10.0), 5)
        assert past is not None and not crit.done()
        assert door.stats()["/dep"] == {"limit": 1, "inflight": 2, "waiting": 1, "expired_total": 1, "full_total": 2,
                                        "delayed_total": 0}  # fmt: skip
        inside.done(True)
        past.done(True)
        (await asyncio.wait_for(crit, 5)).done(True)
        assert door.stats()["/dep"]["inflight"] == 0

    asyncio.run(go())


def test_no_limit_when_off_or_before_the_router_knows_its_replicas(door, monkeypatch):
    classes = _classes()

    class NoReplicas:
        door_slots = 0

    async def go():
        assert await door.enter("dep", NoReplicas(), classes["standard"], time.time() + 1.0) is None
        monkeypatch.setenv(door.ENV, "0")
        assert await door.enter("dep", _Router(), classes["standard"], time.time() + 1.0) is None

    asyncio.run(go())


def test_a_standing_queue_refuses_a_call_that_may_be_shed_after_milliseconds_not_its_budget(door, monkeypatch):
    """Controlled delay (Maurer's adaptive LIFO article, after CoDel): a waiter that may be shed waits
    ``INTERVAL_S`` while the queue was empty within it, ``TARGET_S`` once it stood longer; a call that is
    never shed waits on."""
    from agentic_ray.errors import Overloaded

    monkeypatch.setattr(door, "INTERVAL_S", 0.05)
    classes = _classes()

    async def go():
        inside = await door.enter("dep", _Router(), classes["critical"], time.time() + 10.0)
        at = time.time()
        with pytest.raises(Overloaded) as burst:  # the queue was empty: it may wait the interval
            await door.enter("dep", _Router(), classes["standard"], at + 10.0)
        assert burst.value.reason == "caller_queue_delay" and 0.04 <= time.time() - at < 1.0
        crit = asyncio.create_task(door.enter("dep", _Router(), classes["critical"], time.time() + 10.0))
        await asyncio.sleep(0.08)  # the queue stands (the critical call waits) for longer than the interval
        at = time.time()
        with pytest.raises(Overloaded) as standing:
            await door.enter("dep", _Router(), classes["sheddable"], at + 10.0)
        assert standing.value.reason == "caller_queue_delay" and time.time() - at < 0.04
        assert not crit.done() and door.stats()["/dep"]["delayed_total"] == 2
        inside.done(True)
        (await asyncio.wait_for(crit, 5)).done(True)

    asyncio.run(go())


def test_a_call_let_in_after_waiting_is_put_to_the_routers_early_refusal_again():
    """``serve.call`` asks ``recheck`` for a call the door held: the room it was admitted on may be gone."""
    from agentic_ray.errors import Overloaded
    from agentic_ray.policies import default_policy
    from agentic_ray.serve import _handle_throttle as throttle

    class Key:
        app_name, name = "app", "recheck"

    class Router:
        policy = default_policy()
        full = False

        def refuse_early(self, classification, meta, now, *, pressure):
            if self.full and classification.qos.name == "sheddable":
                return Overloaded("no room", reason="class_cap")
            return None

    class Handle:
        deployment_id = Key()

    router = Router()
    throttle.register(Handle.deployment_id, router)
    meta = {"qos": "sheddable"}
    ticket = throttle.admit(Handle(), meta, 100.0)
    assert ticket is not None and throttle.recheck(Handle(), meta, 100.1, ticket) is None  # room: it goes
    router.full = True
    refused = throttle.recheck(Handle(), meta, 100.2, ticket)
    assert isinstance(refused, Overloaded) and refused.reason == "class_cap"
    assert throttle.stats(100.2)["app/recheck"]["sheddable"]["refused_early_total"] == 1
    assert throttle.recheck(Handle(), meta, 100.3, None) is None  # no ticket: the throttle did not classify it


def test_by_default_a_call_that_may_be_shed_is_refused_at_once_and_a_never_shed_one_waits(monkeypatch):
    from agentic_ray.errors import Overloaded
    from agentic_ray.serve import _call_door as door

    monkeypatch.setattr(door, "MIN_INFLIGHT", 1)
    monkeypatch.setenv(door.ENV, "1")
    assert door.INTERVAL_S == 0.0  # unless AGENTIC_CALL_QUEUE_INTERVAL_MS was set for the test run
    classes = _classes()

    async def go():
        inside = await door.enter("dep2", _Router(), classes["critical"], time.time() + 10.0)
        at = time.time()
        with pytest.raises(Overloaded) as refused:
            await door.enter("dep2", _Router(), classes["standard"], at + 10.0)
        assert refused.value.reason == "caller_queue_delay" and "refused at once" in str(refused.value)
        assert time.time() - at < 0.05
        crit = asyncio.create_task(door.enter("dep2", _Router(), classes["critical"], time.time() + 10.0))
        await _settle()
        assert not crit.done()  # never shed: it waits for room
        inside.done(True)
        (await asyncio.wait_for(crit, 5)).done(True)

    asyncio.run(go())
