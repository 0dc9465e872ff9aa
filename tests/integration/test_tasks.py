"""@agentic_ray.task on a real three-node Ray cluster: placement, deadlines, refusal, bad input."""

from __future__ import annotations

import time

import pytest
import ray

from agentic_ray.testing.metrics import scrape_ray_metrics
from tests.integration._control_plane import wait_for

pytestmark = pytest.mark.ray


def test_one_named_agent_per_node_pinned_to_it(agentic):
    from agentic_ray.actors._common import NAMESPACE, agent_name

    node_ids = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    assert len(node_ids) == 3
    for node_id in node_ids:
        agent = ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
        ident = ray.get(agent.identity.remote(), timeout=30)
        assert ident["node_id"] == node_id
        assert ident["running_on"] == node_id
        assert agent_name(node_id) == "agentic-agent-" + node_id[:12]


def test_eu_pii_tasks_never_leave_eu_zones(agentic):
    @agentic.task(tenant="bank-eu", data_class="pii", budget_ms=30_000, num_cpus=0)
    def where():
        return ray.get_runtime_context().get_node_labels()["zone"]

    @agentic.task(tenant="bank-us", data_class="pii", budget_ms=30_000, num_cpus=0)
    def where_us():
        return ray.get_runtime_context().get_node_labels()["zone"]

    zones = ray.get([where.remote() for _ in range(60)], timeout=120)
    assert len(zones) == 60
    assert all(z.startswith("eu-") for z in zones), zones
    assert len(set(ray.get([where_us.remote() for _ in range(5)], timeout=60))) == 1


def test_deadline_propagates_to_child_tasks(agentic):
    @agentic.task(qos="standard", budget_ms=20_000, num_cpus=0)
    def child():
        d = agentic_current_deadline()
        return None if d is None else d.at

    @agentic.task(qos="standard", budget_ms=5_000, num_cpus=0)
    def parent():
        d = agentic_current_deadline()
        return d.at, ray.get(child.remote(), timeout=60)

    t0 = time.time()
    parent_deadline, child_deadline = ray.get(parent.remote(), timeout=60)
    assert t0 < parent_deadline <= t0 + 5.0 + 0.5
    # The child asked for 20 s but may not outlive its parent: it inherits the parent's deadline.
    assert child_deadline == pytest.approx(parent_deadline)


def agentic_current_deadline():
    from agentic_ray._budget import current_deadline

    return current_deadline()


def test_driver_budget_scope_caps_task_deadline(agentic):
    @agentic.task(qos="sheddable", num_cpus=0)
    def deadline_seen():
        return agentic_current_deadline().at

    t0 = time.time()
    with agentic.budget(3_000):
        seen = ray.get(deadline_seen.remote(), timeout=60)
    assert seen <= t0 + 3.0 + 0.5  # sheddable's own budget is 5 s; the scope's 3 s wins


def test_task_whose_budget_ran_out_does_not_start(agentic, ray_cluster):
    from agentic_ray.errors import BudgetExhausted

    @ray.remote(num_cpus=0)
    class Marker:
        def __init__(self):
            self.calls = 0

        def hit(self):
            self.calls += 1

        def count(self):
            return self.calls

    marker = Marker.remote()

    @ray.remote(num_cpus=0, resources={"fake_gpu": 1})
    def hold_gpu(seconds):
        time.sleep(seconds)
        return True

    @agentic.task(qos="standard", budget_ms=300, num_cpus=0, resources={"fake_gpu": 1})
    def side_effect(m):
        ray.get(m.hit.remote())
        return "ran"

    holder = hold_gpu.remote(2.0)
    time.sleep(0.3)  # let the holder take the only fake_gpu
    late = side_effect.remote(marker)
    with pytest.raises(BudgetExhausted):
        ray.get(late, timeout=60)
    assert ray.get(holder, timeout=60)
    assert ray.get(marker.count.remote(), timeout=30) == 0
    # Same task with enough budget runs (so the refusal above was the deadline, not the task).
    assert ray.get(side_effect.options(budget_ms=30_000).remote(marker), timeout=60) == "ran"
    assert ray.get(marker.count.remote(), timeout=30) == 1


