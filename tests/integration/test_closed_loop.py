"""The closed loop on real Ray and Serve: an actions rule naming an unknown deployment is refused; a
replica slowed 10x (the test hook ``agentic_ray.testing.slowdown``) raises a p99-over-budget alert, the
coordinator avoids that replica and tightens admission, and the log shows alert -> action -> clear ->
revert; a canary is started, promoted and rolled back, and a shadow policy counts what it would refuse,
through the ``agentic-ray policy`` CLI. Assertions are on the log's sequence and on counts, not timing."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.integration._control_plane import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

APP, DEP = "loop", "loop/Model"
CANARY_APP = "canary"

POLICY = """apiVersion: agentic-ray/v1
kind: Policy
metadata: {{name: loop-test, version: "{version}"}}
default_class: standard
classes:
  critical: {{priority: 0, budget_ms: 150, shedding: never}}
  standard: {{priority: 1, budget_ms: {standard}}}
  sheddable: {{priority: 2, budget_ms: 3000, shedding: first}}
entitlements: {{anonymous: {{allowed_classes: [{allowed}]}}}}
"""
ACTIONS = """actions:
  rules:
    - id: slow-replica
      when: {alert: p99_over_budget, class: critical, deployment: loop/Model}
      do: avoid_replica
      hold_s: 2
    - id: shed-less
      when: {alert: p99_over_budget, class: critical, deployment: loop/Model}
      do: tighten_admission
      factor: 0.5
      hold_s: 2
      restore_step: 0.5
      restore_every_s: 0.5
