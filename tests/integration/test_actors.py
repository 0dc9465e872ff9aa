"""@agentic_ray.actor on the real three-node cluster: residency, the queue (priority, bound, expiry),
refusals and bad options, named actors. Every wait is on a count or an event the test controls."""

from __future__ import annotations

import threading
import time

import pytest
import ray

from agentic_ray.errors import BudgetExhausted, EntitlementError, NoEligibleNode, Overloaded, PolicyError
from tests.integration._control_plane import wait_for

pytestmark = pytest.mark.ray

T = 60  # every ray.get's timeout, s


def _held(agentic, **options):
    """A sync actor whose ``block`` holds its only slot until ``release`` (a named concurrency group,
    so ungated) is called. Defined here, not at module level, so Ray pickles it by value."""

    class Held:
        def __init__(self):
            self.event = threading.Event()
            self.order = []

        def block(self):
            self.event.wait(60)
            return "released"

        @agentic.method(concurrency_group="control")
        def release(self):
            self.event.set()

        def work(self, tag):
            self.order.append(tag)
            return tag

        def seen(self):
            return list(self.order)

    options.setdefault("budget_ms", 60_000)  # the first call waits for the actor's process to start
    return agentic.actor(num_cpus=0, concurrency_groups={"control": 1}, **options)(Held)


def _stats(handle):
    return ray.get(handle.agentic_actor_stats.remote(), timeout=T)


def _wait_queued(handle, n):
    wait_for(lambda: _stats(handle)["queued"] >= n, timeout=T, what=f"{n} calls queued")


def _block(handle):
    ref = handle.block.remote()
    wait_for(lambda: _stats(handle)["executing"] == 1, timeout=T, what="the blocking call running")
    return ref


def test_eu_pii_actor_never_lives_outside_eu(agentic):
    @agentic.actor(tenant="bank-eu", data_class="pii", budget_ms=30_000, num_cpus=0)
    class Where:
        def zone(self):
            return ray.get_runtime_context().get_node_labels()["zone"]

    handles = [Where.remote() for _ in range(6)]
    zones = ray.get([h.zone.remote() for h in handles], timeout=T)
    assert all(z.startswith("eu-") for z in zones), zones
    us = Where.options(tenant="bank-us").remote()
    assert ray.get(us.zone.remote(), timeout=T) == "us-east"
    for h in [*handles, us]:
        ray.kill(h.ray_handle)


def test_critical_call_overtakes_queued_sheddable_calls(agentic):
    handle = _held(agentic, max_queued=10).remote()
    blocker = _block(handle)
    refs = []
    for i in range(3):
        refs.append(handle.work.options(qos="sheddable").remote(f"shed{i}"))
        _wait_queued(handle, i + 1)
    refs.append(handle.work.options(qos="critical").remote("critical"))
    _wait_queued(handle, 4)
    ray.get(handle.release.remote(), timeout=T)
    assert ray.get(blocker, timeout=T) == "released"
    assert sorted(ray.get(refs, timeout=T)) == ["critical", "shed0", "shed1", "shed2"]
    assert ray.get(handle.seen.remote(), timeout=T) == ["critical", "shed0", "shed1", "shed2"]
    ray.kill(handle.ray_handle)


def _records(log_dir):
    """The bodies of every decision record in the actor processes' decision logs under ``log_dir``."""
    import json

    return [
        record["body"]
        for path in log_dir.glob("decisions-*.jsonl")
        for record in map(json.loads, path.read_text().splitlines())
        if record["kind"] == "decision"
    ]


def test_full_queue_refuses_with_overloaded(agentic, tmp_path):
    env = {"env_vars": {"AGENTIC_DECISION_LOG_DIR": str(tmp_path)}}
    handle = _held(agentic, max_queued=2, tenant="bank-eu", runtime_env=env).remote()
    blocker = _block(handle)
    queued = [handle.work.options(qos="sheddable").remote(f"s{i}") for i in range(2)]
    _wait_queued(handle, 2)
    with pytest.raises(Overloaded):
        ray.get(handle.work.options(qos="sheddable").remote("refused"), timeout=T)
    # a never-shed call is not refused by the bound: it evicts the least critical waiting call
    critical = handle.work.options(qos="critical").remote("critical")
    with pytest.raises(Overloaded):
        ray.get(queued[1], timeout=T)
    ray.get(handle.release.remote(), timeout=T)
    ray.get([blocker, critical, queued[0]], timeout=T)
    assert ray.get(handle.seen.remote(), timeout=T) == ["critical", "s0"]
    stats = _stats(handle)
    assert stats["rejected_total"] == 1 and stats["evicted_total"] == 1
    # the decision log of the actor's process names the outcome, the reason and the placement rule
    want = {("reject", "reject:queue_full"), ("evict", "evict:evicted")}
    found = wait_for(
        lambda: want <= {(r["action"], r["outcome"]) for r in _records(tmp_path)} and _records(tmp_path),
        timeout=T,
        what="reject and evict records",
    )
    reject = next(r for r in found if r["action"] == "reject")
    assert reject["qos"] == "sheddable" and "eu-residency" in reject["rule_ids"]
    ray.kill(handle.ray_handle)


