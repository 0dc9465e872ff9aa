"""Serve on the control plane, on real Ray and Serve: registration and status, live policy (apply,
acknowledgements, rollback, refusal), drift alerts naming the deployment, caps reaching the gates, and
one HTTP request followed through the decision log by its id."""

from __future__ import annotations

import glob
import json
import os
import time
import urllib.request

import pytest
import ray

from tests.integration._control_plane import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]

HTTP_PORT = int(os.environ.get("AGENTIC_TEST_HTTP_PORT", "31800")) + 10
APP, DEP = "plane", "plane/Model"

POLICY = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {{name: plane-test, version: "{version}"}}
default_class: standard
classes:
  critical: {{priority: 0, budget_ms: 100, shedding: never}}
  standard: {{priority: 1, budget_ms: {standard}, shedding: when_overloaded}}
{sheddable}entitlements: {{anonymous: {{allowed_classes: [{allowed}]}}}}
"""
SHEDDABLE = "  sheddable: {priority: 2, budget_ms: 60000, shedding: first}\n"


def _policy(tmp, version: str, standard: int = 5000, sheddable: bool = True) -> str:
    allowed = "critical, standard, sheddable" if sheddable else "critical, standard"
    path = tmp / f"plane-{version}.yaml"
    path.write_text(POLICY.format(version=version, standard=standard, sheddable=SHEDDABLE if sheddable else "",
                                  allowed=allowed))  # fmt: skip
    return str(path)


@pytest.fixture(scope="module")
def plane(ray_cluster, tmp_path_factory):
    """A control plane with short drift windows and no allocation rounds after the first (so a test's
    lease with replica caps is not replaced), and the test deployment: two replicas, one slot each."""
    from ray import serve

    import agentic_ray
    import agentic_ray.serve as ars
    from agentic_ray import sdk
    from agentic_ray.actors._common import ControlPlaneConfig

    tmp = tmp_path_factory.mktemp("plane")
    logs = tmp / "logs"
    logs.mkdir()
    config = ControlPlaneConfig(report_interval_s=0.25, reconcile_interval_s=0.2, allocate_interval_s=3600.0,
                                p99_window_s=2.0, min_samples=5, burn_windows=((3.0, 1.0, 2.0),))  # fmt: skip
    sdk.init(config=config, wait_s=60)
    env = {"env_vars": {"AGENTIC_DECISION_LOG_DIR": str(logs)}}

    @ars.deployment(policy=_policy(tmp, "v0"), slots=1, num_replicas=2,
                    ray_actor_options={"num_cpus": 0, "runtime_env": env})  # fmt: skip
    class Model:
        async def __call__(self, payload=None):
            import asyncio

            await asyncio.sleep(float((payload or {}).get("sleep", 0.0)) if isinstance(payload, dict) else 0.0)
            return "ok"

    serve.shutdown()
    serve.start(http_options={"host": "127.0.0.1", "port": HTTP_PORT})
    handle = serve.run(Model.bind(), name=APP, route_prefix=None)
    ingress = ars.ingress_app(Model.bind(), policy=_policy(tmp, "v0"),
                              ray_actor_options={"num_cpus": 0, "runtime_env": env})  # fmt: skip
    serve.run(ingress, name="plane-http", route_prefix="/plane-http")
    try:
        yield {"handle": handle, "tmp": tmp, "logs": logs, "sdk": agentic_ray}
    finally:
        serve.delete(APP)
        serve.delete("plane-http")
        serve.shutdown()
        sdk.shutdown(stop_control_plane=True)


def _deployment(sdk):
    return sdk.status()["serve"]["deployments"].get(DEP)


def _all_run(sdk, version: str, replicas: int = 2):
    """The deployment's status when its target is ``version`` and every router and replica runs it."""
    d = _deployment(sdk)
    if not d or d["policy_version"] != version or len(d["replicas"]) < replicas or not d["routers"]:
        return None
    members = d["routers"] + d["replicas"]
    return d if all(m["policy_version"] == version for m in members) else None


def _call(handle, **kw):
    payload = kw.pop("payload", None)
    return handle.remote(payload, **kw).result(timeout_s=60)