"""


def _write(tmp, name: str, version: str, standard: int = 2000, allowed: str = "critical, standard, sheddable",
           actions: str = ACTIONS) -> str:  # fmt: skip
    path = tmp / name
    path.write_text(POLICY.format(version=version, standard=standard, allowed=allowed) + actions)
    return str(path)


@pytest.fixture(scope="module")
def loop(ray_cluster, tmp_path_factory):
    from ray import serve

    import agentic_ray
    import agentic_ray.serve as ars
    from agentic_ray import sdk
    from agentic_ray.actors._common import ControlPlaneConfig

    tmp = tmp_path_factory.mktemp("loop")
    logs = tmp / "logs"
    config = ControlPlaneConfig(report_interval_s=0.25, reconcile_interval_s=0.2, allocate_interval_s=3600.0,
                                p99_window_s=2.0, min_samples=5, burn_windows=((3.0, 1.0, 2.0),),
                                decision_log_dir=str(logs))  # fmt: skip
    sdk.init(config=config, wait_s=60)

    class _Model:
        async def __call__(self, payload=None):
            import asyncio

            from ray import serve

            from agentic_ray.testing import slowdown

            me = serve.get_replica_context().replica_id.unique_id
            if payload == "who":
                return me
            await asyncio.sleep(0.02 * slowdown.factor())  # TEST HOOK: the slowed replica sleeps longer
            return me if payload == "work-who" else "ok"

    # The router here does not learn service times (alpha and deviation_beta 0.001, no deviation term, no
    # residual), so it keeps sending work to the slowed replica whenever it has a free slot: the control
    # plane's action, not the router's own estimate, has to route around it.
    learn_nothing = {"alpha": 0.001, "deviation_beta": 0.001, "deviation_k": 0.0, "residual": False}
    Model = ars.deployment(policy=_write(tmp, "v0.yaml", "v0", actions=""), slots=2, num_replicas=3, name="Model",
                           router_options=learn_nothing, ray_actor_options={"num_cpus": 0})(_Model)  # fmt: skip

    handle = serve.run(Model.bind(), name=APP, route_prefix=None)
    # The canary test's own application: the learning router and one slot per replica, so its load spreads
    # over every replica and the canary replica gets the samples it is judged on; with probing (opt-in), so
    # that a replica whose first answers were slow is tried again instead of starving (the canary replica
    # once got no call for 120 s, about 1 run in 10).
    Spread = ars.deployment(policy=_write(tmp, "c0.yaml", "v0", actions=""), slots=1, num_replicas=3,
                            name="Model", router_options={"probe_after_s": 5.0},
                            ray_actor_options={"num_cpus": 0})(_Model)  # fmt: skip
    spread = serve.run(Spread.bind(), name=CANARY_APP, route_prefix=None)
    try:
        yield {"handle": handle, "spread": spread, "tmp": tmp, "logs": logs, "sdk": agentic_ray,
               "address": ray_cluster.address}  # fmt: skip
    finally:
        from agentic_ray.testing import slowdown

        slowdown.clear()
        serve.delete(CANARY_APP)
        serve.delete(APP)
        sdk.shutdown(stop_control_plane=True)


class Load:
    """Steady handle calls from a thread, cycling through ``classes``, results not awaited."""

    def __init__(self, handle, rps: float = 40.0, classes=("critical", "standard", "critical", "sheddable"),
                 payload: object = None) -> None:  # fmt: skip
        self.handle, self.gap, self.sent, self.classes = handle, 1.0 / rps, 0, tuple(classes)
        self.payload, self.responses = payload, []  # the responses, kept only when a payload asks for answers
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        classes = self.classes
        while not self.stop.wait(self.gap):
            try:
                response = self.handle.remote(self.payload, qos=classes[self.sent % len(classes)])
                if self.payload is not None:
                    self.responses.append(response)
                self.sent += 1
            except Exception:
                pass

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _answer(response) -> str | None:
    """The replica that answered ``response``, or None when it was refused (a slow host can miss the
    critical budget of 150 ms before admission: ``BudgetExhausted(deadline_passed)`` names no replica)."""
    from agentic_ray.errors import AgenticRayError

    try:
        return response.result(timeout_s=60)
    except AgenticRayError:
        return None


def _deployment(sdk, dep: str = DEP):
    return sdk.status()["serve"]["deployments"].get(dep)


def _router_views(target: str) -> dict:
    """This process's router of ``target``: per replica what its decisions see (for failure messages)."""
    from agentic_ray.testing import chaos

    state = chaos.router_state(target)
    if state is None:
        return {}
    out: dict = {"avoid": [state._avoid_replicas, state._avoid_nodes]}
    for rid, rep in list(state._replicas.items()):
        v = rep.view
        out[rid] = {"ongoing": v.ongoing, "max_ongoing": v.max_ongoing, "healthy": v.healthy, "slots": v.slots,
                    "queued": dict(v.queued_by_priority), "service_ms": dict(v.service_ms),
                    "room": dict(v.class_room), "capped": sorted(v.class_capped), "delay_ms": v.delay_ms,
                    "inflight": dict(rep.inflight), "zone": v.attrs.zone, "cost": v.cost}  # fmt: skip
    try:
        out["estimates"] = {k: list(e) for k, e in state.core.table.by_replica("default").items()}
    except Exception as exc:  # a diagnostic: never the failure itself
        out["estimates"] = repr(exc)
    return out


def _cli(loop, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ADDRESS=loop["address"])
    code = "import sys; from agentic_ray.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, "policy", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _rule_events(sdk, rule: str) -> list[str]:
    return [r["event"] for r in sdk.status()["actions"]["log"] if r["rule"] == rule]


def _ordered(events: list[str], wanted: list[str]) -> bool:
    it = iter(events)
    return all(any(e == w for e in it) for w in wanted)


def test_an_actions_rule_naming_an_unknown_deployment_is_refused(loop):
    from agentic_ray.errors import PolicyValidationError

    sdk, tmp = loop["sdk"], loop["tmp"]
    before = sdk.status()["policy"]["sha256"]
    bad = _write(tmp, "bad.yaml", "bad", actions=ACTIONS.replace("deployment: loop/Model", "deployment: nope/X", 1))
    with pytest.raises(PolicyValidationError, match=r"rule 'slow-replica': unknown deployment 'nope/X'"):
        sdk.apply_policy(bad)
    assert sdk.status()["policy"]["sha256"] == before


