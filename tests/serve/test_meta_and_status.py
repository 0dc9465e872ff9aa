"""Pure parts of the Serve layer: metadata wire format, header parsing, error -> HTTP status, shed errors."""

from __future__ import annotations

import math
import sys

import pytest

from agentic_ray.errors import AdmissionError, BudgetExhausted, CircuitOpen, NoEligibleReplica, Overloaded
from agentic_ray.scheduling.types import Shed
from agentic_ray.serve._http_status import http_error
from agentic_ray.serve._meta import META_KWARG, HeaderError, meta_from_headers, pop_meta, request_meta


def test_pop_meta_merges_bare_keywords_and_wire_dict_and_leaves_user_kwargs():
    kwargs = {"prompt": "hi", "qos": "critical", "budget_ms": 80, META_KWARG: {"tenant": "acme", "deadline": 12.5}}
    meta = pop_meta(kwargs)
    assert kwargs == {"prompt": "hi"}
    assert meta == {"qos": "critical", "budget_ms": 80, "tenant": "acme", "deadline": 12.5}
    assert request_meta(meta).qos == "critical"


def test_headers_become_metadata():
    meta = meta_from_headers({"X-QoS": "critical", "x-budget-ms": "250", "x-tenant": "acme", "x-data-class": "pii",
                              "x-workflow": "rag", "content-type": "application/json"})  # fmt: skip
    assert meta == {"qos": "critical", "budget_ms": 250.0, "tenant": "acme", "data_class": "pii", "workflow": "rag"}


@pytest.mark.parametrize(
    ("headers", "name"),
    [({"x-budget-ms": "abc"}, "x-budget-ms"), ({"x-budget-ms": "0"}, "x-budget-ms"),
     ({"x-budget-ms": "nan"}, "x-budget-ms"), ({"x-qos": " "}, "x-qos")],
)  # fmt: skip
def test_bad_header_names_the_header(headers, name):
    with pytest.raises(HeaderError) as info:
        meta_from_headers(headers)
    assert info.value.header == name


def test_http_status_of_admission_errors():
    status, headers, body = http_error(Overloaded("full", reason="queue_full", retry_after_s=0.2))
    assert (status, headers["Retry-After"], body["error"]) == (429, "1", "queue_full")
    status, headers, _ = http_error(BudgetExhausted("late", reason="cannot_meet_deadline", retry_after_s=2.1))
    assert (status, headers["Retry-After"]) == (503, "3")
    status, headers, _ = http_error(BudgetExhausted("late", reason="deadline_passed_in_queue"))
    assert status == 504 and "Retry-After" not in headers
    status, headers, body = http_error(NoEligibleReplica("none", rule_ids=("eu",)))
    assert status == 503 and "Retry-After" not in headers and body["rule_ids"] == ["eu"]
    status, headers, body = http_error(CircuitOpen("deployment app/Model", 2.2, reason="no_healthy_replica"))
    assert (status, headers["Retry-After"], body["error"]) == (503, "3", "no_healthy_replica")


def test_a_shed_for_open_circuits_reaches_the_proxy_as_503_with_retry_after():
    pytest.importorskip("ray.serve")
    from agentic_ray.serve._http_direct import HttpShed

    shed = HttpShed.of(CircuitOpen("deployment app/Model", 4.5, reason="no_healthy_replica"))
    assert (shed.status_code, shed.retry_after_s, shed.body["error"]) == (503, 5.0, "no_healthy_replica")


def test_router_shed_decisions_map_to_typed_errors():
    pytest.importorskip("ray.serve")
    from agentic_ray.serve._router import shed_error

    assert isinstance(shed_error(Shed("no_eligible_replica", None, ("r1",))), NoEligibleReplica)
    err = shed_error(Shed("cannot_meet_deadline", 0.3, (), 250.0))
    assert isinstance(err, BudgetExhausted) and err.retry_after_s == 0.3 and "250.0" in str(err)
    assert isinstance(shed_error(Shed("over_shed_threshold", 0.1)), Overloaded)
    assert isinstance(shed_error(Shed("retry_budget_exhausted", 1.0, (), math.nan)), Overloaded)
    # every replica the request may use is ejected by its breaker: CircuitOpen, retry when one half-opens
    err = shed_error(Shed("no_healthy_replica", 2.5, ("r2",)), "deployment app/Model")
    assert isinstance(err, CircuitOpen) and isinstance(err, AdmissionError)
    assert (err.retry_after_s, err.reason, err.rule_ids, err.target) == (2.5, "no_healthy_replica", ("r2",),
                                                                         "deployment app/Model")  # fmt: skip


