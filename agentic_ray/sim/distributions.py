"""Service-time distributions (milliseconds), sampled from a caller-supplied ``random.Random``.

- exponential(mean): the M in M/M/k.
- deterministic(mean): the D in M/D/1.
- lognormal(mean, cv): parameterised by its mean and coefficient of variation, with
  sigma^2 = ln(1 + cv^2) and mu = ln(mean) - sigma^2 / 2 (so E[X] = mean, sd = cv * mean).
- bimodal(fast_ms, slow_ms, slow_fraction, cv): a mixture, the classic head-of-line-blocking workload;
  each mode is deterministic (cv = 0) or lognormal around its value.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Bimodal", "Deterministic", "Exponential", "LogNormal", "ServiceDistribution"]


@dataclass(frozen=True, slots=True)
class Exponential:
    """Exponential service time with mean ``mean_ms``."""

    mean_ms: float

    @property
    def mean(self) -> float:
        return self.mean_ms

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean_ms)


@dataclass(frozen=True, slots=True)
class Deterministic:
    """Always ``mean_ms``."""

    mean_ms: float

    @property
    def mean(self) -> float:
        return self.mean_ms

    def sample(self, rng: random.Random) -> float:
        return self.mean_ms


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Log-normal with mean ``mean_ms`` and coefficient of variation ``cv`` (sd / mean)."""

    mean_ms: float
    cv: float

    @property
    def mean(self) -> float:
        return self.mean_ms

    def sample(self, rng: random.Random) -> float:
        if self.cv <= 0:
            return self.mean_ms
        sigma2 = math.log1p(self.cv * self.cv)
        return rng.lognormvariate(math.log(self.mean_ms) - sigma2 / 2.0, math.sqrt(sigma2))


@dataclass(frozen=True, slots=True)
class Bimodal:
    """``slow_ms`` with probability ``slow_fraction``, else ``fast_ms``; each mode log-normal with ``cv``."""

    fast_ms: float
    slow_ms: float
    slow_fraction: float
    cv: float = 0.0

    @property
    def mean(self) -> float:
        return self.fast_ms + self.slow_fraction * (self.slow_ms - self.fast_ms)

    def sample(self, rng: random.Random) -> float:
        base = self.slow_ms if rng.random() < self.slow_fraction else self.fast_ms
        if self.cv <= 0:
            return base
        sigma2 = math.log1p(self.cv * self.cv)
        return rng.lognormvariate(math.log(base) - sigma2 / 2.0, math.sqrt(sigma2))


ServiceDistribution = Exponential | Deterministic | LogNormal | Bimodal