def test_a_slowed_replica_is_avoided_and_the_log_shows_alert_action_clear_revert(loop):
    from agentic_ray.testing import chaos, slowdown

    sdk, handle, tmp = loop["sdk"], loop["handle"], loop["tmp"]
    # On a slow host the first calls of a fresh deployment (cold paths in the caller and the replica) can
    # outlast the critical budget (150 ms) and be refused ``deadline_passed`` (``wait_for`` retries them).
    wait_for(lambda: handle.remote(None, qos="critical").result(timeout_s=60) == "ok", timeout=60,
             what="a critical call answered in budget")  # fmt: skip
    d = wait_for(lambda: (x := _deployment(sdk)) and len(x["replicas"]) == 3 and x, timeout=60,
                 what="three replicas registered")  # fmt: skip
    sdk.apply_policy(_write(tmp, "v1.yaml", "v1"))
    wait_for(lambda: all(r["policy_version"] == "v1" for r in _deployment(sdk)["replicas"]), timeout=60,
             what="the replicas on v1")  # fmt: skip
    # Critical calls only: with less urgent work queued at the slowed replica, critical calls (routed by
    # predicted completion, queue included) could avoid it and the critical alert never rise (1 run in 4).
    # The replica slowed is the one this load's router ranks first: its service-time estimates are frozen
    # at their first samples (learn_nothing), and while a slot of that replica is free it gets the next
    # call, so it keeps getting calls once slowed. A replica the router ranks behind idle peers gets
    # almost none once slowed, too few samples for the control plane's evidence (CI: 2 runs in 2, when
    # the router spread its first calls over all three replicas and the most-answered was not the first).
    with Load(handle, classes=("critical",), payload="work-who") as load:
        time.sleep(3.0)  # steady state first
        answers = [a for a in map(_answer, list(load.responses)) if a is not None]
        assert answers, "no critical call answered in the first 3 s"
        state = chaos.router_state(DEP)
        assert state is not None, f"no router of {DEP} in this process"
        est = state.core.table.by_replica("default")
        slow = min(sorted(set(answers) & set(est)), key=lambda rid: est[rid][0])
        assert slow in {r["replica_id"] for r in d["replicas"]}
        slowdown.set_slowdown(slow, 10.0)  # 200 ms: over the critical budget (150 ms) on its own
        try:
            wait_for(lambda: f"replica:{slow}" in {r["target"] for r in sdk.status()["actions"]["log"]
                                                   if r["event"] == "action" and r["rule"] == "slow-replica"},
                     timeout=90, what="the slowed replica avoided")  # fmt: skip
        except AssertionError as exc:  # say what the control plane saw
            st = sdk.status()
            raise AssertionError(f"{exc}; slowed {slow}; alert log {st['alert_log'][-5:]}; actions log "
                                 f"{st['actions']['log'][-8:]}; classes {st['classes']}; "
                                 f"replicas {_deployment(sdk)['replicas']}") from None  # fmt: skip
        st = sdk.status()
        assert st["actions"]["overlay"]["avoid_replicas"] == {slow: 0.0}
        slowdown.clear()  # the replica recovers: the alert clears, the actions are reverted
        wait_for(lambda: _ordered(_rule_events(sdk, "slow-replica"), ["alert", "action", "clear", "revert"]),
                 timeout=90, what="alert -> action -> clear -> revert")  # fmt: skip
    wait_for(lambda: _ordered(_rule_events(sdk, "shed-less"), ["alert", "action", "clear", "revert"]), timeout=60,
             what="tighten_admission reverted")  # fmt: skip
    events = _rule_events(sdk, "shed-less")
    assert "restore" in events[events.index("clear") :]  # stepwise restore before the revert
    records = []
    for path in glob.glob(str(loop["logs"] / "coordinator-*.jsonl")):
        with open(path) as fh:
            records += [json.loads(line) for line in fh]
    mine = [r["body"] for r in records if r["kind"] == "decision" and r["body"]["rule_ids"] == ["slow-replica"]]
    assert _ordered([b["action"] for b in mine], ["control:alert", "control:action", "control:clear", "control:revert"])
    assert all(b["request_id"].startswith("p99_over_budget:critical|serve:loop/Model") for b in mine)


