from __future__ import annotations

import pytest

from agentic_ray.policies.types import RetrySettings
from agentic_ray.scheduling.retry import RetryBudget


def test_floor_allows_min_per_s_times_window():
    b = RetryBudget(RetrySettings(ratio=0.0, min_per_s=0.5, max_attempts=5), window_s=10.0)
    assert sum(b.try_acquire(1, 1000, 10, 0.0) for _ in range(10)) == 5
    assert not b.can_retry(1, 1000, 10, 9.9)
    assert b.can_retry(1, 1000, 10, 10.0)  # the first retries left the window


def test_ratio_of_requests():
    b = RetryBudget(RetrySettings(ratio=0.1, min_per_s=0.0, max_attempts=5), window_s=10.0)
    for _ in range(50):
        b.record_request(0.0)
    assert b.allowed(0.0) == 5.0
    assert sum(b.try_acquire(1, 1000, 10, 1.0) for _ in range(20)) == 5
    assert b.spent(1.0) == 5
    for _ in range(10):
        b.record_request(2.0)
    assert b.try_acquire(1, 1000, 10, 2.0)
    assert not b.try_acquire(1, 1000, 10, 2.0)


def test_max_attempts_and_remaining_budget():
    b = RetryBudget(RetrySettings(ratio=1.0, min_per_s=10.0, max_attempts=3))
    assert b.can_retry(2, 100.0, 50.0, 0.0)
    assert not b.can_retry(3, 100.0, 50.0, 0.0)
    assert not b.can_retry(1, 40.0, 50.0, 0.0)
    assert b.spent(0.0) == 0  # can_retry does not spend


def test_deposits_leave_the_window_even_when_nothing_is_drawn():
    b = RetryBudget(RetrySettings(ratio=0.5, min_per_s=0.0, max_attempts=3), window_s=10.0)
    for k in range(1000):
        b.record_request(k * 0.1)  # 100 s of requests, no retry ever asked for
    assert len(b._requests) <= 101  # the last window's deposits only
    assert b.allowed(99.9) == pytest.approx(0.5 * 100)