def test_importing_the_serve_package_does_not_import_ray():
    import subprocess

    code = (
        "import sys, agentic_ray.serve, agentic_ray.serve._meta, agentic_ray.serve._http_status\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_the_proxy_door_is_enabled_unless_a_callback_is_set_already():
    from agentic_ray.serve._door import ENV, GRPC_ENV, IMPORT_PATH, enable

    env: dict[str, str] = {}
    assert enable(env) is True and env == {ENV: IMPORT_PATH, GRPC_ENV: "1"}  # proxies reach replicas over gRPC
    mine = {ENV: "my_module:callback", GRPC_ENV: "0"}
    assert enable(mine) is False and mine == {ENV: "my_module:callback", GRPC_ENV: "0"}  # a user's choices are kept
    import importlib

    module, attr = IMPORT_PATH.split(":")  # the form Serve's import_attr takes
    callback = getattr(importlib.import_module(module), attr)
    assert [m.cls.__name__ for m in callback()] == ["ProxyDoor"]


@pytest.fixture
def door_registry():
    """The door module's registries (routes, doors) emptied after the test."""
    from agentic_ray.serve import _door

    yield
    _door._routes.clear()
    _door._doors.clear()


def _door_in_front(app, **door_options):
    """A ``ProxyDoor`` in front of the ASGI ``app``, and a stand-in router (the default policy, no identity
    rules: what the door reads) registered on ``/infer``."""
    from agentic_ray.policies import default_policy
    from agentic_ray.serve import _door
    from agentic_ray.serve._http_auth import HttpAuth

    class Router:
        policy = default_policy()
        http_auth = HttpAuth.from_config(None)

    router = Router()
    _door.seen({"root_path": "/infer"}, router)
    return _door.ProxyDoor(app, **door_options), router


def _door_with(status_for: dict[str, int], **door_options):
    """``_door_in_front`` of an ASGI app answering each class with ``status_for[qos]`` (200 otherwise)."""

    async def app(scope, receive, send):
        qos = dict(scope["headers"]).get(b"x-qos", b"").decode()
        await send({"type": "http.response.start", "status": status_for.get(qos, 200), "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return _door_in_front(app, **door_options)


def _run_door(door, headers: list[tuple[bytes, bytes]], path: str = "/infer") -> list[dict]:
    """The messages ``door`` sends for one request with ``headers`` to ``path`` (within 30 s)."""
    import asyncio

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": path, "root_path": "", "headers": headers}
    asyncio.run(asyncio.wait_for(door(scope, receive, send), timeout=30))
    return sent


def _call(door, qos: str, path: str = "/infer") -> tuple[int, dict]:
    import json

    sent = _run_door(door, [(b"x-qos", qos.encode())], path)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body or b"{}")


def test_the_door_never_refuses_a_never_shed_class_for_another_class_refusals(door_registry):
    door, _ = _door_with({"sheddable": 429})
    statuses = [_call(door, "sheddable") for _ in range(40)]
    assert any(b.get("error") == "door_throttled" for _, b in statuses)
    assert all(_call(door, "critical") == (200, {}) for _ in range(20))


def test_the_door_refuses_what_the_deployment_keeps_refusing_and_never_a_never_shed_class(door_registry):
    from agentic_ray.serve import _door

    door, _ = _door_with({"sheddable": 429, "critical": 504})
    statuses = [_call(door, "sheddable") for _ in range(60)]
    refused = [b for s, b in statuses if b.get("error") == "door_throttled"]
    assert refused and len(refused) < 60  # some pass, so the router keeps deciding
    assert all("probability" in b["detail"] and b["qos"] == "sheddable" and b["rule_ids"] == [] for b in refused)
    assert all(s == 429 for s, _ in statuses)
    # never shed: never refused here, even while the deployment misses every one
    assert all(_call(door, "critical") == (504, {}) for _ in range(20))
    # a class the deployment serves is not refused for the critical class's misses
    assert all(_call(door, "standard") == (200, {}) for _ in range(20))
    # one it refuses anyway is, at least in the share critical misses (all of it now)
    assert _call(door, "sheddable")[1].get("error") == "door_throttled"
    assert _door.door_stats()["/infer"]["sheddable"]["refused_total"] == len(refused) + 1


def test_the_door_lets_everything_through_on_routes_no_live_agentic_router_has(door_registry):
    import time

    from agentic_ray.serve import _door

    door, router = _door_with({"sheddable": 429})
    assert _door._match("/other", time.time()) is None
    assert _door._match("/infer/x", time.time()) == "/infer"
    assert _door._match("/-/healthz", time.time()) is None
    _door.seen({"root_path": "/infer"}, router, now=time.time() - _door.ROUTE_TTL_S - 1)  # lapsed
    assert _door._match("/infer", time.time()) is None
    # ...unless Serve's route table still sends the prefix to the router's deployment (asked only then)
    asked: list[str] = []
    assert _door._match("/infer/x", time.time(), lambda p: asked.append(p) or True) == "/infer"
    assert _door._match("/other", time.time(), lambda p: asked.append(p) or True) is None and asked == ["/infer"]
    assert _door._match("/infer", time.time(), lambda p: False) is None
    assert all(_call(door, "sheddable")[1].get("error") != "door_throttled" for _ in range(60))


def test_the_door_answers_504_when_nothing_answered_by_the_deadline_and_cancels_the_work(monkeypatch, door_registry):
    import asyncio
    import json

    from agentic_ray.serve import _door

    monkeypatch.setattr(_door, "DEADLINE_SLACK_S", 0.0)
    cancelled: list[bool] = []

    async def stuck(scope, receive, send):  # Serve's path never answers (a request stuck in a queue)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    door, _ = _door_in_front(stuck)
    sent = _run_door(door, [(b"x-qos", b"standard"), (b"x-budget-ms", b"50")])
    assert sent[0]["status"] == 504 and cancelled == [True]
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["error"] == "deadline_exceeded" and body["qos"] == "standard" and "50 ms" in body["detail"]
    headers = dict(sent[0]["headers"])
    assert b"retry-after" not in headers and int(headers[b"content-length"]) == len(sent[1]["body"])
    stats = _door.door_stats()["/infer"]["standard"]
    assert stats["timed_out_total"] == 1 and stats["accepts"] == 0 and stats["requests"] == 1
    # a never-shed class too: its deadline passed, and the door ends it the same way
    assert _run_door(door, [(b"x-qos", b"critical"), (b"x-budget-ms", b"20")])[0]["status"] == 504


def test_the_door_leaves_an_answer_that_began_in_time_and_a_deadline_it_cannot_read(monkeypatch, door_registry):
    import asyncio

    from agentic_ray.serve import _door

    monkeypatch.setattr(_door, "DEADLINE_SLACK_S", 0.0)

    async def streams(scope, receive, send):  # the answer begins at once and ends after the deadline
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.15)
        await send({"type": "http.response.body", "body": b"done"})

    door, _ = _door_in_front(streams)
    sent = _run_door(door, [(b"x-qos", b"standard"), (b"x-budget-ms", b"50")])
    assert [m.get("status") for m in sent[:1]] == [200] and sent[-1]["body"] == b"done"
    # a bad budget: the door cannot classify it, so it passes whole to the router (which answers 400)
    sent = _run_door(door, [(b"x-qos", b"standard"), (b"x-budget-ms", b"-5")])
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"done"
    assert _door.door_stats()["/infer"]["standard"]["timed_out_total"] == 0


def test_the_doors_deadline_slack_reads_its_variable():
    import math

    from agentic_ray.serve._door import _slack

    assert _slack(None) == 0.25  # on by default
    assert _slack("0.5") == 0.5 and _slack("inf") == math.inf and _slack("0") == 0.0  # inf: off
    assert _slack("soon") == 0.25 and _slack("-1") == 0.25  # not a number >= 0: the default


def test_the_door_answers_even_when_the_app_swallows_its_cancellation(monkeypatch, door_registry):
    import asyncio

    from agentic_ray.serve import _door

    monkeypatch.setattr(_door, "DEADLINE_SLACK_S", 0.0)

    async def quiet(scope, receive, send):  # as Serve's proxy can: cancelled, it returns without an answer
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return

    door, _ = _door_in_front(quiet)
    sent = _run_door(door, [(b"x-qos", b"standard"), (b"x-budget-ms", b"30")])
    assert sent[0]["status"] == 504 and len(sent) == 2


def test_the_door_refuses_the_least_urgent_class_first_while_the_proxy_loop_lags(door_registry):
    import json

    from agentic_ray.serve import _door

    assert _door_with({})[0].lag is None  # off by default
    door, _ = _door_with({}, lag_target_ms=20.0)
    door.lag.ensure = lambda: None  # the lag is set by hand here, not measured
    door.lag.value_ms = 30.0  # above the least urgent level's 20 ms, below the next one's 40
    sent = _run_door(door, [(b"x-qos", b"sheddable")])
    body = json.loads(sent[1]["body"])
    assert sent[0]["status"] == 429 and body["error"] == "door_saturated" and "30 ms" in body["detail"]
    assert dict(sent[0]["headers"])[b"retry-after"] == b"1"
    assert _call(door, "standard") == (200, {}) and _call(door, "critical") == (200, {})
    door.lag.value_ms = 50.0
    assert _call(door, "standard")[1]["error"] == "door_saturated"
    door.lag.value_ms = 10_000.0  # the most urgent, never-shed class is never refused for the lag
    assert _call(door, "critical") == (200, {})
    door.lag.value_ms = 5.0
    assert _call(door, "sheddable") == (200, {})
    stats = _door.door_stats()["/infer"]
    assert stats["sheddable"]["saturated_total"] == 1 and stats["standard"]["saturated_total"] == 1
    assert stats["critical"]["saturated_total"] == 0
    assert json.loads(json.dumps(stats))  # plain numbers


def test_the_door_lag_probe_measures_a_blocked_loop_and_is_off_at_inf(door_registry):
    import asyncio
    import math
    import time

    from agentic_ray.serve import _door

    async def go() -> float:
        lag = _door.LoopLag(probe_s=0.005)
        lag.ensure()
        await asyncio.sleep(0.02)
        time.sleep(0.1)  # a request's work holding the loop
        await asyncio.sleep(0.02)
        return lag.value_ms

    assert asyncio.run(go()) > 10.0  # ~95 ms late, smoothed with alpha 0.3
    assert _door.ProxyDoor(None, lag_target_ms=math.inf).lag is None
    assert _door._slack("inf", 20.0) == math.inf and _door._slack("bad", 20.0) == 20.0
    assert math.isinf(_door.DEFAULT_LAG_TARGET_MS)