def _gpu_holder_and_queued(agentic):
    """A plain Ray task that holds the cluster's only ``fake_gpu`` for its argument's seconds, and an
    ``@agentic.task`` (300 ms budget) that needs it: queued behind the holder, it misses its deadline."""

    @ray.remote(num_cpus=0, resources={"fake_gpu": 1})
    def hold_gpu(seconds):
        time.sleep(seconds)
        return True

    @agentic.task(qos="standard", budget_ms=300, num_cpus=0, resources={"fake_gpu": 1})
    def queued():
        return "ran"

    return hold_gpu, queued


def test_get_gives_up_at_the_deadline_with_a_typed_error(agentic):
    """``agentic_ray.get`` / ``get_async``: a task still waiting for a resource when its deadline passes is
    answered with ``BudgetExhausted`` then, not when it finally starts (``ray.get`` waits for that)."""
    import asyncio

    from ray.exceptions import GetTimeoutError

    from agentic_ray.errors import BudgetExhausted
    from agentic_ray.sdk._results import deadline_of

    hold_gpu, queued = _gpu_holder_and_queued(agentic)

    @agentic.task(qos="standard", budget_ms=30_000, num_cpus=0)
    def double(x):
        return 2 * x

    holder = hold_gpu.remote(6.0)
    time.sleep(0.3)  # let the holder take the only fake_gpu
    late, late_async = queued.remote(), queued.remote()
    assert deadline_of(late) == pytest.approx(time.time() + 0.3, abs=0.3)
    with pytest.raises(BudgetExhausted, match="no result by its deadline") as info:
        agentic.get(late)
    assert info.value.reason == "deadline_passed"
    with pytest.raises(BudgetExhausted, match="no result by its deadline"):
        asyncio.run(agentic.get_async(late_async))
    assert ray.wait([holder], timeout=0)[0] == []  # both answered while the GPU was still held
    # Results that are ready come back (a list in order); refs of plain Ray tasks are waited for as ray.get.
    assert agentic.get([double.remote(1), double.remote(2)]) == [2, 4]
    assert asyncio.run(agentic.get_async(double.remote(3))) == 6
    with pytest.raises(GetTimeoutError):
        agentic.get(hold_gpu.remote(0.0), timeout=0.5)  # no deadline known: ray.get's own timeout
    with pytest.raises(ValueError, match="grace_s"):
        agentic.get(double.remote(1), grace_s=-1)
    assert ray.get(holder, timeout=60)
    with pytest.raises(BudgetExhausted):  # the worker refused them when they could finally start
        ray.get(late, timeout=60)


def test_a_refusal_after_get_gave_up_is_not_logged_as_unhandled(agentic, monkeypatch):
    """The caller of ``agentic_ray.get`` / ``get_async`` already holds the typed error when the task's worker
    later refuses it: Ray must not log that refusal as an "Unhandled error" when the ref is dropped."""
    import asyncio
    import gc

    import ray._private.worker as ray_worker

    from agentic_ray.errors import BudgetExhausted

    unhandled: list[str] = []
    monkeypatch.setattr(ray_worker, "_unhandled_error_handler", lambda e: unhandled.append(repr(e)))

    hold_gpu, queued = _gpu_holder_and_queued(agentic)
    holder = hold_gpu.remote(3.0)
    time.sleep(0.3)  # let the holder take the only fake_gpu
    late, late_async, witness = queued.remote(), queued.remote(), queued.remote()
    with pytest.raises(BudgetExhausted, match="no result by its deadline"):
        agentic.get(late)
    with pytest.raises(BudgetExhausted, match="no result by its deadline"):
        asyncio.run(agentic.get_async(late_async))
    assert ray.get(holder, timeout=60)
    with pytest.raises(BudgetExhausted):  # the witness queued beside them: their refusals have come too
        ray.get(witness, timeout=60)
    time.sleep(1.0)
    del late, late_async
    gc.collect()
    deadline = time.monotonic() + 3.0
    while not unhandled and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [e for e in unhandled if "BudgetExhausted" in e], unhandled


def test_child_submitted_after_parent_deadline_is_refused(agentic):
    from agentic_ray.errors import BudgetExhausted

    @agentic.task(qos="standard", num_cpus=0)
    def child():
        return "ran"

    # A budget long enough for the parent to start on a loaded 2-core machine; it runs out while it sleeps.
    @agentic.task(qos="standard", budget_ms=2000, num_cpus=0)
    def slow_parent():
        time.sleep(2.2)
        try:
            child.remote()
        except BudgetExhausted as exc:
            return exc.reason
        return "submitted"

    assert ray.get(slow_parent.remote(), timeout=60) == "deadline_passed"