def test_canary_promote_rollback_and_shadow_through_the_cli(loop):
    sdk, handle, tmp = loop["sdk"], loop["spread"], loop["tmp"]
    out = _cli(loop, "promote")
    assert out.returncode == 2 and "nothing to promote" in out.stderr, out
    out = _cli(loop, "apply", _write(tmp, "v2.yaml", "v2", standard=2500), "--canary", "1.5")
    assert out.returncode == 2 and "canary: must be a fraction in (0, 1)" in out.stderr
    with Load(handle, rps=50.0):
        v2 = _write(tmp, "v2.yaml", "v2", standard=2500)
        # Generous margins: on a shared two-core host the two halves' p99 differ by chance (CI: 62 vs 49 ms,
        # rolled back at the default 1.2x); what this test checks is the promotion path, not the judge.
        out = _cli(loop, "apply", v2, "--canary", "0.5", "--window", "10", "--min-samples", "5",
                   "--margin", "100", "--p99-slack", "10")  # fmt: skip
        assert out.returncode == 0 and out.stdout.startswith("canary started: v2"), out
        trial = sdk.status()["trial"]
        assert trial["kind"] == "canary" and trial["version"] == "v2"
        # A canary replica runs v2 while the others keep v1; the canary is promoted when no worse.
        if trial["replicas"]:
            wait_for(lambda: any(r["policy_version"] == "v2" for r in _deployment(sdk, "canary/Model")["replicas"]),
                     timeout=60,
                     what="a canary replica on v2")  # fmt: skip
        try:
            wait_for(lambda: sdk.status()["trial"] is None and sdk.status()["policy"]["version"] == "v2",
                     timeout=120, what="the canary promoted")  # fmt: skip
        except AssertionError as exc:  # say what the judge and this process's router saw
            st = sdk.status()
            raise AssertionError(f"{exc}; trial {st['trial']}; events {st.get('events', [])[-5:]}; canary/Model "
                                 f"replicas {_deployment(sdk, 'canary/Model')['replicas']}; "
                                 f"router {_router_views('canary/Model')}") from None  # fmt: skip
        # A canary rolled back by hand (margins the judge cannot reach first: on a slow host it rolled v3
        # back itself within the window at the default 1.2x, and the CLI then rolled the policy back).
        out = _cli(loop, "apply", _write(tmp, "v3.yaml", "v3", standard=2600), "--canary", "0.5", "--window", "600",
                   "--margin", "100", "--p99-slack", "10")  # fmt: skip
        assert out.returncode == 0, out
        out = _cli(loop, "rollback")
        assert out.returncode == 0 and "canary rolled back: v3" in out.stdout, out
        assert sdk.status()["policy"]["version"] == "v2" and sdk.status()["trial"] is None
        # A shadow that refuses sheddable callers: counted, nothing refused for real.
        shadow = _write(tmp, "v4.yaml", "v4", allowed="critical, standard")
        out = _cli(loop, "apply", shadow, "--shadow")
        assert out.returncode == 0 and out.stdout.startswith("shadow started: v4"), out
        wait_for(lambda: sdk.status()["trial"]["shadow"]["would_refuse"] > 0, timeout=60,
                 what="the shadow's refusals counted")  # fmt: skip
        counts = sdk.status()["trial"]["shadow"]
        assert counts["evaluated"] >= counts["would_refuse"] > 0
    # The live policy still admits sheddable callers (the shadow refused nobody for real). Once the load stops
    # the replicas' published delay decays; until then a sheddable call may be refused as host_saturated.
    from agentic_ray.errors import Overloaded

    def admitted():
        try:
            return handle.remote(None, qos="sheddable").result(timeout_s=60) == "ok"
        except Overloaded as exc:
            assert "host_saturated" in str(exc), exc  # any other refusal is a failure
            return False

    wait_for(admitted, timeout=30, what="a sheddable call admitted under the live policy")
    out = _cli(loop, "rollback")
    assert out.returncode == 0 and "shadow rolled back: v4" in out.stdout, out
    out = _cli(loop, "history")
    assert out.returncode == 0
    states = [line.split()[2:4] for line in out.stdout.splitlines()[2:]]
    assert ["canary", "promoted"] in states and ["canary", "rolled_back"] in states
    assert ["shadow", "rolled_back"] in states and [s[0] for s in states if s[0] == "active"] == ["active"]
