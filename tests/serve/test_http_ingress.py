"""HTTP on real Serve over the labelled test cluster, both ways in: the agentic deployment as its app's
HTTP entry (``/direct``: Serve's proxy runs the agentic router, which classifies by header) and the
``ingress_app`` in front of it (``/infer``), both trusting a gateway's ``x-tenant``. Residency,
400/429/503/504, bad bodies, traces; caller identity on ``/keyed`` (API keys) and ``/anon`` (the default:
no identity, ``x-tenant`` refused), entitlements as 403, and a bound process's handle calls."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

HTTP_PORT = int(os.environ.get("AGENTIC_TEST_HTTP_PORT", "31800"))

TRACE_ENV = {"AGENTIC_TRACE_EXPORTER": "memory"}  # replicas record spans in memory (default sampling)

POLICY = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: http-test}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 5000, shedding: never}
  standard: {priority: 1, budget_ms: 5000, shedding: when_overloaded}
  sheddable: {priority: 2, budget_ms: 60000, shedding: first}
tenants:
  acme: {region: eu-west, class: critical}
  globex: {region: us-east, class: critical}
  initech: {region: ap-south, class: critical}
  umbrella: {region: eu-west, class: sheddable}
rules:
  - id: eu-residency
    match: {tenant: acme}
    require: {zones: [eu-west]}
  - id: us-gpu
    match: {tenant: globex}
    require: {zones: [us-east], accelerators: [gpu]}
  - id: ap-residency
    match: {tenant: initech}
    require: {zones: [ap-south]}
admission:
  classes:
    sheddable: {queue_bound: 1}
"""


KEY_ACME, KEY_UMBRELLA = "ark_test-key-acme", "ark_test-key-umbrella"


def _keys() -> dict[str, str]:
    from agentic_ray.serve._http_auth import hash_api_key

    return {hash_api_key(KEY_ACME): "acme", hash_api_key(KEY_UMBRELLA): "umbrella"}


KEYS = _keys()


def _post(path: str, headers: dict[str, str], body: dict | None = None) -> tuple[int, Any, dict]:
    data = json.dumps(body if body is not None else {}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP_PORT}{path}", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"raw": raw.decode(errors="replace")}
        return exc.code, exc.headers, payload


@pytest.fixture(scope="module")
def http_apps(ray_cluster, tmp_path_factory):
    from ray import serve

    import agentic_ray.serve as ars
    from agentic_ray.serve._ingress import ingress_app

    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)

    @ars.deployment(
        policy=str(path),
        slots=1,
        trust_tenant_header=True,  # as behind a gateway that authenticates callers and sets x-tenant
        num_replicas=3,
        max_replicas_per_node=1,
        ray_actor_options={
            "num_cpus": 0,
            "label_selector": {"zone": "in(eu-west,us-east)"},
            "runtime_env": {"env_vars": TRACE_ENV},
        },
    )
    class Echo:
        async def __call__(self, payload: dict | None) -> dict:
            import asyncio

            import ray

            await asyncio.sleep(float(payload.get("sleep", 0.0)) if isinstance(payload, dict) else 0.0)
            if isinstance(payload, dict) and payload.get("fail"):
                raise ValueError("asked to fail")
            # The zone as the replica's own node reports it, not as the router believed it.
            out = {"zone": ray.get_runtime_context().get_node_labels().get("zone")}
            if isinstance(payload, dict) and payload.get("how"):  # the request id Serve gave the call
                from ray.serve.context import _get_serve_request_context

                out["request_id"] = _get_serve_request_context().request_id
            return out

        @ars.ungated
        def spans(self) -> tuple:
            """Test-only: this replica's zone and finished spans (name, trace id, parent span id)."""
            import ray

            from agentic_ray.telemetry import tracing

            spans = [
                (s.name, s.context.trace_id, s.parent.span_id if s.parent else None) for s in tracing.finished_spans()
            ]
            return ray.get_runtime_context().get_node_labels().get("zone"), spans

    class Plain:
        async def __call__(self, payload: dict | None) -> dict:
            return {"ok": True}

    # acme's work must stay in eu-west (rule eu-residency): keep these one-replica apps there.
    one = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0, "label_selector": {"zone": "eu-west"}}}
    keyed = ars.deployment(policy=str(path), api_keys=KEYS, **one)(Plain)
    anon = ars.deployment(policy=str(path), **one)(type("Anon", (Plain,), {}))

    serve.shutdown()
    serve.start(http_options={"host": "127.0.0.1", "port": HTTP_PORT})
    ingress = ingress_app(
        Echo.bind(),
        policy=str(path),
        trust_tenant_header=True,
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": TRACE_ENV}},
    )
    apps = {"/infer": "http-test", "/direct": "http-direct", "/keyed": "http-keyed", "/anon": "http-anon"}
    serve.run(ingress, name=apps["/infer"], route_prefix="/infer")
    serve.run(Echo.bind(), name=apps["/direct"], route_prefix="/direct")
    serve.run(keyed.bind(), name=apps["/keyed"], route_prefix="/keyed")
    serve.run(anon.bind(), name=apps["/anon"], route_prefix="/anon")
    try:
        yield apps
    finally:
        for name in apps.values():
            serve.delete(name)
        serve.shutdown()