def _critical_ok(handle, tries: int = 3) -> bool:
    """A critical call answered "ok". Its 100 ms budget can pass on a loaded 2-core host before the
    replica admits it (a typed ``BudgetExhausted``); this test is about registration and policy, not
    latency, so such an expiry is retried a few times rather than failing the test."""
    from agentic_ray.errors import BudgetExhausted

    for _ in range(tries - 1):
        try:
            return _call(handle, qos="critical") == "ok"
        except BudgetExhausted:
            continue
    return _call(handle, qos="critical") == "ok"


def test_routers_and_replicas_register_and_live_policy_reaches_them(plane):
    from agentic_ray.errors import EntitlementError

    sdk, handle, tmp = plane["sdk"], plane["handle"], plane["tmp"]
    for qos in ("standard", "sheddable"):
        assert _call(handle, qos=qos) == "ok"
    assert _critical_ok(handle)
    assert _call(handle, qos="standard", budget_ms=3000) == "ok"
    d = wait_for(lambda: _all_run(sdk, "v0"), timeout=30, what="the deployment registered on v0")
    assert d["policy_source"] == "deployment" and d["acked"]
    assert {r["zone"] for r in d["replicas"]} <= {"eu-west", "us-east"}
    assert all(r["router_id"].startswith("driver:") for r in d["routers"])
    wait_for(lambda: set(_deployment(sdk)["classes_seen"]) == {"critical", "standard", "sheddable"},
             what="classes seen in the reports")  # fmt: skip

    # A changed class budget: every router and replica acknowledges it, requests are classified by it.
    started = time.monotonic()
    answer = sdk.apply_policy(_policy(tmp, "v1", standard=2000))
    assert answer["serve"][DEP] == {"accepted": True, "reason": None}
    d = wait_for(lambda: _all_run(sdk, "v1"), timeout=20, interval=0.05, what="every member on v1")
    took = time.monotonic() - started
    print(f"apply_policy -> last acknowledgement: {took:.2f} s")
    assert took < 6.0, took  # 2 s on a quiet machine (benchmarks/serve_rollout.py); the tests share 2 cores
    assert d["policy_source"] == "control plane"
    with pytest.raises(EntitlementError):  # 3000 ms is now more than the standard class's 2000 ms
        _call(handle, qos="standard", budget_ms=3000)
    assert _call(handle, qos="standard", budget_ms=1500) == "ok"

    # Rollback: back to the deployment's own policy.
    sdk.rollback_policy()
    wait_for(lambda: _all_run(sdk, "v0"), timeout=20, interval=0.05, what="every member back on v0")
    assert _call(handle, qos="standard", budget_ms=3000) == "ok"

    # A policy that drops a class the deployment's callers use is refused; the old policy governs.
    answer = sdk.apply_policy(_policy(tmp, "v2", sheddable=False))
    assert answer["serve"][DEP]["accepted"] is False and "sheddable" in answer["serve"][DEP]["reason"]
    d = _deployment(sdk)
    assert d["refusal"]["version"] == "v2" and d["policy_version"] == "v0"
    time.sleep(1.0)  # a poll period and more: nothing switched
    assert _all_run(sdk, "v0") is not None
    assert _call(handle, qos="sheddable") == "ok"
    sdk.rollback_policy()
    wait_for(lambda: "refusal" not in _deployment(sdk), what="the refusal cleared by the rollback")


def test_serve_p99_over_budget_raises_a_drift_alert_naming_the_deployment(plane):
    sdk, handle = plane["sdk"], plane["handle"]
    from agentic_ray.errors import BudgetExhausted

    # critical: budget 100 ms, never shed; each call takes 200 ms (one at a time, so none expires while
    # queued), so the class's p99 at the replicas is over its budget. On a loaded host a call can reach the
    # gate after its 100 ms (refused there, `deadline_passed`: CI, once); ten must be served.
    served = refused = 0
    while served < 10:
        try:
            assert _call(handle, payload={"sleep": 0.2}, qos="critical") == "ok"
            served += 1
        except BudgetExhausted as exc:
            assert exc.reason == "deadline_passed", exc
            refused += 1
            assert refused <= 10, "most critical calls reached the gate after their deadline"

    def alert():
        return [a for a in sdk.status()["alerts"] if a["kind"] == "p99_over_budget" and a.get("deployment") == DEP]

    found = wait_for(alert, timeout=20, what="a p99 alert naming the deployment")
    assert found[0]["qos"] == "critical" and found[0]["workflow"] == f"serve:{DEP}"
    replica_classes = [r["classes"] for r in _deployment(sdk)["replicas"]]
    assert any("critical" in c for c in replica_classes)


