"""Load estimators: they measure, they never decide (tower's ``Load`` / Finagle's load metrics).

- ``Ewma`` -- exponentially weighted moving average of samples: ``e <- e + alpha * (x - e)``; the
  first sample initialises it. Used for service times.
- ``EwmaServiceTime`` -- one ``Ewma`` per model (plus one over all models) for one replica; the
  admission gate and routers read ``estimate(model)`` in milliseconds.
- ``PeakEwma`` -- peak-sensitive, time-decayed latency (Finagle ``PeakEwma``, Linkerd / tower
  ``PeakEwma``): a sample above the estimate replaces it at once; otherwise
  ``e <- e * w + x * (1 - w)`` with ``w = exp(-dt / decay_s)``. Reads decay the estimate toward 0
  with the time since the last sample, so an idle replica looks cheaper over time. Its ``load(pending)``
  is ``estimate * (pending + 1)``, the cost Finagle's P2C balancer compares.
- ``MeanDeviation`` -- smoothed mean plus smoothed mean absolute deviation (Jacobson/Karels, "Congestion
  Avoidance and Control", SIGCOMM 1988; RFC 6298 for TCP's RTO); ``upper(k) = mean + k * dev`` is a
  tail-aware prediction of the next sample.
- ``PendingRequests`` -- requests sent and not yet answered.

All take ``now`` (seconds) as an argument; none reads a clock.
"""

from __future__ import annotations

import math

__all__ = ["Ewma", "EwmaServiceTime", "MeanDeviation", "PeakEwma", "PendingRequests"]


def _check_sample(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"value: must be a finite number >= 0, got {value!r}")
    return float(value)


class Ewma:
    """EWMA of samples with smoothing ``alpha`` in (0, 1]. ``estimate()`` is ``None`` before any sample."""

    __slots__ = ("_alpha", "_value", "count", "last_at")

    def __init__(self, alpha: float = 0.2, initial: float | None = None) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha: must be in (0, 1], got {alpha!r}")
        self._alpha = alpha
        self._value = None if initial is None else _check_sample(initial)
        self.count = 0
        self.last_at: float | None = None

    def observe(self, value: float, now: float) -> None:
        """Add one sample taken at ``now``."""
        x = _check_sample(value)
        self._value = x if self._value is None else self._value + self._alpha * (x - self._value)
        self.count += 1
        self.last_at = now

    def estimate(self) -> float | None:
        """The current average, or ``None`` when nothing was observed and no initial value was given."""
        return self._value

    def load(self) -> float:
        """The estimate, 0.0 when unknown."""
        return 0.0 if self._value is None else self._value


class EwmaServiceTime:
    """EWMA service time (ms) of one replica, per model and over all models.

    ``estimate(model)`` falls back to the all-models average, then to ``default_ms`` (``None`` by default).
    """

    __slots__ = ("_all", "_alpha", "_by_model", "default_ms")

    def __init__(self, alpha: float = 0.2, default_ms: float | None = None) -> None:
        self._alpha = alpha
        self._all = Ewma(alpha)
        self._by_model: dict[str, Ewma] = {}
        self.default_ms = default_ms

    def observe(self, value: float, now: float, model: str = "default") -> None:
        """Record one measured service time ``value`` (ms) of ``model``."""
        ewma = self._by_model.get(model)
        if ewma is None:
            ewma = self._by_model[model] = Ewma(self._alpha)
        ewma.observe(value, now)
        self._all.observe(value, now)

    def estimate(self, model: str | None = None) -> float | None:
        """Service time in ms of ``model`` (or over all models when ``None``)."""
        if model is not None:
            ewma = self._by_model.get(model)
            if ewma is not None:
                return ewma.estimate()
        value = self._all.estimate()
        return self.default_ms if value is None else value

    def load(self) -> float:
        """The all-models estimate, 0.0 when unknown."""
        value = self.estimate()
        return 0.0 if value is None else value

    def by_model(self) -> dict[str, float]:
        """Every model's current estimate (ms)."""
        return {m: e.load() for m, e in self._by_model.items()}