@pytest.fixture(params=["/direct", "/infer"])
def http_path(request, http_apps):
    """Each test runs against the direct HTTP entry and the ingress app."""
    return request.param


def test_residency_rules_hold_for_http_requests(http_path):
    zones_acme = {_post(http_path, {"x-tenant": "acme"})[2]["result"]["zone"] for _ in range(12)}
    zones_globex = {_post(http_path, {"x-tenant": "globex"})[2]["result"]["zone"] for _ in range(6)}
    assert zones_acme == {"eu-west"}
    assert zones_globex == {"us-east"}


def test_no_eligible_replica_is_503_naming_the_rule(http_path):
    status, _, body = _post(http_path, {"x-tenant": "initech"})
    assert status == 503
    assert body["error"] == "no_eligible_replica"
    assert "ap-residency" in body["rule_ids"]


@pytest.mark.parametrize(
    ("header", "value"),
    [("x-budget-ms", "abc"), ("x-budget-ms", "-5"), ("x-qos", "platinum"), ("x-tenant", "nobody"),
     ("x-prompt-tokens", "-3"), ("x-max-tokens", "lots")],
)  # fmt: skip
def test_bad_header_is_400_naming_it(http_path, header, value):
    status, _, body = _post(http_path, {header: value})
    assert status == 400
    assert body["error"] == "bad_header"
    assert body["header"] == header


def test_overload_is_429_with_retry_after(http_path):
    # One us-east replica, one slot, a sheddable queue of 1: a burst of slow sheddable work overflows it.
    headers = {"x-tenant": "globex", "x-qos": "sheddable"}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _post(http_path, headers, {"sleep": 0.5}), range(8)))
    statuses = [s for s, _, _ in results]
    assert 429 in statuses, statuses
    for status, resp_headers, _ in results:
        if status == 429:
            assert int(resp_headers["Retry-After"]) >= 1
    assert 200 in statuses


def test_the_proxy_door_refuses_at_once_what_the_router_keeps_refusing(http_apps):
    # One us-east replica of one slot and a sheddable queue of 1: a stream of slow sheddable requests is
    # mostly refused by the router (queue_full). Once the proxy's door has seen the deployment refuse
    # more than half of what reached it, it refuses a share of the next ones itself, before Serve's path
    # (429 door_throttled); about twice what the deployment accepts still reaches the router.
    headers = {"x-tenant": "globex", "x-qos": "sheddable"}
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: _post("/direct", headers, {"sleep": 0.2}), range(160)))
    errors = Counter(body.get("error") if status != 200 else 200 for status, _, body in results)
    assert errors["door_throttled"] > 0, errors
    assert errors["queue_full"] > 0 and errors[200] > 0, errors  # the router still decides what passes
    door = next(r for r in results if r[0] == 429 and r[2].get("error") == "door_throttled")
    assert int(door[1]["Retry-After"]) >= 1 and door[2]["qos"] == "sheddable"
    # A class that is never shed passes the door even now.
    for _ in range(5):
        status, _, body = _post("/direct", {"x-tenant": "globex", "x-qos": "critical"})
        assert status == 200, body


