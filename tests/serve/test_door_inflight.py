"""The proxy door's in-flight limit: requests beyond it wait at the door, most urgent first (pure ASGI)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest


@pytest.fixture
def door_registry(monkeypatch):
    """The door module's registries emptied after the test; limits as small as the slots ask for."""
    from agentic_ray.serve import _door

    monkeypatch.setattr(_door, "MIN_INFLIGHT", 1)
    yield
    _door._routes.clear()
    _door._doors.clear()


class _App:
    """An ASGI app that holds each request until ``free`` is set for it, and records the order of entry."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.free: dict[str, asyncio.Event] = {}

    async def __call__(self, scope, receive, send):
        name = dict(scope["headers"])[b"x-name"].decode()
        self.entered.append(name)
        await self.free.setdefault(name, asyncio.Event()).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def release(self, name: str) -> None:
        self.free.setdefault(name, asyncio.Event()).set()


class _Router:
    """A stand-in for the route's agentic router: what the door reads of it (policy, identity rules, the
    replicas' slots); tests add the router methods they exercise in a subclass."""

    def __init__(self, slots: int = 1, route_policy=None) -> None:
        from agentic_ray.policies import default_policy
        from agentic_ray.serve._http_auth import HttpAuth

        self.policy = default_policy() if route_policy is None else route_policy
        self.http_auth = HttpAuth.from_config(None)
        self.door_slots = slots


def _door_for(app, slots: int = 1, route_policy=None, router: _Router | None = None, **options):
    """A door in front of ``app`` for the route ``/infer``, whose router is ``router`` (default: a plain
    ``_Router`` of ``slots`` slots and ``route_policy``)."""
    from agentic_ray.serve import _door

    _door.seen({"root_path": "/infer"}, router if router is not None else _Router(slots, route_policy))
    return _door.ProxyDoor(app, **options)


async def _request(door, name: str, qos: str, budget_ms: float | None = None) -> tuple[int, dict]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    headers = [(b"x-qos", qos.encode()), (b"x-name", name.encode())]
    if budget_ms is not None:
        headers.append((b"x-budget-ms", str(budget_ms).encode()))
    await door({"type": "http", "path": "/infer", "root_path": "", "headers": headers}, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body or b"{}")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _one_inside(name: str, qos: str):
    """An app, a door with a limit of one in front of it, and a request of ``qos`` inside (its task)."""
    app = _App()
    door = _door_for(app, slots=1, inflight_per_slot=1.0)
    task = asyncio.create_task(_request(door, name, qos))
    await _settle()
    return app, door, task


def test_requests_past_the_limit_wait_and_the_more_urgent_goes_in_first(door_registry):
    from agentic_ray.serve import _door

    async def go():
        app, door, first = await _one_inside("first", "sheddable")
        waiters = [asyncio.create_task(_request(door, n, q)) for n, q in
                   (("shed", "sheddable"), ("crit", "critical"), ("std", "standard"))]  # fmt: skip
        await _settle()
        # critical goes in at once (a less urgent request inside does not hold it back), counted; the
        # others wait at the door, before Serve's path
        assert app.entered == ["first", "crit"]
        assert _door.door_stats()["/infer"]["*"].items() >= {"limit": 1, "inflight": 2, "waiting": 2}.items()
        for name in ("first", "crit", "std", "shed"):
            app.release(name)
            await _settle()
        results = await asyncio.wait_for(asyncio.gather(first, *waiters), 10)
        assert app.entered == ["first", "crit", "std", "shed"]
        assert [s for s, _ in results] == [200, 200, 200, 200]
        stats = _door.door_stats()["/infer"]
        assert stats["*"].items() >= {"limit": 1, "inflight": 0, "waiting": 0}.items()
        # the throttle judges the deployment by what went in at once, not by requests held at the door
        assert stats["sheddable"]["requests"] == 1 and stats["standard"].get("requests", 0) == 0

    asyncio.run(go())


