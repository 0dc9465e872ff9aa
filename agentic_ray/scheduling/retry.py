"""RetryBudget: retries are allowed for at most ``ratio`` of requests plus a floor (Finagle RetryBudget).

Over a sliding window of ``window_s`` seconds::

    allowed_retries = ratio * requests_in_window + min_per_s * window_s

A retry (or hedge) is allowed when ``retries_in_window < allowed_retries``, the attempt number is below
``max_attempts``, and the remaining budget still covers the expected time of one more attempt
(``remaining_ms >= expected_ms``). Finagle's ``RetryBudget(ttl, minRetriesPerSec, percentCanRetry)``
is the model: deposits per request, a reserve per second, withdrawals per retry.

``attempt`` counts the attempts made so far (1 after the first try failed).
"""

from __future__ import annotations

from collections import deque

from agentic_ray.policies.types import RetrySettings

__all__ = ["RetryBudget"]


class RetryBudget:
    """A Finagle-style retry budget on the caller's clock (see the module docstring)."""

    def __init__(self, settings: RetrySettings | None = None, *, window_s: float = 10.0) -> None:
        self.settings = settings if settings is not None else RetrySettings()
        if not window_s > 0:
            raise ValueError(f"window_s: must be > 0, got {window_s!r}")
        if self.settings.ratio < 0 or self.settings.min_per_s < 0 or self.settings.max_attempts < 1:
            raise ValueError(f"settings: ratio and min_per_s must be >= 0, max_attempts >= 1: {self.settings}")
        self.window_s = window_s
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        for q in (self._requests, self._retries):
            while q and q[0] <= horizon:
                q.popleft()

    def record_request(self, now: float) -> None:
        """Count one first attempt (a deposit). Deposits older than the window leave here too, so a
        budget that is never drawn on stays one window long."""
        requests = self._requests
        requests.append(now)
        horizon = now - self.window_s
        while requests[0] <= horizon:
            requests.popleft()

    def allowed(self, now: float) -> float:
        """Retries the window allows at ``now`` (including those already spent)."""
        self._trim(now)
        s = self.settings
        return s.ratio * len(self._requests) + s.min_per_s * self.window_s

    def spent(self, now: float) -> int:
        """Retries spent in the window."""
        self._trim(now)
        return len(self._retries)

    def can_retry(self, attempt: int, remaining_ms: float, expected_ms: float, now: float) -> bool:
        """Whether one more attempt is allowed; does not spend it."""
        if attempt >= self.settings.max_attempts or remaining_ms < expected_ms:
            return False
        allowed = self.allowed(now)  # trims the window first
        return len(self._retries) < allowed

    def try_acquire(self, attempt: int, remaining_ms: float, expected_ms: float, now: float) -> bool:
        """``can_retry`` and, when true, spend one retry."""
        if not self.can_retry(attempt, remaining_ms, expected_ms, now):
            return False
        self._retries.append(now)
        return True
