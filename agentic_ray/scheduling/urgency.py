"""Urgent dispatch rates: how fast a router sends more urgent work to each replica.

The replicas' ``AdmissionGate`` starts queued work by class priority, so a request that has to queue
also waits for every more urgent request that reaches its replica before it starts. The router knows
what it sends: per replica and class priority it keeps an exponentially decayed dispatch rate
``lambda_q`` with time constant ``tau`` (one dispatch adds ``1 / tau``, so a steady rate converges to the
dispatches per second). The load that work more urgent than priority ``p`` puts on a replica, per slot,
at ``m`` ms per request is::

    rho_h = sum_{q < p} lambda_q * m / 1000 / slots

(Cobham, "Priority assignment in waiting line problems", Oper. Res. 1954; Kleinrock, Queueing Systems
vol. 2, ch. 3: the non-preemptive priority queue; the router turns ``rho_h`` into a busy period).

Cost. Rates are stored scaled to an epoch, ``rate(now) = scaled * exp((epoch - now) / tau)``, so one
``exp`` per decision decays them all (``unit(now)``); the epoch moves, rescaling every rate, once every
``_REBASE`` time constants so ``exp`` stays finite. For every priority level seen, ``below(p)`` caches
the scaled sum over the priorities under it per replica, so a decision reads one number per replica.
It measures; it never decides. Pure: time comes in as ``now``.
"""

from __future__ import annotations

import math

__all__ = ["UrgentRates"]

_REBASE = 200.0  # time constants between epoch moves (exp(200) is finite)


class UrgentRates:
    """Decayed dispatch rates per replica and priority (module docstring). ``tau_s`` > 0."""

    __slots__ = ("_below", "_epoch", "_rates", "tau_s")

    def __init__(self, tau_s: float = 1.0) -> None:
        if not (tau_s > 0 and math.isfinite(tau_s)):
            raise ValueError(f"tau_s: must be a finite number > 0, got {tau_s!r}")
        self.tau_s = tau_s
        self._rates: dict[str, dict[int, float]] = {}  # replica id -> priority -> scaled rate
        self._below: dict[int, dict[str, float]] = {}  # level p -> replica id -> scaled sum over q < p
        self._epoch: float | None = None

    def on_dispatch(self, replica_id: str, priority: int, now: float) -> None:
        """One request of ``priority`` was sent to ``replica_id`` at ``now``."""
        tau = self.tau_s
        epoch = self._epoch
        if epoch is None:
            epoch = self._epoch = now
        elif now - epoch > _REBASE * tau:
            epoch = self._rebase(now)
        if priority not in self._below:
            self._add_level(priority)
        by_prio = self._rates.get(replica_id)
        if by_prio is None:
            by_prio = self._rates[replica_id] = {}
        inc = math.exp((now - epoch) / tau) / tau
        by_prio[priority] = by_prio.get(priority, 0.0) + inc
        for level, table in self._below.items():
            if level > priority:
                table[replica_id] = table.get(replica_id, 0.0) + inc

    def _rebase(self, now: float) -> float:
        factor = math.exp((self._epoch - now) / self.tau_s)  # type: ignore[operator]  # 0.0 after a long idle: fine
        for by_prio in self._rates.values():
            for prio in by_prio:
                by_prio[prio] *= factor
        for by_replica in self._below.values():
            for rid in by_replica:
                by_replica[rid] *= factor
        self._epoch = now
        return now

    def _add_level(self, level: int) -> dict[str, float]:
        table = self._below[level] = {
            rid: sum(v for q, v in by_prio.items() if q < level) for rid, by_prio in self._rates.items()
        }
        return table

    def below(self, priority: int) -> dict[str, float] | None:
        """Replica id -> scaled rate of work more urgent than ``priority`` (multiply by ``unit(now)`` and
        by ms per slot for ``rho_h``); None before the first dispatch. Do not modify the result."""
        if self._epoch is None:
            return None
        table = self._below.get(priority)
        return table if table is not None else self._add_level(priority)

    def unit(self, now: float) -> float:
        """The factor from a scaled rate to a load per ms of service: ``exp((epoch - now) / tau) / 1000``."""
        if self._epoch is None:
            return 0.0
        return math.exp((self._epoch - now) / self.tau_s) / 1000.0

    def load(self, replica_id: str, priority: int, service_ms: float, slots: int, now: float) -> float:
        """``rho_h`` of ``replica_id`` for a request of ``priority`` at ``service_ms`` per request."""
        by_prio = self._rates.get(replica_id)
        if not by_prio:
            return 0.0
        scaled = sum(v for q, v in by_prio.items() if q < priority)
        return scaled * self.unit(now) * service_ms / slots