def test_stages_of_a_workflow_run_share_what_the_run_has_left(agentic):
    """Inside ``agentic_ray.workflow(...)`` every stage carries the run's deadline and its share; the stage
    that starts gets its share of what is left then (on the worker), and a stage task submitted from a
    workflow task belongs to the same run."""
    import agentic_ray

    fraud = dict(tenant="bank-eu", workflow="fraud", num_cpus=0)

    @agentic_ray.task(stage="features", **fraud)
    def features():
        return None

    @agentic_ray.task(stage="explain", **fraud)
    def explain(_):
        from agentic_ray._budget import current_deadline, current_workflow

        run = current_workflow()
        return run.name, run.deadline, current_deadline().at

    now = time.time()
    with agentic_ray.workflow("fraud") as run:
        assert run.deadline == pytest.approx(now + 0.150, abs=0.05)
        cls_f, at_f, _ = features.decide()
        first_ctx = features._context(cls_f, at_f, time.time())
        cls_e, at_e, _ = explain.decide()
    # Both stages carry the run's deadline; the first stage's share is its 30 % of the whole run.
    assert at_f == run.deadline and at_e == run.deadline and first_ctx == (run.deadline, pytest.approx(0.3))
    assert cls_e.stage_share == 1.0  # the last stage gets everything left when it starts
    # Out of a run, explain is taken to start after features and score used their nominal budgets.
    assert explain.decide()[1] - time.time() == pytest.approx(0.150 * 0.2, abs=0.02)
    with pytest.raises(agentic_ray.PolicyError), agentic_ray.workflow("no-such-workflow"):
        pass


def test_bad_input_is_refused_before_submission(agentic):
    from agentic_ray.errors import NoEligibleNode, PolicyError

    def noop():
        return 1

    with pytest.raises(ValueError, match="budget_ms"):
        agentic.task(budget_ms=0)(noop)
    with pytest.raises(ValueError, match="budget_ms"):
        agentic.task(budget_ms=-5)(noop)
    with pytest.raises(PolicyError, match="class"):
        agentic.task(qos="platinum")(noop).remote()
    with pytest.raises(PolicyError, match="tenant"):
        agentic.task(tenant="nobody")(noop).remote()
    with pytest.raises(PolicyError, match="workflow"):
        agentic.task(workflow="nope")(noop).remote()
    # EU residency + a GPU: the only GPU node is in us-east.
    t0 = time.monotonic()
    with pytest.raises(NoEligibleNode) as info:
        agentic.task(tenant="bank-eu", accelerator="gpu")(noop).remote()
    assert "eu-residency" in info.value.rule_ids
    assert time.monotonic() - t0 < 1.0


def test_gpu_task_lands_on_gpu_node(agentic):
    @agentic.task(tenant="bank-us", accelerator="gpu", budget_ms=30_000, num_cpus=0)
    def where():
        return ray.get_runtime_context().get_node_labels()["accelerator"]

    assert set(ray.get([where.remote() for _ in range(5)], timeout=60)) == {"gpu"}


def test_options_override_and_plain_call_is_refused(agentic):
    @agentic.task(qos="standard", num_cpus=0)
    def add(a, b=1):
        return a + b

    from agentic_ray.errors import BudgetExhausted

    assert ray.get(add.remote(1, b=2), timeout=60) == 3
    # The critical class's budget is short: on a loaded host the first call placed on a node without a
    # warm worker may be refused at start (deadline_passed; CI, once). The override must work by the third.
    for attempt in range(3):
        try:
            assert ray.get(add.options(qos="critical", num_cpus=0).remote(5), timeout=60) == 6
            break
        except BudgetExhausted as exc:
            assert exc.reason == "deadline_passed" and attempt < 2, exc
    with pytest.raises(TypeError):
        add(1)
    with pytest.raises(TypeError):  # Ray checks the arguments against the function's own signature
        add.remote(1, 2, 3)


def test_task_keeps_the_users_name_in_ray(agentic):
    """The context travels as an argument: Ray's task name is the function's, or the one given with
    ``options(name=...)`` (on the decorator or per call), as for ``@ray.remote``."""

    @agentic.task(qos="standard", budget_ms=30_000, num_cpus=0)
    def my_task(x, **kwargs):
        return ray.get_runtime_context().get_task_name(), x, kwargs

    assert ray.get(my_task.remote(1), timeout=60) == ("my_task", 1, {})
    assert ray.get(my_task.options(name="nightly-score").remote(2, k=3), timeout=60) == ("nightly-score", 2, {"k": 3})

    @agentic.task(qos="standard", budget_ms=30_000, num_cpus=0, name="named-in-decorator")
    def other():
        return ray.get_runtime_context().get_task_name()

    assert ray.get(other.remote(), timeout=60) == "named-in-decorator"

    @ray.remote(num_cpus=0)
    def plain():
        return ray.get_runtime_context().get_task_name()

    assert ray.get(plain.remote(), timeout=60) == "plain"  # the same default naming as plain Ray