def test_a_waiter_past_its_deadline_gets_504_and_a_full_queue_refuses_the_least_urgent(monkeypatch, door_registry):
    from agentic_ray.serve import _door

    monkeypatch.setattr(_door, "WAITING_PER_INFLIGHT", 1)

    async def go():
        app, door, first = await _one_inside("first", "critical")
        late = await asyncio.wait_for(_request(door, "late", "standard", budget_ms=30), 10)
        assert late[0] == 504 and late[1]["error"] == "deadline_exceeded" and "door" in late[1]["detail"]
        shed = asyncio.create_task(_request(door, "shed", "sheddable"))
        await _settle()
        std = asyncio.create_task(_request(door, "std", "standard"))  # displaces the sheddable waiter
        status, body = await asyncio.wait_for(shed, 10)
        assert status == 429 and body["error"] == "door_queue_full" and body["qos"] == "sheddable"
        refused = await asyncio.wait_for(_request(door, "shed2", "sheddable"), 10)  # not more urgent: refused
        assert refused[0] == 429 and refused[1]["error"] == "door_queue_full"
        crit = asyncio.create_task(_request(door, "crit", "critical"))  # waits behind critical, displaces std
        status, body = await asyncio.wait_for(std, 10)
        assert status == 429 and body["error"] == "door_queue_full" and body["qos"] == "standard"
        # the queue is full of critical work: a class that is never shed goes in past the limit, not refused
        crit2 = asyncio.create_task(_request(door, "crit2", "critical"))
        await _settle()
        assert app.entered == ["first", "crit2"] and _door.door_stats()["/infer"]["*"]["inflight"] == 2
        for name in ("first", "crit", "crit2"):
            app.release(name)
        assert [(await asyncio.wait_for(t, 10))[0] for t in (first, crit, crit2)] == [200, 200, 200]
        assert app.entered == ["first", "crit2", "crit"]
        stats = _door.door_stats()["/infer"]
        assert stats["standard"]["timed_out_total"] == 1 and stats["standard"]["door_full_total"] == 1
        assert stats["sheddable"]["door_full_total"] == 2
        assert stats["critical"]["door_full_total"] == 0 and stats["*"]["inflight"] == 0

    asyncio.run(go())


def test_a_client_that_leaves_while_waiting_or_inside_frees_its_place(door_registry):
    from agentic_ray.serve import _door

    async def go():
        app, door, inside = await _one_inside("inside", "standard")
        waiting = asyncio.create_task(_request(door, "waiting", "standard"))
        await _settle()
        waiting.cancel()  # the client went away at the door
        inside.cancel()  # and one inside Serve's path
        await asyncio.gather(waiting, inside, return_exceptions=True)
        assert _door.door_stats()["/infer"]["*"].items() >= {"limit": 1, "inflight": 0, "waiting": 0}.items()
        app.release("next")
        assert await asyncio.wait_for(_request(door, "next", "sheddable"), 10) == (200, {})

    asyncio.run(go())


def test_the_limit_follows_the_routes_slots_and_is_off_at_zero(monkeypatch, door_registry):
    from agentic_ray.serve import _door

    async def go():
        app = _App()
        door = _door_for(app, slots=3, inflight_per_slot=2.0, adaptive=False)  # the static limit
        app.release("a")
        assert await _request(door, "a", "standard") == (200, {})
        assert _door.door_stats()["/infer"]["*"]["limit"] == 6
        monkeypatch.setattr(_door, "MIN_INFLIGHT", 16)  # the default least limit
        assert await _request(door, "a", "standard") == (200, {})
        assert _door.door_stats()["/infer"]["*"]["limit"] == 16
        plain = _door.ProxyDoor(app, inflight_per_slot=0.0)
        assert await _request(plain, "a", "standard") == (200, {}) and plain.limits == {}

    asyncio.run(go())
    assert _door._slack("0", 2.0) == 0.0 and _door._slack(None, 2.0) == 2.0


