from __future__ import annotations

import pytest

from agentic_ray.policies.types import BreakerSettings
from agentic_ray.scheduling.breaker import BreakerState, CircuitBreaker
from agentic_ray.testing.clock import ManualClock

SETTINGS = BreakerSettings(consecutive_failures=3, ejection_s=5.0, max_ejection_s=12.0, max_ejected_fraction=0.5)


def fail(b, rid, n, now):
    for _ in range(n):
        b.record(rid, False, None, now)


def test_consecutive_failures_eject_and_success_resets():
    b = CircuitBreaker(SETTINGS, ["a", "b", "c", "d"])
    fail(b, "a", 2, 0.0)
    b.record("a", True, 10.0, 0.0)
    fail(b, "a", 2, 0.0)
    assert b.state("a", 0.0) is BreakerState.CLOSED
    fail(b, "a", 1, 0.0)
    assert b.state("a", 0.0) is BreakerState.OPEN
    assert not b.available("a", 1.0)
    assert b.retry_after_s("a", 1.0) == pytest.approx(4.0)


def test_half_open_single_probe_then_close():
    clock = ManualClock()
    b = CircuitBreaker(SETTINGS, ["a", "b"])
    fail(b, "a", 3, clock.now())
    clock.advance(5.0)
    assert b.state("a", clock.now()) is BreakerState.HALF_OPEN
    assert b.available("a", clock.now())
    b.on_dispatch("a", clock.now())
    assert not b.available("a", clock.now())  # only one probe
    assert b.record("a", True, 12.0, clock.now()) is BreakerState.CLOSED
    assert b.available("a", clock.now())


def test_failed_probe_doubles_ejection_capped():
    clock = ManualClock()
    b = CircuitBreaker(SETTINGS, ["a", "b"])
    fail(b, "a", 3, clock.now())  # 5 s
    durations = []
    for _ in range(3):
        clock.advance(b.retry_after_s("a", clock.now()))
        b.on_dispatch("a", clock.now())
        assert b.record("a", False, None, clock.now()) is BreakerState.OPEN
        durations.append(b.retry_after_s("a", clock.now()))
    assert durations == [10.0, 12.0, 12.0]


def test_result_without_probe_in_half_open_is_ignored():
    b = CircuitBreaker(SETTINGS, ["a", "b"])
    fail(b, "a", 3, 0.0)
    assert b.record("a", True, 1.0, 6.0) is BreakerState.HALF_OPEN
    assert b.available("a", 6.0)


def test_max_ejected_fraction():
    b = CircuitBreaker(SETTINGS, ["a", "b", "c", "d"])  # at most 2 of 4 out
    for rid in "abc":
        fail(b, rid, 3, 0.0)
    assert b.ejected(0.0) == ["a", "b"]
    assert b.state("c", 0.0) is BreakerState.CLOSED


def test_latency_outlier():
    s = BreakerSettings(consecutive_failures=100, latency_outlier_factor=3.0, max_ejected_fraction=0.5)
    b = CircuitBreaker(s, ["a", "b", "c", "d"])
    for rid, ms in (("a", 10.0), ("b", 12.0), ("c", 11.0)):
        b.record(rid, True, ms, 0.0)
    assert b.record("d", True, 30.0, 0.0) is BreakerState.CLOSED  # 30 <= 3 * median(10, 11, 12, 30)=33
    assert b.record("d", True, 200.0, 0.0) is BreakerState.OPEN  # ewma 81 > 3 * 11.5


def test_bad_settings():
    with pytest.raises(ValueError, match="max_ejected_fraction"):
        CircuitBreaker(BreakerSettings(max_ejected_fraction=1.5))
    with pytest.raises(ValueError, match="ejection_s"):
        CircuitBreaker(BreakerSettings(ejection_s=10.0, max_ejection_s=1.0))


def _twice_ejected_then_recovered():
    from agentic_ray.policies.types import BreakerSettings
    from agentic_ray.scheduling.breaker import BreakerState, CircuitBreaker

    b = CircuitBreaker(
        BreakerSettings(consecutive_failures=1, ejection_s=1.0, max_ejection_s=60, max_ejected_fraction=1.0), ["r"]
    )
    b.record("r", False, None, 0.0)  # ejected for 1 s
    assert b.retry_after_s("r", 0.0) == 1.0
    b.on_dispatch("r", 1.0)  # half-open probe
    b.record("r", False, None, 1.0)  # fails: ejected for 2 s
    assert b.retry_after_s("r", 1.0) == 2.0
    b.on_dispatch("r", 3.0)
    b.record("r", True, 5.0, 3.0)  # probe succeeds
    assert b.state("r", 3.0) is BreakerState.CLOSED
    return b


def test_ejection_time_doubles_while_failures_recur():
    b = _twice_ejected_then_recovered()
    b.record("r", False, None, 3.5)  # fails again soon after: third ejection, 4 s
    assert b.retry_after_s("r", 3.5) == 4.0


def test_ejection_multiplier_decays_after_staying_healthy():
    b = _twice_ejected_then_recovered()
    b.record("r", True, 5.0, 3.0 + 2.0 + 1.0)  # closed for 2 s then 1 s more: multiplier back to 0
    b.record("r", False, None, 6.0)
    assert b.retry_after_s("r", 6.0) == 1.0