def test_caps_from_the_lease_reach_the_gates(plane):
    from agentic_ray.actors._common import NAMESPACE, agent_name
    from agentic_ray.control import NodeLease
    from agentic_ray.errors import Overloaded

    sdk, handle = plane["sdk"], plane["handle"]
    replicas = wait_for(lambda: (d := _deployment(sdk)) and len(d["replicas"]) >= 2 and d["replicas"],
                        what="two replicas")  # fmt: skip

    def lease(with_caps: bool) -> None:
        by_node: dict[str, dict] = {}
        for r in replicas:
            by_node.setdefault(r["node_id"], {})[r["replica_id"]] = {"sheddable": 0} if with_caps else {}
        for node_id, caps in by_node.items():
            agent = ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
            ray.get(agent.set_lease.remote(NodeLease({}, time.time(), 600.0, 1000, replica_caps=caps)), timeout=30)

    lease(True)

    def refused():
        """The reason a sheddable call was refused for (None: it ran)."""
        try:
            _call(handle, qos="sheddable")
        except Overloaded as exc:
            return exc.reason
        return None

    # Every replica's report gets its caps back within a report period; then sheddable work is refused
    # at both gates (cap 0), while critical and standard work is still admitted. (On a slow host a router
    # may also refuse sheddable work for the replicas' delay, ``host_saturated``: not what this checks.)
    wait_for(lambda: refused() == "class_cap", timeout=20, what="a class_cap refusal")
    wait_for(lambda: all(refused() is not None for _ in range(6)), timeout=20, what="both gates capped")
    # ``serve.call`` refuses what the driver's router would refuse (no room for the class at any replica)
    # in the caller's thread, without the hop to the router's thread: same typed error, counted apart.
    import asyncio

    from agentic_ray.serve import _handle_throttle, call

    async def call_reason():
        try:
            await call(handle, None, qos="sheddable")
        except Overloaded as exc:
            return exc.reason
        return None

    def refused_early() -> int:
        return _handle_throttle.stats().get(DEP, {}).get("sheddable", {}).get("refused_early_total", 0)

    before = refused_early()
    wait_for(lambda: asyncio.run(call_reason()) == "class_cap" and refused_early() > before, timeout=20,
             what="a class_cap refusal in the caller")  # fmt: skip
    assert asyncio.run(call(handle, None, qos="critical")) == "ok"  # never refused in the caller
    assert _call(handle, qos="critical") == "ok"
    wait_for(lambda: _call(handle, qos="standard") == "ok", timeout=20, what="standard admitted")
    lease(False)
    wait_for(lambda: all(refused() != "class_cap" for _ in range(4)), timeout=20, what="caps lifted")


def test_one_http_request_is_followed_by_its_id_through_ingress_router_gate_and_completion(plane):
    rid = f"plane-{os.getpid()}-{time.time_ns()}"
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP_PORT}/plane-http", data=b"{}", method="POST",
                                 headers={"x-request-id": rid, "x-qos": "standard"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert json.loads(resp.read())["result"] == "ok"

    def records():
        found = []
        for path in glob.glob(str(plane["logs"] / "*.jsonl")):
            with open(path) as fh:
                for line in fh:
                    rec = json.loads(line)
                    if (rec.get("body") or {}).get("request_id") == rid:
                        found.append(rec)
        wheres = {r["body"]["inputs"]["where"] for r in found if r["kind"] == "decision"}
        done = any(r["kind"] == "completion" for r in found)
        return found if {"ingress", "router", "gate"} <= wheres and done else None

    found = wait_for(records, timeout=20, what="ingress, router, gate and completion records of one id")
    completions = [r for r in found if r["kind"] == "completion"]  # the model replica's, and the ingress's
    assert all(c["body"]["ok"] is True and c["body"]["replica_id"] for c in completions)
    assert all(r["body"]["policy"]["version"] == "v0" for r in found if r["kind"] == "decision")