def test_a_waiter_without_the_time_an_answer_takes_is_answered_504_at_the_door(door_registry):
    from agentic_ray.serve import _door

    async def go():
        app = _App()
        door = _door_for(app, slots=1, inflight_per_slot=1.0, forecast=False)  # the backstop, not the forecast
        app.release("quick")
        assert await _request(door, "quick", "standard") == (200, {})
        assert 0.0 < door.path_s["/infer"] < 1.0  # learnt from the answer
        first = asyncio.create_task(_request(door, "first", "standard"))
        await _settle()
        door.path_s["/infer"] = 0.05
        # 60 ms of budget and answers take 50: it gives up at 10 ms, not at its deadline
        loop = asyncio.get_running_loop()
        at = loop.time()
        status, body = await asyncio.wait_for(_request(door, "short", "standard", budget_ms=60), 10)
        assert (status, body["error"]) == (504, "deadline_exceeded") and loop.time() - at < 0.05
        # let in only after answers started taking longer than it has left: 504, and its place goes on
        door.path_s["/infer"] = 0.0
        late = asyncio.create_task(_request(door, "late", "standard", budget_ms=100))
        after = asyncio.create_task(_request(door, "after", "sheddable"))
        await _settle()
        door.path_s["/infer"] = 0.5
        await asyncio.sleep(0.02)
        app.release("first")
        app.release("after")
        assert (await asyncio.wait_for(late, 10))[0] == 504
        assert await asyncio.wait_for(after, 10) == (200, {}) and await first == (200, {})
        assert "late" not in app.entered and _door.door_stats()["/infer"]["standard"]["timed_out_total"] == 2

    asyncio.run(go())


def test_an_arrival_the_queue_would_keep_past_its_deadline_is_refused_at_once(door_registry):
    from agentic_ray.serve import _door

    async def go():
        app = _App()
        door = _door_for(app, slots=1, inflight_per_slot=1.0)  # one in flight
        first = asyncio.create_task(_request(door, "first", "critical"))
        await _settle()
        door.path_s["/infer"] = 0.04  # answers take 40 ms once let in: the queue drains 25 a second
        # first in the queue: waits ~40 ms, answered ~40 ms later, in a budget of 1 s: it waits
        fits = asyncio.create_task(_request(door, "fits", "standard", budget_ms=1000))
        await _settle()
        # second in the queue (behind the standard waiter): 2 / (25 - 1 critical let in a second) = 83 ms
        # of wait and 40 of answer, more than FORECAST_MARGIN (2) times its 55 ms budget: refused on
        # arrival, 429
        assert _door.FORECAST_MARGIN == 2.0
        loop = asyncio.get_running_loop()
        at = loop.time()
        status, body = await asyncio.wait_for(_request(door, "late", "sheddable", budget_ms=55), 10)
        assert (status, body["error"], body["qos"]) == (429, "door_queue_wait", "sheddable")
        assert loop.time() - at < 0.02 and "refused on arrival" in body["detail"]
        # more urgent work let in takes the queue's rate first: with critical let in at ~26 a second
        # (the whole rate) a standard request waits (ahead + 1) / (5 % of 26) = 0.77 s: past twice 0.3 s
        for _ in range(25):
            door.forecasts["/infer"].let_in(0, time.time())  # the door's clock
        shed = await asyncio.wait_for(_request(door, "shed", "standard", budget_ms=300), 10)
        assert (shed[0], shed[1]["error"]) == (429, "door_queue_wait")
        assert not fits.done() and "late" not in app.entered and "shed" not in app.entered
        app.release("first")
        app.release("fits")
        assert [(await asyncio.wait_for(t, 10))[0] for t in (first, fits)] == [200, 200]
        stats = _door.door_stats()["/infer"]
        assert stats["standard"]["door_wait_total"] == 1 and stats["sheddable"]["door_wait_total"] == 1
        assert stats["critical"]["door_wait_total"] == 0 and stats["*"]["waiting"] == 0
        # off: the same late arrival waits instead (and gives up at its deadline less the path's time)
        app2 = _App()
        off = _door_for(app2, slots=1, inflight_per_slot=1.0, forecast=False)
        inside = asyncio.create_task(_request(off, "inside", "critical"))
        await _settle()
        off.path_s["/infer"] = 0.04
        waiters = [asyncio.create_task(_request(off, "w0", "standard", budget_ms=1000)),
                   asyncio.create_task(_request(off, "w1", "sheddable", budget_ms=55))]  # fmt: skip
        await _settle()
        assert off.limits["/infer"].waiting == 2
        app2.release("inside")
        for name in ("w0", "w1"):
            app2.release(name)
        await asyncio.wait_for(asyncio.gather(inside, *waiters), 10)

    asyncio.run(go())