def test_the_proxy_door_answers_504_for_a_request_still_running_past_its_deadline(http_apps):
    # The replica's gate answers a request whose deadline passes while it queues; one that started in time
    # and runs past its deadline is answered by the proxy's door (its deadline and a slack of 0.25 s),
    # which cancels it. A first request registers the route with the door (its router saw it).
    assert _post("/direct", {"x-tenant": "globex", "x-qos": "critical"})[0] == 200
    status, _, body = _post("/direct", {"x-tenant": "globex", "x-qos": "critical", "x-budget-ms": "300"},
                            {"sleep": 3.0})  # fmt: skip
    assert status == 504 and body["error"] == "deadline_exceeded" and body["qos"] == "critical", body


def test_the_door_counts_serves_proxies_as_serve_reports_them(http_apps):
    from ray import serve

    from agentic_ray.serve._proxy_count import _proxy_count

    proxies = serve.status().proxies  # node id -> status, one per node Serve runs a proxy on
    assert len(proxies) >= 1 and _proxy_count() == len(proxies)


def test_the_door_calls_the_deployment_by_handle_once_it_knows_the_route(http_apps):
    from agentic_ray.serve import _door

    # A proxy's first request on a route registers it with that proxy's door (its router saw it on
    # Serve's path; the cluster's proxies share the port); from then on the door sends what it lets in as
    # one handle call (``_door_call``). The user's error tells the paths apart: Serve's path answers 500
    # "Internal Server Error", the direct call 500 with JSON naming no more than the error's type.
    direct = {"error": "call_failed", "qos": "critical", "detail": "ValueError"}
    answers = []
    for _ in range(40):
        answers.append(_post("/direct", {"x-tenant": "acme"}, {"fail": True}))
        if [b for _, _, b in answers[-6:]] == [direct] * 6:
            break
        time.sleep(0.1)  # the proxies' routers publish their replicas' metadata a moment after they start
    assert {status for status, _, _ in answers} == {500}
    assert [b for _, _, b in answers[-6:]] == [direct] * 6, answers
    # Serve's request id is the caller's x-request-id (the replica sees it) and comes back in the answer.
    status, headers, body = _post("/direct", {"x-tenant": "acme", "x-request-id": "rid-door"}, {"how": True})
    assert status == 200 and body == {"result": {"zone": "eu-west", "request_id": "rid-door"}, "qos": "critical"}
    assert headers["x-request-id"] == "rid-door"
    # An idle route stays the door's while Serve still routes it to the deployment: after more than the
    # registration's lifetime without a request, the next ones are still direct calls.
    time.sleep(_door.ROUTE_TTL_S + 1.0)
    idle = [_post("/direct", {"x-tenant": "acme"}, {"fail": True})[2] for _ in range(6)]
    assert idle == [direct] * 6, idle


def test_the_door_knows_a_new_agentic_route_from_its_first_request(http_apps):
    # Serve's route table in the proxy and the agentic router Serve built there for the route's handle
    # tell the door the route before any request: the first one on every proxy is a direct call too.
    from ray import serve

    import agentic_ray.serve as ars

    @ars.deployment(slots=1, ray_actor_options={"num_cpus": 0, "label_selector": {"zone": "eu-west"}})
    class Fresh:
        async def __call__(self, payload):
            raise ValueError("asked to fail")

    serve.run(Fresh.bind(), name="http-fresh", route_prefix="/fresh")
    time.sleep(1.0)  # the proxies hear of the route and its replica by long poll, a moment after
    try:
        answers = [_post("/fresh", {}, {})[::2] for _ in range(6)]
        assert [(status, body.get("error")) for status, body in answers] == [(500, "call_failed")] * 6, answers
    finally:
        serve.delete("http-fresh")


def test_the_door_sends_another_apps_route_under_an_agentic_prefix_to_that_app(http_apps):
    # A plain Serve app whose route lies under the agentic route's prefix: the door may classify its
    # requests with the agentic route's classes (documented), but Serve's route table decides where they
    # go, never the door's direct call.
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Other:
        async def __call__(self, request) -> dict:
            return {"other": True}

    serve.run(Other.bind(), name="http-other", route_prefix="/direct/other")
    try:
        for _ in range(6):
            status, _, body = _post("/direct", {"x-tenant": "acme"})  # the doors know /direct, and keep it
            assert status == 200 and "zone" in body["result"], body
            status, _, body = _post("/direct/other", {"x-tenant": "acme"})
            assert status == 200 and body == {"other": True}, body
    finally:
        serve.delete("http-other")


