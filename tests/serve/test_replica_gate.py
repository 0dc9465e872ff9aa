"""The replica admission gate on real Serve: priority order, typed rejection, expiry before start."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

POLICY = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: gate-test}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 100, shedding: never, max_budget_ms: 60000}
  standard: {priority: 1, budget_ms: 500, shedding: when_overloaded, max_budget_ms: 60000}
  sheddable: {priority: 2, budget_ms: 2000, shedding: first, max_budget_ms: 60000}
entitlements: {anonymous: {allowed_classes: [critical, standard, sheddable]}}
admission:
  classes:
    sheddable: {queue_bound: 6}
  breaker: {consecutive_failures: 2, ejection_s: 2.0, max_ejected_fraction: 1.0}
"""


@pytest.fixture(scope="module")
def worker(ray_cluster, tmp_path_factory):
    from ray import serve

    import agentic_ray.serve as ars

    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)

    # These tests are about the gate's own decisions: no host-pressure refusals at the router (on a loaded
    # two-core host its trip delay can refuse a sheddable call before it reaches the gate: CI, once).
    @ars.deployment(policy=str(path), slots=1, num_replicas=1, delay_target_ms=None,
                    ray_actor_options={"num_cpus": 0})  # fmt: skip
    class Worker:
        def __init__(self) -> None:
            self.started: list[str] = []

        async def work(self, tag: str, secs: float) -> str:
            import asyncio

            self.started.append(tag)
            await asyncio.sleep(secs)
            return tag

        async def boom(self) -> None:
            raise RuntimeError("boom")

        async def stream(self, tag: str, n: int, secs: float):
            import asyncio

            self.started.append(tag)
            for i in range(n):
                await asyncio.sleep(secs)
                yield f"{tag}-{i}"
            self.started.append(f"{tag}-end")

        def sync_stream(self, n: int):
            yield from range(n)

        @ars.ungated
        def log(self) -> list[str]:
            return list(self.started)

        @ars.ungated
        def gate(self) -> dict:
            return self._agentic_admission.routing_stats()

    serve.start(proxy_location="Disabled")
    handle = serve.run(Worker.bind(), name="gate-test", route_prefix=None)
    try:
        yield handle
    finally:
        serve.delete("gate-test")
        serve.shutdown()


def _wait_queued(handle, n: int, timeout_s: float = 30.0) -> None:
    end = time.time() + timeout_s
    while time.time() < end:
        if handle.gate.remote().result(timeout_s=10)["queued"] >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"gate never held {n} queued requests")


