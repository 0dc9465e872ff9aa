"""Arrival processes: the times (seconds from 0) at which requests reach the router.

- Poisson(rate): i.i.d. exponential inter-arrival gaps of mean 1/rate.
- MMPP (two-state Markov-modulated Poisson process, Fischer & Meier-Hellstern 1993): Poisson at
  ``base_rps`` in the base state and ``burst_rps`` in the burst state. With ``switching="exponential"``
  the state sojourns are exponential with means ``burst_every_s - burst_for_s`` (base) and
  ``burst_for_s`` (burst), a true MMPP; with ``switching="periodic"`` a burst of ``burst_for_s`` starts
  every ``burst_every_s`` seconds (at ``burst_every_s - burst_for_s``, ...), so short runs see bursts too.
  Long-run rate: (base * (every - for) + burst * for) / every.
- Ramp(from, to): a non-homogeneous Poisson process whose rate rises linearly from ``from_rps`` to
  ``to_rps`` over the run, sampled by thinning (Lewis & Shedler 1979): candidates at the peak rate,
  each kept with probability rate(t) / peak.
- Trace: explicit arrival records read from a CSV file (``at_s``, ``class``, ``model``, ``tenant``, and
  from ``agentic-ray trace export``: ``workflow``, ``stage``, ``data_class``, ``service_ms``, the
  observed service time, which a replay uses on every replica group instead of a sampled one).

Every generator takes its ``random.Random`` and reads nothing global.
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass

__all__ = ["TraceRecord", "mmpp_arrivals", "poisson_arrivals", "ramp_arrivals", "read_trace"]


def poisson_arrivals(rate_rps: float, duration_s: float, rng: random.Random, start_s: float = 0.0) -> list[float]:
    """Arrival times of a Poisson process of ``rate_rps`` on ``[start_s, start_s + duration_s)``."""
    if rate_rps <= 0 or duration_s <= 0:
        raise ValueError("rate_rps and duration_s must be > 0")
    out: list[float] = []
    end = start_s + duration_s
    t = start_s + rng.expovariate(rate_rps)
    while t < end:
        out.append(t)
        t += rng.expovariate(rate_rps)
    return out


def mmpp_arrivals(
    base_rps: float,
    burst_rps: float,
    burst_every_s: float,
    burst_for_s: float,
    duration_s: float,
    rng: random.Random,
    switching: str = "exponential",
) -> list[float]:
    """Arrival times of a two-state MMPP on ``[0, duration_s)`` (see the module docstring)."""
    if not 0 < burst_for_s < burst_every_s:
        raise ValueError("need 0 < burst_for_s < burst_every_s")
    out: list[float] = []
    t = 0.0
    in_burst = False
    while t < duration_s:
        if switching == "periodic":
            sojourn = burst_for_s if in_burst else burst_every_s - burst_for_s
        else:
            sojourn = rng.expovariate(1.0 / (burst_for_s if in_burst else burst_every_s - burst_for_s))
        length = min(sojourn, duration_s - t)
        if length > 0:
            out.extend(poisson_arrivals(burst_rps if in_burst else base_rps, length, rng, start_s=t))
        t += sojourn
        in_burst = not in_burst
    return out


def ramp_arrivals(from_rps: float, to_rps: float, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival times of a Poisson process whose rate goes linearly from ``from_rps`` to ``to_rps``."""
    if from_rps <= 0 or to_rps <= 0 or duration_s <= 0:
        raise ValueError("rates and duration_s must be > 0")
    peak = max(from_rps, to_rps)
    slope = (to_rps - from_rps) / duration_s
    return [t for t in poisson_arrivals(peak, duration_s, rng) if rng.random() * peak < from_rps + slope * t]


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One arrival of a trace file; empty columns are ``None``."""

    at_s: float
    qos: str | None = None
    model: str | None = None
    tenant: str | None = None
    workflow: str | None = None
    stage: str | None = None
    data_class: str | None = None
    service_ms: float | None = None


def _service(path: str | os.PathLike[str], row_no: int, value: str | None) -> float | None:
    if not value:
        return None
    try:
        ms = float(value)
    except ValueError:
        raise ValueError(f"{path}:{row_no}: service_ms is not a number: {value!r}") from None
    if not ms > 0 or ms == float("inf"):
        raise ValueError(f"{path}:{row_no}: service_ms must be a finite number > 0, got {value!r}")
    return ms


def read_trace(path: str | os.PathLike[str]) -> list[TraceRecord]:
    """Read a CSV trace with a header row: ``at_s`` (required), ``class``, ``model``, ``tenant``,
    ``workflow``, ``stage``, ``data_class``, ``service_ms`` (optional; empty is unknown).

    Extra columns are ignored; records are returned sorted by time. A missing ``at_s`` column or a
    value that is not a number >= 0 (``at_s``) or > 0 (``service_ms``) raises ``ValueError`` naming the row.
    """
    records: list[TraceRecord] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "at_s" not in reader.fieldnames:
            raise ValueError(f"{path}: trace needs a header row with an at_s column")
        for row_no, row in enumerate(reader, start=2):
            try:
                at = float(row["at_s"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{row_no}: at_s is not a number: {row['at_s']!r}") from None
            if not at >= 0:
                raise ValueError(f"{path}:{row_no}: at_s must be >= 0, got {at}")
            records.append(
                TraceRecord(at, row.get("class") or None, row.get("model") or None, row.get("tenant") or None,
                            row.get("workflow") or None, row.get("stage") or None, row.get("data_class") or None,
                            _service(path, row_no, row.get("service_ms")))
            )  # fmt: skip
    records.sort(key=lambda r: r.at_s)
    return records