class PeakEwma:
    """Peak-EWMA latency (ms), Finagle/Linkerd style. See the module docstring for the formula."""

    __slots__ = ("_at", "_value", "decay_s")

    def __init__(self, decay_s: float = 10.0, initial_ms: float = 0.0) -> None:
        if not decay_s > 0:
            raise ValueError(f"decay_s: must be > 0, got {decay_s!r}")
        self.decay_s = decay_s
        self._value = _check_sample(initial_ms)
        self._at: float | None = None

    def _decayed(self, now: float) -> float:
        if self._at is None:
            return self._value
        dt = max(0.0, now - self._at)
        return self._value * math.exp(-dt / self.decay_s)

    def observe(self, value: float, now: float) -> None:
        """Add one latency sample (ms) seen at ``now``."""
        x = _check_sample(value)
        if x > self._value:  # compared with the undecayed cost, as Finagle does
            self._value = x
        else:
            w = 1.0 if self._at is None else math.exp(-max(0.0, now - self._at) / self.decay_s)
            self._value = self._value * w + x * (1.0 - w)
        self._at = now

    def estimate(self, now: float) -> float:
        """The latency estimate (ms) at ``now``, decayed since the last sample."""
        return self._decayed(now)

    def load(self, now: float, pending: int = 0) -> float:
        """Finagle's P2C cost: ``estimate(now) * (pending + 1)``."""
        return self._decayed(now) * (pending + 1)


class PendingRequests:
    """Count of requests in flight. ``finish`` never takes it below zero."""

    __slots__ = ("_n",)

    def __init__(self) -> None:
        self._n = 0

    def start(self) -> None:
        """One request sent."""
        self._n += 1

    def finish(self) -> None:
        """One request answered (or abandoned)."""
        if self._n > 0:
            self._n -= 1

    def observe(self, value: float, now: float) -> None:
        """Set the count from a report (``value`` requests in flight at ``now``)."""
        self._n = max(0, int(value))

    def load(self) -> int:
        """Requests in flight."""
        return self._n


class MeanDeviation:
    """Smoothed mean and mean deviation of samples (Jacobson/Karels, as TCP's RTO: RFC 6298 section 2).

    On the first sample ``x``: ``mean = x``, ``dev = x / 2``. Then, with ``err = x - mean``::

        dev  <- dev + beta * (|err| - dev)
        mean <- mean + alpha * err

    ``upper(k)`` is ``mean + k * dev``: TCP uses k = 4 for its retransmission timeout; a router that
    wants a likely-but-not-worst-case completion uses a smaller k (e.g. 2). ``estimate()`` is the mean,
    so it can stand in for an ``Ewma``.
    """

    __slots__ = ("_alpha", "_beta", "count", "dev", "last_at", "mean")

    def __init__(self, alpha: float = 0.125, beta: float = 0.25) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha: must be in (0, 1], got {alpha!r}")
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta: must be in (0, 1], got {beta!r}")
        self._alpha = alpha
        self._beta = beta
        self.mean: float | None = None
        self.dev = 0.0
        self.count = 0
        self.last_at: float | None = None

    def observe(self, value: float, now: float, alpha: float | None = None) -> None:
        """Add one sample taken at ``now`` (deviation first, with the old mean, as RFC 6298 orders it);
        ``alpha``: this sample's weight in the mean instead of the configured one (a caller that weighs
        samples by the time since the last one)."""
        x = _check_sample(value)
        if self.mean is None:
            self.mean = x
            self.dev = x / 2.0
        else:
            err = x - self.mean
            self.dev += self._beta * (abs(err) - self.dev)
            self.mean += (self._alpha if alpha is None else alpha) * err
        self.count += 1
        self.last_at = now

    def estimate(self) -> float | None:
        """The smoothed mean, or ``None`` before any sample."""
        return self.mean

    def upper(self, k: float = 2.0) -> float | None:
        """``mean + k * dev``, or ``None`` before any sample."""
        return None if self.mean is None else self.mean + k * self.dev