def _wait_idle(handle, timeout_s: float = 30.0) -> None:
    end = time.time() + timeout_s
    while time.time() < end:
        stats = handle.gate.remote().result(timeout_s=10)
        if stats["queued"] == 0 and stats["executing"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("worker never became idle")


def test_critical_starts_before_queued_sheddable(worker):
    work = worker.work
    blocker = work.remote("blocker", 1.0, qos="critical", budget_ms=60_000)
    _wait_started(worker, "blocker")
    sheddable = [work.remote(f"s{i}", 0.05, qos="sheddable", budget_ms=60_000) for i in range(5)]
    _wait_queued(worker, 5)
    critical = work.remote("crit", 0.05, qos="critical", budget_ms=60_000)
    assert critical.result(timeout_s=60) == "crit"
    assert blocker.result(timeout_s=60) == "blocker"
    assert [r.result(timeout_s=60) for r in sheddable] == [f"s{i}" for i in range(5)]
    log = worker.log.remote().result(timeout_s=10)
    assert log.index("crit") < min(log.index(f"s{i}") for i in range(5))
    assert log.index("blocker") < log.index("crit")
    _wait_idle(worker)


def test_full_gate_rejects_with_typed_error_and_never_runs(worker):
    from agentic_ray.errors import AdmissionError, Overloaded

    work = worker.work
    blocker = work.remote("blocker2", 1.0, qos="critical", budget_ms=60_000)
    _wait_started(worker, "blocker2")
    queued = [work.remote(f"q{i}", 0.01, qos="sheddable", budget_ms=60_000) for i in range(6)]
    _wait_queued(worker, 6)
    extra = work.remote("overflow", 0.01, qos="sheddable", budget_ms=60_000)
    with pytest.raises(Overloaded) as info:
        extra.result(timeout_s=60)
    assert isinstance(info.value, AdmissionError)
    assert info.value.reason in ("queue_full", "over_shed_threshold")
    blocker.result(timeout_s=60)
    for r in queued:
        r.result(timeout_s=60)
    assert "overflow" not in worker.log.remote().result(timeout_s=10)
    _wait_idle(worker)


def test_expired_request_is_never_started(worker):
    from agentic_ray.errors import BudgetExhausted

    work = worker.work
    blocker = work.remote("blocker3", 1.5, qos="critical", budget_ms=60_000)
    _wait_started(worker, "blocker3")
    late = work.remote("late", 0.01, qos="critical", budget_ms=300)
    with pytest.raises(BudgetExhausted) as info:
        late.result(timeout_s=60)
    assert info.value.reason == "deadline_passed_in_queue"
    blocker.result(timeout_s=60)
    time.sleep(0.2)
    assert "late" not in worker.log.remote().result(timeout_s=10)
    _wait_idle(worker)


def _wait_started(handle, tag: str, timeout_s: float = 30.0) -> None:
    end = time.time() + timeout_s
    while time.time() < end:
        if tag in handle.log.remote().result(timeout_s=10):
            return
        time.sleep(0.02)
    raise AssertionError(f"{tag} never started")


def test_failing_replica_is_ejected_by_the_breaker_then_probed_back(worker):
    """Runs last: consecutive failures open the router's breaker for the only replica (2 s ejection)."""
    from agentic_ray.errors import CircuitOpen

    # The replica publishes its totals with its routing stats (every 0.25 s); a period's successes count
    # before its failures, so only failing calls are sent until the breaker opens (a success sent between
    # two failures in another period resets the count: CI, once, with successful probes in between).
    end = time.time() + 20
    while True:
        try:
            worker.boom.remote(qos="critical", budget_ms=60_000).result(timeout_s=60)
        except CircuitOpen:
            break
        except RuntimeError:
            assert time.time() < end, "the breaker never opened"
            time.sleep(0.05)
    refused = "ejected"
    with pytest.raises(CircuitOpen) as info:
        worker.work.remote(refused, 0.0, qos="standard", budget_ms=60_000).result(timeout_s=60)
    error = info.value
    # every replica the request may use is ejected: CircuitOpen, retry when the breaker half-opens
    assert error.reason == "no_healthy_replica" and 0 < error.retry_after_s <= 2.0
    time.sleep(2.2)  # ejection over: one half-open probe may go, and its success closes the breaker
    assert worker.work.remote("probe", 0.01, qos="standard", budget_ms=60_000).result(timeout_s=60) == "probe"
    assert _first_success(worker, "after", timeout_s=10) == "after"
    assert refused not in worker.log.remote().result(timeout_s=10)


def _first_success(handle, tag: str, timeout_s: float) -> str:
    from agentic_ray.errors import CircuitOpen

    end = time.time() + timeout_s
    while time.time() < end:
        try:
            return handle.work.remote(tag, 0.0, qos="standard", budget_ms=60_000).result(timeout_s=60)
        except CircuitOpen:
            time.sleep(0.1)  # half-open until the probe's success is reported
    raise AssertionError("the breaker never closed")


def test_a_stream_is_gated_and_holds_its_slot_until_it_ends(worker):
    from agentic_ray.errors import BudgetExhausted

    stream = worker.options(stream=True).stream
    chunks = stream.remote("st", 4, 0.25, qos="critical", budget_ms=60_000)
    _wait_started(worker, "st")
    # The only slot is held by the stream: a request whose deadline comes before the stream ends expires.
    late = worker.work.remote("behind-stream", 0.01, qos="critical", budget_ms=300)
    assert list(chunks) == [f"st-{i}" for i in range(4)]
    with pytest.raises(BudgetExhausted):
        late.result(timeout_s=60)
    after = worker.work.remote("after-stream", 0.01, qos="critical", budget_ms=60_000).result(timeout_s=60)
    log = worker.log.remote().result(timeout_s=10)
    assert after == "after-stream" and "behind-stream" not in log
    assert log.index("st-end") < log.index("after-stream")
    assert list(worker.options(stream=True).sync_stream.remote(3, qos="critical", budget_ms=60_000)) == [0, 1, 2]
    _wait_idle(worker)