def test_a_standing_queue_refuses_shed_able_waiters_after_a_short_wait_but_not_critical(monkeypatch, door_registry):
    from agentic_ray.serve import _door

    monkeypatch.setattr(_door, "DOOR_INTERVAL_S", 0.05)

    async def go():
        app, door, first = await _one_inside("first", "critical")
        crit = asyncio.create_task(_request(door, "crit", "critical", budget_ms=5000))
        await _settle()  # the queue is not empty from here on: after the interval it stands
        shed = await asyncio.wait_for(_request(door, "shed", "sheddable"), 10)  # waits the interval
        assert shed[0] == 429 and shed[1]["error"] == "door_queue_delay" and "controlled delay" in shed[1]["detail"]
        await asyncio.sleep(0.06)
        std = await asyncio.wait_for(_request(door, "std", "standard"), 10)  # the queue stands: the target
        assert std[0] == 429 and std[1]["error"] == "door_queue_delay"
        assert not crit.done()  # a class that is never shed waits for its deadline, not the interval
        app.release("first")
        app.release("crit")
        assert [(await asyncio.wait_for(t, 10))[0] for t in (first, crit)] == [200, 200]
        assert app.entered == ["first", "crit"]
        stats = _door.door_stats()["/infer"]
        assert stats["sheddable"]["door_delay_total"] == 1 and stats["standard"]["door_delay_total"] == 1
        assert stats["critical"]["door_delay_total"] == 0
        assert stats["*"].items() >= {"limit": 1, "inflight": 0, "waiting": 0}.items()

    asyncio.run(go())


def _minute_policy():
    from agentic_ray.policies import parse_policy

    return parse_policy("""
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: door-minute}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 60000, shedding: never}
  standard: {priority: 1, budget_ms: 60000, shedding: when_overloaded}
  sheddable: {priority: 2, budget_ms: 60000, shedding: first}
entitlements: {anonymous: {allowed_classes: [critical, standard, sheddable]}}
""")


def test_the_limit_follows_the_path_time_between_the_proxy_share_of_the_slots_and_the_cap(monkeypatch, door_registry):
    from agentic_ray.serve import _door, _proxy_count

    monkeypatch.setattr(_door, "ADAPTIVE_INTERVAL_S", 0.0)  # a step every five answers
    # one proxy, whatever Ray this process joined earlier in the session (its Serve may run several)
    monkeypatch.setattr(_proxy_count, "_proxy_count", lambda: 1)

    async def rounds(door, app, n: int, width: int, tag: str) -> list[int]:
        limits = []
        for k in range(n):
            names = [f"{tag}{k}-{i}" for i in range(width)]
            tasks = [asyncio.create_task(_request(door, name, "critical")) for name in names]
            await _settle()
            for name in names:
                app.release(name)
            assert {s for s, _ in await asyncio.wait_for(asyncio.gather(*tasks), 10)} == {200}
            limits.append(_door.door_stats()["/infer"]["*"]["limit"])
        return limits

    async def go():
        app = _App()
        # every class a minute of budget: the rounds' answers are never late on a loaded host, whatever
        # the target (the limit's steps come from TARGET_SHARE below, not from the clock)
        door = _door_for(app, slots=4, route_policy=_minute_policy(), inflight_per_slot=3.0)  # cap 12; floor 4
        monkeypatch.setattr(_door, "TARGET_SHARE", 1000.0)  # every answer well under target
        grown = await rounds(door, app, 12, 12, "fast")
        assert 4 < grown[0] < 12 and grown == sorted(grown) and grown[-1] == 12  # from the floor (4) up to the cap
        monkeypatch.setattr(_door, "TARGET_SHARE", 1e-9)  # every answer over target
        shrunk = await rounds(door, app, 6, 12, "slow")
        assert shrunk[-1] == 4 and min(shrunk) == 4  # down to this proxy's share of the slots, not under
        row = _door.door_stats()["/infer"]["*"]
        assert (row["floor"], row["cap"]) == (4, 12)
        assert row["target_ms"] == pytest.approx(1e-9 * 60.0 * 1000.0)  # of the tightest budget, 60 s
        assert row["median_ms"] > row["target_ms"]
        assert app.entered.count("slow5-0") == 1

    asyncio.run(go())


