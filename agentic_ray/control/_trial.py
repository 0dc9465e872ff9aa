"""Policy trials: a new version as a canary on part of the cluster, or in shadow beside the live one.
Pure: no Ray, no clock (``now`` comes in).

**Canary** (``start_canary``). The new version governs a fraction of the nodes (their agents' leases)
and of each deployment's replicas (their admission gates); routers and the other nodes and replicas
keep the baseline. The choice is deterministic, a ranking by ``sha256(policy sha256 + id)`` (the same
policy picks the same nodes and replicas on every coordinator, and a replica that joins later lands
on the same side each time it is asked), and made per zone (and per deployment and zone for replicas):
``round(fraction * n)`` of each group, never all of it, so every zone keeps a baseline node and every
deployment a baseline replica in each zone. A canary must not change where data may go: when the new
version changes the placement rules, tenants' regions or the data classes' residency
(``placement_changes``), it is refused (roll it out whole after ``policy diff``, or run it in shadow
first); so during a canary every request may go where it could before, and only budgets, classes,
admission and actions differ.

**Judging** (``judge``). Over the last ``window_s`` the canary's replicas and the baseline's are
compared by error-budget burn rate (``(bad / count) / (1 - slo_target)``, the ``DriftDetector``'s
measure) and p99, from the replicas' reports per policy version (``ReplicaWindow.by_version``):

- rollback as soon as the canary has ``min_samples`` and its burn rate exceeds the baseline's by more
  than ``margin`` (burn-rate units: 1.0 means one whole error budget per window faster);
- promote once ``window_s`` has passed, the canary has ``min_samples`` and it is no worse: burn rate
  within the margin and p99 no more than ``p99_slack`` times the baseline's (when both are known);
- otherwise wait. A canary without traffic waits (promote or roll it back by hand).

The verdict names its figures in ``reason``, which the coordinator logs.

**Shadow** (``Trial`` of kind ``shadow``). The version is evaluated beside the live one by every router
on every request (classification, eligibility, admission) and acts on nothing; routers count the
differences and report them (``ShadowCounts``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._replica_window import WindowStats
from agentic_ray.policies import Policy

__all__ = [
    "CanarySettings",
    "ShadowCounts",
    "Trial",
    "Verdict",
    "canary_nodes",
    "canary_replicas",
    "judge",
    "placement_changes",
]


@dataclass(frozen=True, slots=True)
class CanarySettings:
    """How a canary is judged (see the module docstring)."""

    window_s: float = 60.0
    margin: float = 1.0
    min_samples: int = 20
    p99_slack: float = 1.2
    slo_target: float = 0.99

    def __post_init__(self) -> None:
        if not (isinstance(self.window_s, (int, float)) and self.window_s > 0):
            raise ValueError(f"canary_window_s: must be > 0, got {self.window_s!r}")
        if not (isinstance(self.margin, (int, float)) and self.margin >= 0 and math.isfinite(self.margin)):
            raise ValueError(f"canary_margin: must be >= 0, got {self.margin!r}")
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int) or self.min_samples < 1:
            raise ValueError(f"min_samples: must be an int >= 1, got {self.min_samples!r}")
        if not self.p99_slack >= 1.0:
            raise ValueError(f"p99_slack: must be >= 1, got {self.p99_slack!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"window_s": self.window_s, "margin": self.margin, "min_samples": self.min_samples,
                "p99_slack": self.p99_slack}  # fmt: skip


def check_fraction(fraction: Any) -> float:
    """``fraction`` as a float in (0, 1); ``ValueError`` naming ``canary`` otherwise."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"canary: must be a fraction in (0, 1), got {fraction!r}")
    return float(fraction)