def test_deadline_passed_while_queued_is_504(http_path):
    blocker_headers = {"x-tenant": "globex", "x-qos": "critical"}
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(_post, http_path, blocker_headers, {"sleep": 1.5})
        time.sleep(0.4)
        status, _, body = _post(http_path, {"x-tenant": "globex", "x-qos": "critical", "x-budget-ms": "300"})
        assert blocker.result()[0] == 200
    assert status == 504, body
    assert body["error"] in ("deadline_passed_in_queue", "deadline_passed")


def test_class_and_body_reach_the_replica(http_path):
    status, _, body = _post(http_path, {"x-qos": "critical", "x-tenant": "acme"}, {"sleep": 0.0})
    assert status == 200
    assert body == {"result": {"zone": "eu-west"}, "qos": "critical"}


def test_body_that_is_not_json_is_400(http_path):
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP_PORT}{http_path}", data=b'{"sleep": ', method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=60)
    assert info.value.code == 400
    assert json.loads(info.value.read())["error"] == "bad_body"


def test_traceparent_header_chains_into_the_replica_spans(http_path, http_apps):
    """A sampled W3C ``traceparent`` continues into the replica's ``agentic.queue`` / ``agentic.execute``
    spans (same trace id); an unsampled one records nothing in the replica. Through the ingress app their
    parent is the router's route span (the router runs in the ingress replica, where tracing is
    configured); on the direct path the router runs in Serve's proxy, which records no spans unless the
    cluster's environment configures tracing there, so they hang under the caller's span."""
    from ray import serve

    base = 0x4BF92F3577B34DA6A3CE929D0E0E4736 if http_path == "/infer" else 0x5CF92F3577B34DA6A3CE929D0E0E4736
    sampled_tid, unsampled_tid = base, 0x0AF7651916CD43DD8448EB211C80319C + (http_path == "/direct")
    caller_span = 0x00F067AA0BA902B7
    for tid, flags in ((sampled_tid, "01"), (unsampled_tid, "00")):
        headers = {"x-tenant": "globex", "traceparent": f"00-{tid:032x}-{caller_span:016x}-{flags}"}
        status, _, body = _post(http_path, headers)
        assert status == 200 and body["result"]["zone"] == "us-east"
    model = serve.get_deployment_handle("Echo", app_name=http_apps[http_path])
    # Ungated calls go to the replica with the shortest queue (ties: Serve's choice): ask many at once
    # so the queue spreads them over all three replicas, until the us-east one answers with the sampled
    # trace's spans (a span ends after the response is on its way: under load the first ask can be early).
    answers: list = []
    spans = None
    deadline = time.time() + 60
    while time.time() < deadline:
        answers = [r.result(timeout_s=30) for r in [model.spans.remote() for _ in range(12)]]
        spans = next((spans for zone, spans in answers if zone == "us-east"), None)
        if spans is not None and {"agentic.queue", "agentic.execute"} <= {n for n, t, _ in spans if t == sampled_tid}:
            break
        time.sleep(0.2)
    assert spans is not None, sorted({zone for zone, _ in answers})
    mine = {name: parent for name, tid, parent in spans if tid == sampled_tid}
    assert {"agentic.queue", "agentic.execute"} <= set(mine), spans
    assert mine["agentic.queue"] == mine["agentic.execute"]
    if http_path == "/infer":
        assert mine["agentic.queue"] not in (None, caller_span)  # under the route span, not the caller's
    else:
        assert mine["agentic.queue"] == caller_span
    assert not [s for s in spans if s[1] == unsampled_tid]