def test_the_limit_stays_at_the_slots_multiple_when_adaptive_is_off(monkeypatch, door_registry):
    from agentic_ray.serve import _door

    monkeypatch.setattr(_door, "ADAPTIVE_INTERVAL_S", 0.0)
    monkeypatch.setattr(_door, "TARGET_SHARE", 1e-9)

    async def go():
        app = _App()
        door = _door_for(app, slots=4, inflight_per_slot=3.0, adaptive=False)
        for k in range(4):
            tasks = [asyncio.create_task(_request(door, f"r{k}-{i}", "critical")) for i in range(6)]
            await _settle()
            for i in range(6):
                app.release(f"r{k}-{i}")
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert _door.door_stats()["/infer"]["*"]["limit"] == 12

    asyncio.run(go())


def test_a_waiter_whose_class_has_no_room_waits_while_less_urgent_work_goes_in(door_registry):
    full = {"standard"}  # classes with no room at any replica, as the router sees it

    class Router(_Router):
        def has_room(self, classification, meta, now):
            return classification.qos.name not in full

    async def go():
        app = _App()
        door = _door_for(app, router=Router(), inflight_per_slot=1.0)
        first = asyncio.create_task(_request(door, "first", "standard"))
        await _settle()
        std = asyncio.create_task(_request(door, "std", "standard"))
        shed = asyncio.create_task(_request(door, "shed", "sheddable"))
        await _settle()
        app.release("first")
        await _settle()
        # the standard waiter would be refused by the router (class_cap) if let in: the sheddable goes
        assert app.entered == ["first", "shed"] and not std.done()
        full.clear()  # room again
        app.release("shed")
        app.release("std")
        results = await asyncio.wait_for(asyncio.gather(first, std, shed), 10)
        assert [s for s, _ in results] == [200, 200, 200] and app.entered == ["first", "shed", "std"]
        assert door._held == {}

    asyncio.run(go())


def test_the_routers_room_check_is_asked_on_arrival_before_any_wait(door_registry):
    from agentic_ray.errors import Overloaded
    from agentic_ray.serve import _door

    asked: list[str] = []

    class Router(_Router):
        def refuse_early(self, classification, meta, now, *, pressure=True):
            asked.append(classification.qos.name)
            assert pressure is False  # the room check only: the pressure rule stays the router's
            if classification.qos.name == "sheddable":
                return Overloaded("no room for sheddable at any replica", reason="class_cap", retry_after_s=2.0)
            return None

    async def go():
        app = _App()
        door = _door_for(app, router=Router(), inflight_per_slot=1.0)
        inside = asyncio.create_task(_request(door, "inside", "standard"))
        await _settle()
        # the limit is full: a sheddable request would wait; the room check refuses it first, at once
        status, body = await asyncio.wait_for(_request(door, "shed", "sheddable"), 10)
        assert (status, body["error"], body["qos"]) == (429, "class_cap", "sheddable")
        assert "shed" not in app.entered and door.limits["/infer"].waiting == 0
        crit = asyncio.create_task(_request(door, "crit", "critical"))  # never shed: never asked
        await _settle()
        assert asked == ["standard", "sheddable"]
        app.release("inside")
        app.release("crit")
        assert [(await asyncio.wait_for(t, 10))[0] for t in (inside, crit)] == [200, 200]
        assert _door.door_stats()["/infer"]["sheddable"]["refused_early_total"] == 1
        off = _door.ProxyDoor(app, inflight_per_slot=1.0, early=False)
        app.release("shed2")
        assert (await asyncio.wait_for(_request(off, "shed2", "sheddable"), 10))[0] == 200  # not asked
        assert asked == ["standard", "sheddable"]

    asyncio.run(go())
