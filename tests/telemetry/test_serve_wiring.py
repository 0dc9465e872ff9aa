"""The telemetry hook wired into real Serve through the deployment's hook seams (no code change)."""

from __future__ import annotations

import pytest

from agentic_ray.testing.metrics import scrape_ray_metrics

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


def test_default_deployment_exports_metrics_and_chains_a_sampled_trace(ray_cluster):
    """Telemetry is on by default: decisions of the router (driver) and gate (replica), queue depth,
    completions and the policy version reach Ray's metrics endpoints; a sampled submit span chains to the
    router's route span (driver) and the replica's queue/execute spans (their parent is the route span)."""
    import time

    from ray import serve

    import agentic_ray.serve as ars
    from agentic_ray.telemetry import tracing
    from agentic_ray.telemetry.hotpath import process_hook

    env = {"AGENTIC_TRACE_EXPORTER": "memory"}  # the replica records spans in memory (default sampling)

    @ars.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}})
    class Plain:
        async def work(self, x: int) -> int:
            return x

        @ars.ungated
        def flush(self) -> None:
            process_hook().flush()

        @ars.ungated
        def spans(self) -> list:
            """Test-only: the spans this replica finished, as (name, trace id, span id, parent span id)."""
            return [
                (s.name, s.context.trace_id, s.context.span_id, s.parent.span_id if s.parent else None)
                for s in tracing.finished_spans()
            ]

    tracing.configure_tracing(tracing.TracingConfig(exporter="memory", sampling_ratio=1.0))
    serve.start(proxy_location="Disabled")
    handle = serve.run(Plain.bind(), name="telemetry-default", route_prefix=None)
    try:
        for i, qos in enumerate(["critical", "standard", "sheddable", "standard"]):
            assert handle.work.remote(i, qos=qos).result(timeout_s=30) == i
        with tracing.root_span("agentic.submit") as submit:
            kwargs = tracing.with_trace({"qos": "critical"})
            assert tracing.TRACE_KWARG in kwargs
            assert handle.work.remote(9, **kwargs).result(timeout_s=30) == 9
        driver = {s.name: s for s in tracing.finished_spans()}
        route = driver["agentic.route"]
        assert route.parent.span_id == submit.get_span_context().span_id
        assert route.context.trace_id == submit.get_span_context().trace_id
        replica = handle.spans.remote().result(timeout_s=30)
        by_name = {name: (tid, sid, parent) for name, tid, sid, parent in replica}
        for name in ("agentic.queue", "agentic.execute"):
            tid, _, parent = by_name[name]
            assert tid == route.context.trace_id and parent == route.context.span_id, (name, replica)
        assert by_name["agentic.gate"][2] == route.context.span_id  # the traced gate decision, same parent

        handle.flush.remote().result(timeout_s=30)
        process_hook().flush()
        wanted = {
            ("ray_agentic_decisions_total", "router", "route", "critical"),
            ("ray_agentic_decisions_total", "router", "route", "sheddable"),
            ("ray_agentic_decisions_total", "replica", "start", "standard"),
            ("ray_agentic_decisions_total", "replica", "start", "critical"),
            ("ray_agentic_completions_total", "replica", "ok", "critical"),
            ("ray_agentic_completions_total", "replica", "ok", "sheddable"),
            ("ray_agentic_queue_depth", "replica", None, "critical"),
            ("ray_agentic_queue_depth", "replica", None, "sheddable"),
            ("ray_agentic_observed_latency_ms_count", "replica", None, "standard"),
            ("ray_agentic_breaker_state", "router", None, None),
        }
        found: set = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = set()
            for s in scrape_ray_metrics():
                lab = s.labels
                key = (s.name, lab.get("component"), lab.get("action") or lab.get("outcome"), lab.get("qos"))
                if key in wanted and (s.value > 0 or not s.name.endswith(("_total", "_count"))):
                    found.add(key)
                if s.name == "ray_agentic_policy_version_info" and s.value == 1.0:
                    found.add(("policy_version", lab.get("version")))
            if wanted <= found and any(k[0] == "policy_version" for k in found):
                break
            time.sleep(2)
        assert wanted <= found, f"missing within 90 s: {sorted(wanted - found, key=str)}"
        assert any(k[0] == "policy_version" and k[1] for k in found)
    finally:
        tracing.shutdown_tracing()
        serve.delete("telemetry-default")
        serve.shutdown()


def test_telemetry_false_and_none_hooks_validate():
    """``telemetry=False`` and ``decision_hook="none"`` are accepted; a bad flag or path names the field."""
    import agentic_ray.serve as ars
    from agentic_ray.serve._hooks import NoopHook, load_hook

    assert isinstance(load_hook("none"), NoopHook)
    with pytest.raises(ValueError, match="telemetry"):
        ars.deployment(telemetry="yes")
    with pytest.raises(ValueError, match="decision_hook"):
        ars.deployment(decision_hook="no.such.module:hook")
    ars.deployment(telemetry=False)
    ars.deployment(decision_hook="none", router_hook="none")