def test_api_keys_identify_callers_401_403(http_apps):
    status, headers, body = _post("/keyed", {})
    assert status == 401 and body["error"] == "unauthorized" and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body = _post("/keyed", {"x-api-key": "ark_guessed"})
    assert status == 401 and "unknown API key" in body["detail"]
    status, _, body = _post("/keyed", {"authorization": f"Bearer {KEY_UMBRELLA}", "x-tenant": "acme"})
    assert status == 403 and body["error"] == "tenant_mismatch"
    status, _, body = _post("/keyed", {"authorization": f"Bearer {KEY_ACME}", "x-qos": "critical"})
    assert (status, body) == (200, {"result": {"ok": True}, "qos": "critical"})


def test_escalation_over_http_is_403_naming_the_entitlement(http_apps):
    # umbrella's class is sheddable: it may not ask for critical, nor lengthen its budget.
    status, _, body = _post("/keyed", {"x-api-key": KEY_UMBRELLA, "x-qos": "critical"})
    assert status == 403 and body["error"] == "entitlement" and body["entitlement"] == "class"
    assert body["holder"] == "tenant:umbrella" and body["requested"] == "critical"
    status, _, body = _post("/keyed", {"x-api-key": KEY_UMBRELLA, "x-budget-ms": "600000"})
    assert status == 403 and body["entitlement"] == "budget"
    status, _, body = _post("/keyed", {"x-api-key": KEY_UMBRELLA})
    assert status == 200 and body["qos"] == "sheddable"


def test_by_default_callers_are_anonymous_and_x_tenant_is_refused(http_apps):
    status, _, body = _post("/anon", {"x-tenant": "acme", "x-qos": "critical"})
    assert status == 403 and body["error"] == "tenant_not_trusted"
    status, _, body = _post("/anon", {})
    assert status == 200 and body["qos"] == "standard"


def test_a_bound_process_makes_handle_calls_as_its_tenant(http_apps, monkeypatch):
    from ray import serve

    from agentic_ray import _identity
    from agentic_ray.errors import EntitlementError

    monkeypatch.delenv(_identity.ENV, raising=False)
    handle = serve.get_app_handle(http_apps["/anon"])
    _identity.bind("umbrella")
    try:
        # No tenant named: the call runs as umbrella, whose class is sheddable.
        assert handle.remote({}).result(timeout_s=60) == {"ok": True}
        with pytest.raises(EntitlementError) as err:
            handle.remote({}, tenant="acme").result(timeout_s=60)
        assert err.value.entitlement == "tenant" and err.value.rule == "tenants.umbrella.act_for"
        with pytest.raises(EntitlementError):
            handle.remote({}, qos="critical").result(timeout_s=60)  # umbrella may not ask for critical
    finally:
        _identity.bind(None)


def _replicas() -> set[str]:
    """Names of the live Serve replica actors (a replaced replica gets a new name)."""
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]}


_HEADER_TEXT = "".join(chr(c) for c in range(0x20, 0x7F))  # what an HTTP/1.1 client can send as a value


def test_fuzzed_headers_and_bodies_never_500_nor_kill_a_replica(http_apps):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = st.sampled_from(["x-qos", "x-budget-ms", "x-tenant", "x-data-class", "x-workflow", "x-api-key",
                             "authorization", "traceparent"])  # fmt: skip
    values = st.one_of(
        st.text(alphabet=_HEADER_TEXT, max_size=40),
        st.sampled_from(["critical", "nan", "inf", "-1", "0", "1e400", "Bearer", "00-zz-zz-01", "acme"]),
    )
    leaves = st.none() | st.booleans() | st.floats() | st.text(max_size=20)

    def nest(inner):
        return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)

    bodies = st.recursive(leaves, nest, max_leaves=12)
    replicas_before = _replicas()
    seen: set[int] = set()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(path=st.sampled_from(["/direct", "/infer", "/keyed", "/anon"]),
           headers=st.dictionaries(names, values.map(str.strip), max_size=4), body=bodies)  # fmt: skip
    def run(path, headers, body):
        status, _, answer = _post(path, {k: v for k, v in headers.items() if v}, body)
        seen.add(status)
        assert status in {200, 400, 401, 403, 429, 503, 504}, (path, headers, status, answer)
        if status == 400 and answer.get("error") == "bad_header":
            assert answer["header"] in headers, (headers, answer)

    run()
    assert 200 in seen and 400 in seen
    assert _replicas() == replicas_before  # none died or was replaced