def test_async_task(agentic):
    @agentic.task(qos="standard", num_cpus=0)
    async def double(x):
        return 2 * x

    assert ray.get(double.remote(21), timeout=60) == 42


def _scrape_all_nodes() -> list:
    """Every ``ray_agentic_`` sample on every alive node's Ray metrics endpoint (Ray exports per node)."""
    return scrape_ray_metrics("ray_agentic_")


def _completions_by_series(samples) -> dict:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in samples
        if s.name == "ray_agentic_completions_total"
        and s.labels.get("component") == "agent"
        and s.labels.get("qos") == "standard"
    }


def test_control_plane_metrics_on_rays_endpoint(agentic):
    """Tasks through the wired SDK: the agents' completions/queue depth, the coordinators' rounds and
    the policy version reach Ray's Prometheus endpoint with the expected labels."""

    @agentic.task(qos="standard", budget_ms=30_000, num_cpus=0)  # cold workers start slower than 800 ms
    def noop(i):
        return i

    # the session's cluster keeps series of earlier tests (and of agents of earlier modules): count the
    # completions this test adds, per series
    before = _completions_by_series(_scrape_all_nodes())
    assert ray.get([noop.remote(i) for i in range(20)], timeout=60) == list(range(20))
    wanted = {
        "ray_agentic_completions_total": {"component": "agent", "qos": "standard", "outcome": "ok"},
        "ray_agentic_observed_latency_ms_count": {"component": "agent", "qos": "standard"},
        "ray_agentic_budget_left_ms_count": {"component": "agent", "qos": "standard"},
        "ray_agentic_queue_depth": {"component": "agent", "qos": "standard"},
        "ray_agentic_coordinator_rounds_total": {"level": "global"},
        "ray_agentic_policy_version_info": {"version": "1"},
    }
    seen: list = []

    def collected():
        samples = _scrape_all_nodes()
        seen[:] = [(s.name, s.labels.get("qos"), s.labels.get("version"), s.value) for s in samples]
        found = {}
        for name, labels in wanted.items():
            hits = [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
            if hits:
                found[name] = hits
        found["zone"] = [
            s for s in samples if s.name == "ray_agentic_coordinator_rounds_total" and s.labels.get("level") == "zone"
        ]
        added = sum(max(0.0, v - before.get(k, 0.0)) for k, v in _completions_by_series(samples).items())
        seen.append(("completions added", added))
        return found if set(wanted) <= set(found) and found["zone"] and added >= 20 else None

    try:
        found = wait_for(collected, timeout=90, interval=2, what="agentic_ metrics on the Ray metrics endpoints")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; series seen: {[x for x in seen if 'bucket' not in x[0]]}") from None
    assert sum(s.value for s in found["ray_agentic_budget_left_ms_count"]) >= 20
    assert all(s.value >= 1 for s in found["ray_agentic_coordinator_rounds_total"])
    assert 1.0 in [s.value for s in found["ray_agentic_policy_version_info"]]  # the active one


def test_sampled_submit_span_is_parent_of_worker_execute_span(agentic):
    """With tracing configured (sampling 1.0) the submit span's context reaches the worker, whose
    ``agentic.execute`` span is its child; the task keeps its own name either way."""
    from agentic_ray.telemetry import tracing

    env = {"env_vars": {"AGENTIC_TRACE_EXPORTER": "memory", "AGENTIC_TRACE_SAMPLING": "1.0"}}

    @agentic.task(qos="standard", budget_ms=60_000, num_cpus=0, runtime_env=env)
    def current_span():
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        parent = getattr(trace.get_current_span(), "parent", None)  # only recording spans have one
        name = ray.get_runtime_context().get_task_name()
        return ctx.trace_id, parent.span_id if parent else None, name

    trace_id, _parent, name = ray.get(current_span.remote(), timeout=120)
    assert trace_id == 0 and name == "current_span"  # tracing not configured here: nothing shipped
    tracing.configure_tracing(tracing.TracingConfig(exporter="memory", sampling_ratio=1.0))
    try:
        trace_id, parent_span_id, name = ray.get(current_span.remote(), timeout=120)
        submit = [s for s in tracing.finished_spans(clear=True) if s.name == "agentic.submit"]
    finally:
        tracing.shutdown_tracing()
    assert len(submit) == 1
    assert submit[0].attributes["agentic.qos"] == "standard"
    assert trace_id == submit[0].context.trace_id
    assert parent_span_id == submit[0].context.span_id
    assert name == "current_span"  # the trace travels in the context argument, not in the task name


def test_placements_go_to_the_decision_log_and_its_heads_to_status(agentic, tmp_path, monkeypatch):
    """``AGENTIC_DECISION_LOG_DIR``: every placement is a ``place`` record in this process's hash-chained
    log; checkpoint heads reach the coordinator's ``status()``; the chain verifies."""
    from agentic_ray.sdk import _telemetry
    from agentic_ray.telemetry import verify_log
    from agentic_ray.telemetry.audit_verify import iter_records

    monkeypatch.setenv("AGENTIC_DECISION_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("AGENTIC_DECISION_LOG_CHECKPOINT_EVERY", "5")
    _telemetry.open_from_env()
    try:

        @agentic.task(qos="standard", budget_ms=30_000, num_cpus=0)
        def noop(i):
            return i

        assert ray.get([noop.remote(i) for i in range(12)], timeout=60) == list(range(12))
        path = _telemetry.DECISION_LOG.path
    finally:
        _telemetry.close()
    places = [r for _, r in iter_records(path) if r.get("kind") == "decision"]
    assert len(places) == 12
    assert {r["body"]["action"] for r in places} == {"place"}
    assert len({r["body"]["request_id"] for r in places}) == 12  # one id per placement
    assert {r["body"]["inputs"]["task"] for r in places} == {"noop"}
    assert all(r["body"]["qos"] == "standard" and r["body"]["policy"]["version"] == "1" for r in places)
    assert verify_log(path).ok
    heads = wait_for(
        lambda: [h for k, h in agentic.status()["decision_logs"].items() if k.endswith(path) and h["count"] > 5],
        timeout=30,
        what="a checkpoint head in status()",
    )
    assert heads[0]["hash"] and heads[0]["count"] > 5


def test_escalation_and_another_tenant_are_refused_and_logged(agentic, tmp_path, monkeypatch):
    """A task beyond its tenant's entitlement, or naming another tenant than the process is bound to, is
    refused with ``EntitlementError`` before submission, and the refusal is a decision-log record."""
    from agentic_ray import _identity
    from agentic_ray.errors import EntitlementError
    from agentic_ray.sdk import _telemetry
    from agentic_ray.telemetry.audit_verify import iter_records

    monkeypatch.delenv(_identity.ENV, raising=False)
    monkeypatch.setenv("AGENTIC_DECISION_LOG_DIR", str(tmp_path))
    _telemetry.open_from_env()
    try:
        too_long = agentic.task(tenant="bank-eu", budget_ms=10_000_000, num_cpus=0)(lambda: 1)
        with pytest.raises(EntitlementError) as err:
            too_long.remote()
        assert err.value.entitlement == "budget"

        @agentic.task(tenant="bank-us", qos="standard", budget_ms=30_000, num_cpus=0)
        def as_bank_us():
            return 1

        _identity.bind("bank-eu")
        try:
            with pytest.raises(EntitlementError) as err:
                as_bank_us.remote()
            assert err.value.entitlement == "tenant" and err.value.rule == "tenants.bank-eu.act_for"
            unnamed = agentic.task(qos="standard", budget_ms=30_000, num_cpus=0)(lambda: 2)
            assert unnamed.decide()[0].tenant == "bank-eu"  # a bound process's call runs as its tenant
        finally:
            _identity.bind(None)
        assert ray.get(as_bank_us.remote(), timeout=60) == 1  # unbound again
        path = _telemetry.DECISION_LOG.path
    finally:
        _telemetry.close()
    decisions = [r["body"] for _, r in iter_records(path) if r.get("kind") == "decision"]
    refusals = [d for d in decisions if d["action"] == "refuse"]
    assert [r["outcome"] for r in refusals] == ["refused:entitlement:budget", "refused:entitlement:tenant"]
    assert refusals[1]["rule_ids"] == ["tenants.bank-eu.act_for"]