def test_call_whose_deadline_passes_while_queued_does_not_run(agentic):
    handle = _held(agentic).remote()
    blocker = _block(handle)
    late = handle.work.options(qos="standard", budget_ms=500).remote("late")
    with pytest.raises(BudgetExhausted):
        ray.get(late, timeout=T)  # refused at its deadline, while the slot is still held
    ray.get(handle.release.remote(), timeout=T)
    ray.get(blocker, timeout=T)
    assert ray.get(handle.work.remote("after"), timeout=T) == "after"
    assert ray.get(handle.seen.remote(), timeout=T) == ["after"]
    assert _stats(handle)["dropped_total"] == 1
    ray.kill(handle.ray_handle)


def test_deadline_and_method_defaults_reach_the_method(agentic):
    @agentic.actor(qos="standard", budget_ms=20_000, num_cpus=0)
    class Deadlines:
        def seen(self):
            from agentic_ray import current_deadline

            return current_deadline().at

        @agentic.method(qos="critical", budget_ms=5_000)
        def urgent(self):
            from agentic_ray import current_deadline

            return current_deadline().at

        async def seen_async(self):  # an async actor: the same context on its event loop
            from agentic_ray import current_deadline

            return current_deadline().at

    handle = Deadlines.remote()
    t0 = time.time()
    assert t0 + 19.5 < ray.get(handle.seen.remote(), timeout=T) <= t0 + 20.5  # the actor's budget
    t0 = time.time()
    assert t0 + 4.5 < ray.get(handle.urgent.remote(), timeout=T) <= t0 + 5.5  # the method's own default
    t0 = time.time()
    with agentic.budget(3_000):
        capped = handle.seen_async.remote()  # the enclosing scope's deadline wins
    assert t0 + 2.5 < ray.get(capped, timeout=T) <= t0 + 3.5
    t0 = time.time()
    assert t0 + 1.5 < ray.get(handle.seen.options(budget_ms=2_000).remote(), timeout=T) <= t0 + 2.5
    ray.kill(handle.ray_handle)


def test_no_eligible_node_and_bad_options_are_typed_errors(agentic):
    class Plain:
        def ping(self):
            return "pong"

    # EU tenants' data stays in eu- zones, and no eu- node has a gpu
    with pytest.raises(NoEligibleNode) as info:
        agentic.actor(tenant="bank-eu", accelerator="gpu", num_cpus=0)(Plain).remote()
    assert "eu-residency" in info.value.rule_ids
    with pytest.raises(PolicyError):
        agentic.actor(qos="no-such-class")(Plain)
    with pytest.raises(ValueError, match="max_queued"):
        agentic.actor(max_queued=0)(Plain)
    with pytest.raises(ValueError, match="max_queued"):
        agentic.actor(Plain).options(max_queued=-1)
    with pytest.raises(ValueError, match="budget_ms"):
        agentic.actor(budget_ms=-5)(Plain)
    with pytest.raises(ValueError, match="placement"):
        agentic.actor(label_selector={"zone": "us-east"})(Plain)
    with pytest.raises(TypeError):
        agentic.actor(lambda: None)
    # entitlement: budgets above the class's max_budget_ms are refused, at creation and per call
    with pytest.raises(EntitlementError):
        agentic.actor(tenant="bank-eu", budget_ms=700_000, num_cpus=0)(Plain).remote()
    handle = agentic.actor(tenant="bank-eu", budget_ms=60_000, num_cpus=0)(Plain).remote()
    with pytest.raises(EntitlementError):
        handle.ping.options(budget_ms=700_000)
    with pytest.raises(PolicyError):
        handle.ping.options(qos="no-such-class")
    with pytest.raises(TypeError, match="tenant"):
        handle.ping.options(tenant="bank-us")
    assert ray.get(handle.ping.remote(), timeout=T) == "pong"
    ray.kill(handle.ray_handle)


def test_named_detached_actor_and_handles_passed_around(agentic):
    @agentic.actor(tenant="bank-eu", budget_ms=60_000, num_cpus=0)
    class Counter:
        def __init__(self):
            self.n = 0

        def add(self, k):
            self.n += k
            return self.n

    name = f"agentic-test-counter-{time.time_ns()}"
    handle = Counter.options(name=name, namespace="agentic-tests", lifetime="detached").remote()
    assert ray.get(handle.add.remote(1), timeout=T) == 1
    again = Counter.get_actor(name, namespace="agentic-tests")
    assert ray.get(again.add.options(qos="critical").remote(1), timeout=T) == 2
    plain = ray.get_actor(name, namespace="agentic-tests")  # governed too, with the defaults
    assert ray.get(plain.add.remote(1), timeout=T) == 3

    @ray.remote(num_cpus=0)
    def use(h):
        return ray.get(h.add.remote(10), timeout=T)

    assert ray.get(use.remote(handle), timeout=T) == 13
    assert _stats(handle)["completed_total"] == 4
    ray.kill(handle.ray_handle)