def _rank(seed: str, ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def _take(seed: str, group: list[str], fraction: float) -> list[str]:
    """``round(fraction * n)`` of ``group`` by rank, never all of it."""
    k = min(len(group) - 1, round(fraction * len(group)))
    return _rank(seed, group)[:k] if k > 0 else []


def canary_nodes(nodes: Mapping[str, str], fraction: float, seed: str) -> tuple[str, ...]:
    """The canary's nodes of ``nodes`` (``{node id: zone}``): per zone, ``round(fraction * n)`` by rank,
    never a zone's last node. Empty when no zone has two nodes."""
    check_fraction(fraction)
    zones: dict[str, list[str]] = {}
    for node, zone in nodes.items():
        zones.setdefault(zone, []).append(node)
    return tuple(sorted(n for group in zones.values() for n in _take(seed, group, fraction)))


def canary_replicas(
    replicas: Mapping[str, tuple[str, str, str]], seed: str, fraction: float | None, nodes: Iterable[str] = ()
) -> tuple[str, ...]:
    """The canary's replicas of ``replicas`` (``{replica id: (deployment, zone, node id)}``): with a
    ``fraction``, ``round(fraction * n)`` by rank per (deployment, zone); else those on ``nodes``; either
    way never every replica of a (deployment, zone)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for rid, (deployment, zone, _) in replicas.items():
        groups.setdefault((deployment, zone), []).append(rid)
    on = set(nodes)
    out: list[str] = []
    for group in groups.values():
        if fraction is not None:
            out.extend(_take(seed, group, fraction))
        else:
            picked = [r for r in _rank(seed, group) if replicas[r][2] in on]
            out.extend(picked[: len(group) - 1])
    return tuple(sorted(out))


def placement_changes(old: Policy, new: Policy) -> list[str]:
    """What ``new`` changes about where data may go (placement rules, tenants' regions, residency of data
    classes); empty when nothing. A canary of such a change is refused."""
    out = []
    if [r.model_dump() for r in old.spec.rules] != [r.model_dump() for r in new.spec.rules]:
        out.append("rules")
    if {n: t.region for n, t in old.spec.tenants.items()} != {n: t.region for n, t in new.spec.tenants.items()}:
        out.append("tenants' regions")
    if old.residency_data_classes != new.residency_data_classes:
        out.append("data classes' residency")
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """``promote`` or ``rollback``, with the figures that decided it."""

    action: str
    reason: str


def judge(settings: CanarySettings, canary: WindowStats | None, baseline: WindowStats | None, started_at: float,
          now: float) -> Verdict | None:  # fmt: skip
    """The canary's verdict at ``now`` (None: keep waiting); see the module docstring."""
    if canary is None or canary.count < settings.min_samples:
        return None
    slo = settings.slo_target
    c_burn = canary.burn_rate(slo)
    b_burn = baseline.burn_rate(slo) if baseline is not None and baseline.count else 0.0
    figures = f"canary burn rate {c_burn:.2f} over {canary.count} requests, baseline {b_burn:.2f}"
    if baseline is not None and baseline.count:
        figures += f" over {baseline.count}"
    if c_burn > b_burn + settings.margin:
        return Verdict("rollback", f"{figures}: exceeds the baseline's by more than the margin {settings.margin:g}")
    if now - started_at < settings.window_s:
        return None
    c_p99, b_p99 = canary.p99_ms(), baseline.p99_ms() if baseline is not None else None
    if c_p99 is not None and b_p99 is not None:
        figures += f"; p99 {c_p99:.1f} ms vs {b_p99:.1f} ms"
        if c_p99 > settings.p99_slack * b_p99:
            return Verdict("rollback", f"{figures}: p99 over {settings.p99_slack:g}x the baseline's")
    return Verdict("promote", f"{figures}: no worse after {settings.window_s:g} s")


@dataclass(slots=True)
class ShadowCounts:
    """What a shadow version would have done differently, summed over routers: requests ``evaluated``,
    it ``would_refuse`` (classification or entitlement), ``would_place_elsewhere`` (the live choice is not
    eligible under it), ``would_shed`` (its budget for a sheddable class is predicted to be missed)."""

    evaluated: int = 0
    would_refuse: int = 0
    would_place_elsewhere: int = 0
    would_shed: int = 0

    def add(self, other: Mapping[str, Any]) -> None:
        for name in ("evaluated", "would_refuse", "would_place_elsewhere", "would_shed"):
            setattr(self, name, getattr(self, name) + int(other.get(name, 0) or 0))

    def to_dict(self) -> dict[str, int]:
        return {"evaluated": self.evaluated, "would_refuse": self.would_refuse,
                "would_place_elsewhere": self.would_place_elsewhere, "would_shed": self.would_shed}  # fmt: skip


@dataclass(slots=True)
class Trial:
    """A policy on trial: ``kind`` ``canary`` or ``shadow``; the canary's nodes, fraction and settings;
    the baseline it is compared with; per router the shadow counts it reported last (cumulative)."""

    kind: str
    policy: Policy
    source: str
    started_at: float
    baseline_sha: str
    fraction: float | None = None
    nodes: tuple[str, ...] = ()
    settings: CanarySettings = field(default_factory=CanarySettings)
    by: str | None = None
    shadow: dict[str, dict[str, int]] = field(default_factory=dict)
    replicas: tuple[str, ...] = ()

    def shadow_totals(self) -> ShadowCounts:
        totals = ShadowCounts()
        for counts in self.shadow.values():
            totals.add(counts)
        return totals

    def to_dict(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "version": self.policy.version, "sha256": self.policy.sha256, "source": self.source,
            "started_at": self.started_at, "age_s": now - self.started_at, "baseline_sha": self.baseline_sha,
            "by": self.by,
        }  # fmt: skip
        if self.kind == "canary":
            out |= {"fraction": self.fraction, "nodes": list(self.nodes), "replicas": list(self.replicas),
                    "settings": self.settings.to_dict()}  # fmt: skip
        else:
            out["shadow"] = self.shadow_totals().to_dict()
        return out
