"""What crosses processes on the control plane's report path, as typed values. Pure: no Ray, no clock.

Up the tree (every ``snapshot_interval_s`` / ``report_interval_s``, so these stay cheap to build and to
pickle: flat frozen dataclasses of plain fields, summaries shipped as ``ClassSummary`` objects instead of
being turned into dicts and back at every hop, see "Pickled form" below):

- ``NodeSnapshot``: one node as its agent sees it (in-flight and queued per class, closed classes, caps,
  EWMA service times, accelerator state, acknowledged policy, the agent's own process);
- ``PlacementFacts``: the part of a snapshot placement reads; an agent sends a snapshot between full
  reports only when these changed;
- ``AgentReport``: agent -> zone, a snapshot plus the summary delta since the previous full report
  (empty for a snapshot-only report);
- ``ZoneReport``: zone -> GlobalCoordinator, the zone's fresh snapshots, merged delta and registrations;
- ``ReplicaReport``: a Serve replica of an ``@agentic_ray.deployment`` -> its node's agent, per class
  since its previous report (``ReplicaClassStats``: offered, admitted, shed by reason, expired,
  completed, a latency histogram), its policy version and its slots; agents pass the latest one per
  replica up in their ``AgentReport`` and zones in their ``ZoneReport`` (``replicas``).

Down the tree: ``NodeLease``, one node's per-class caps from the allocator, and per-class caps for each
Serve replica on the node (``replica_caps``) (GlobalCoordinator -> zone -> agent -> replica).

Every value projects to the JSON shape the control plane used before these types (``to_dict``), which
is what ``agentic-ray status`` and the agents' ``stats()`` show.

**Wire versions.** ``WIRE_VERSION`` 4 added ``NodeSnapshot.process`` (the agent's process: niceness,
``_ray_env.process_env``), appended last with a default: a snapshot pickles as ``_node_snapshot_v4`` and
as fifteen fields inside agent and zone reports, whose constructors (v2, v3) build a snapshot of
fourteen fields (an older agent's) or fifteen alike. Version 3 added the Serve replicas (``ReplicaReport``,
``AgentReport.replicas``, ``ZoneReport.replicas``, ``NodeLease.replica_caps``, all defaulting to empty);
version 2 is the same types without them (its pickles still load); version 1 was plain dicts with the
keys ``to_dict``
writes (and a lease as four positional arguments). Consumers accept both (``from_wire``), so in a rolling
restart an agent still running the old code keeps reporting to a new zone, and an old zone to a new
GlobalCoordinator. The reverse is not handled: a process of the old code cannot read these types (a new
agent's reports fail at an old zone, counted in the agent's ``report_errors``, and its node stays in the
view without figures, ``reported`` false), so an upgrade restarts the consumers first: GlobalCoordinator, zones,
then agents (``agentic_ray.shutdown(stop_control_plane=True)`` stops them all and the next ``init``
starts new ones). Changing a field of a type here is a new wire version: append the new field with a
default, bump ``WIRE_VERSION``, add ``_<type>_v3`` constructors and keep the ``_v2`` ones (and
``from_wire``) reading the previous shape.

**Pickled form.** Ray sends an actor call's plain dicts and lists through msgpack and anything else
through pickle. Each class a pickled message names costs a lookup at both ends, and a slotted
dataclass's default pickling walks ``fields()`` at both ends, so these types pickle as one constructor
named for the wire version (``_agent_report_v2``) and tuples of plain values: one name per message.
A snapshot-only report still pays the pickle path's fixed cost that a dict did not; full reports and
zone forwards cost less than the dicts did, because summaries are no longer converted at every hop
(``benchmarks/report_round.py`` times both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._summary import ClassSummary, LatencyHistogram

__all__ = [
    "WIRE_VERSION",
    "AgentReport",
    "NodeLease",
    "NodeSnapshot",
    "PlacementFacts",
    "ReplicaClassStats",
    "ReplicaReport",
    "ZoneReport",
]

WIRE_VERSION = 4
"""Version of the report/lease wire shape (1: plain dicts; 2: the types of this module; 3: + Serve replicas)."""


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node as placement and the coordinators see it. ``inflight`` counts running plus queued tasks;
    ``inflight_by_class`` the running ones, ``queued_by_class`` those placed there and not started.
    ``at`` is the agent's wall clock when it took the snapshot; ``accelerator`` the probe's sample;
    ``process`` what the agent's process runs with (``_ray_env.process_env``: ``niceness``; empty from an
    agent of wire version 3 or older)."""

    node_id: str
    zone: str
    incarnation: str
    at: float
    started_at: float = 0.0
    attrs: Mapping[str, Any] = field(default_factory=dict)
    inflight: int = 0
    inflight_by_class: Mapping[str, int] = field(default_factory=dict)
    queued_by_class: Mapping[str, int] = field(default_factory=dict)
    closed_classes: tuple[str, ...] = ()
    service_ms: Mapping[str, float] = field(default_factory=dict)
    accelerator: Mapping[str, Any] = field(default_factory=dict)
    policy_sha: str | None = None
    caps: Mapping[str, int] = field(default_factory=dict)
    process: Mapping[str, Any] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _node_snapshot_v4, _snapshot_fields(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (wire version 1, and what ``stats()`` shows)."""
        return {
            "node_id": self.node_id,
            "zone": self.zone,
            "attrs": dict(self.attrs),
            "incarnation": self.incarnation,
            "started_at": self.started_at,
            "at": self.at,
            "inflight": self.inflight,
            "inflight_by_class": dict(self.inflight_by_class),
            "queued_by_class": dict(self.queued_by_class),
            "closed_classes": list(self.closed_classes),
            "service_ms": dict(self.service_ms),
            "accelerator": self.accelerator,
            "policy_sha": self.policy_sha,
            "caps": dict(self.caps),
            "process": dict(self.process),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeSnapshot:
        """Inverse of ``to_dict`` (a version-1 snapshot); ``KeyError`` names a missing required key."""
        return cls(
            node_id=str(data["node_id"]),
            zone=str(data.get("zone", "default")),
            incarnation=str(data["incarnation"]),
            at=float(data["at"]),
            started_at=float(data.get("started_at", 0.0)),
            attrs=dict(data.get("attrs") or {}),
            inflight=int(data.get("inflight", 0)),
            inflight_by_class=dict(data.get("inflight_by_class") or {}),
            queued_by_class=dict(data.get("queued_by_class") or {}),
            closed_classes=tuple(data.get("closed_classes") or ()),
            service_ms=dict(data.get("service_ms") or {}),
            accelerator=data.get("accelerator") or {},
            policy_sha=data.get("policy_sha"),
            caps=dict(data.get("caps") or {}),
            process=dict(data.get("process") or {}),
        )

    @classmethod
    def from_wire(cls, obj: NodeSnapshot | Mapping[str, Any]) -> NodeSnapshot:
        """``obj`` itself, or the snapshot a version-1 dict describes."""
        return obj if isinstance(obj, NodeSnapshot) else cls.from_dict(obj)


@dataclass(frozen=True, slots=True)
class PlacementFacts:
    """What placement reads from a node's snapshot, in a form that compares by value: running and queued
    tasks per class (sorted ``(class, n)`` pairs, zero counts left out), closed classes, caps, policy."""

    running: tuple[tuple[str, int], ...] = ()
    queued: tuple[tuple[str, int], ...] = ()
    closed: tuple[str, ...] = ()
    caps: tuple[tuple[str, int], ...] = ()
    policy_sha: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaClassStats:
    """One QoS class at one Serve replica since its previous report. ``offered``: every arrival at the
    replica's gate (the shed and refused included: demand is offered load, not throughput); ``admitted``
    (started or queued); ``shed`` by reason (gate refusals and evictions); ``expired`` (deadline passed
    while queued); ``completed`` (ran to the end), of which ``failed`` (the user's code raised) and
    ``missed`` (ended after the deadline); ``latency``: the completed requests' latencies at the replica
    (ms, mergeable)."""

    offered: int = 0
    admitted: int = 0
    shed: Mapping[str, int] = field(default_factory=dict)
    expired: int = 0
    completed: int = 0
    failed: int = 0
    missed: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def merge(self, other: ReplicaClassStats) -> ReplicaClassStats:
        """The sum of two deltas (``other`` later)."""
        shed = dict(self.shed)
        for reason, n in other.shed.items():
            shed[reason] = shed.get(reason, 0) + n
        latency = LatencyHistogram(dict(self.latency.buckets), self.latency.count)
        latency.merge(other.latency)
        return ReplicaClassStats(self.offered + other.offered, self.admitted + other.admitted, shed,
                                 self.expired + other.expired, self.completed + other.completed,
                                 self.failed + other.failed, self.missed + other.missed, latency)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "admitted": self.admitted,
            "shed": dict(self.shed),
            "expired": self.expired,
            "completed": self.completed,
            "failed": self.failed,
            "missed": self.missed,
            "p99_ms": self.latency.quantile(0.99) if self.latency.count else None,
            "latency": self.latency.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """A Serve replica's report: which deployment (``"APP/DEPLOYMENT"``) and replica, where it runs, its
    slots and current concurrency limit, the policy version it runs, and per class what happened since
    its previous report (``classes``) over ``[since, at]`` (wall clock)."""

    deployment: str
    replica_id: str
    node_id: str
    zone: str
    accelerator: str
    slots: int
    limit: int
    policy_version: str
    policy_sha: str | None
    since: float
    at: float
    classes: Mapping[str, ReplicaClassStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("slots", "limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an int >= 1, got {value!r}")
        if not self.deployment or "/" not in self.deployment:
            raise ValueError(f"deployment: expected 'APP/DEPLOYMENT', got {self.deployment!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "replica_id": self.replica_id,
            "node_id": self.node_id,
            "zone": self.zone,
            "accelerator": self.accelerator,
            "slots": self.slots,
            "limit": self.limit,
            "policy_version": self.policy_version,
            "policy_sha": self.policy_sha,
            "since": self.since,
            "at": self.at,
            "classes": {q: c.to_dict() for q, c in self.classes.items()},
        }


@dataclass(frozen=True, slots=True)
class AgentReport:
    """Agent -> zone: the node's snapshot and the summary delta per ``summary_key`` since the previous
    full report (empty in a snapshot-only report). The receiver owns the summaries it is sent."""

    snapshot: NodeSnapshot
    summaries: Mapping[str, ClassSummary] = field(default_factory=dict)
    replicas: tuple[ReplicaReport, ...] = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        summaries = {k: _summary_fields(s) for k, s in self.summaries.items()}
        if not self.replicas:
            return _agent_report_v2, (_snapshot_fields(self.snapshot), summaries)
        replicas = tuple(_replica_fields(r) for r in self.replicas)
        return _agent_report_v3, (_snapshot_fields(self.snapshot), summaries, replicas)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (wire version 1, plus ``replicas`` when there are any)."""
        out: dict[str, Any] = {
            "snapshot": self.snapshot.to_dict(),
            "summaries": {k: s.to_dict() for k, s in self.summaries.items()},
        }
        if self.replicas:
            out["replicas"] = [r.to_dict() for r in self.replicas]
        return out

    @classmethod
    def from_wire(cls, obj: AgentReport | Mapping[str, Any]) -> AgentReport:
        """``obj`` itself, or the report a version-1 dict (``{"snapshot": {...}, "summaries": {...}}``) holds."""
        if isinstance(obj, AgentReport):
            return obj
        summaries = {k: ClassSummary.from_dict(d) for k, d in (obj.get("summaries") or {}).items()}
        return cls(NodeSnapshot.from_dict(obj["snapshot"]), summaries)


@dataclass(frozen=True, slots=True)
class ZoneReport:
    """Zone -> GlobalCoordinator: the zone's fresh node snapshots (nodes whose agent went quiet for
    ``stale_after_s`` are left out), the merged summary delta since its previous report, and every
    agent incarnation it has seen per node (oldest first)."""

    zone: str
    nodes: Mapping[str, NodeSnapshot] = field(default_factory=dict)
    summaries: Mapping[str, ClassSummary] = field(default_factory=dict)
    registrations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    replicas: Mapping[str, ReplicaReport] = field(default_factory=dict)  # the latest report per replica id

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        nodes = {n: _snapshot_fields(s) for n, s in self.nodes.items()}
        summaries = {k: _summary_fields(s) for k, s in self.summaries.items()}
        if not self.replicas:
            return _zone_report_v2, (self.zone, nodes, summaries, dict(self.registrations))
        replicas = {k: _replica_fields(r) for k, r in self.replicas.items()}
        return _zone_report_v3, (self.zone, nodes, summaries, dict(self.registrations), replicas)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (wire version 1, less the zone, which travelled as its own argument)."""
        return {
            "nodes": {n: s.to_dict() for n, s in self.nodes.items()},
            "summaries": {k: s.to_dict() for k, s in self.summaries.items()},
            "registrations": {n: list(v) for n, v in self.registrations.items()},
            **({"replicas": {k: r.to_dict() for k, r in self.replicas.items()}} if self.replicas else {}),
        }

    @classmethod
    def from_wire(cls, zone: str, obj: ZoneReport | Mapping[str, Any]) -> ZoneReport:
        """``obj`` itself, or the report a version-1 payload dict (``nodes``, ``summaries``,
        ``registrations``) of ``zone`` holds."""
        if isinstance(obj, ZoneReport):
            return obj
        return cls(
            zone=zone,
            nodes={n: NodeSnapshot.from_dict(s) for n, s in (obj.get("nodes") or {}).items()},
            summaries={k: ClassSummary.from_dict(d) for k, d in (obj.get("summaries") or {}).items()},
            registrations={n: tuple(v) for n, v in (obj.get("registrations") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class NodeLease:
    """One node's budget lease: per-class caps on tasks running plus queued there, granted at
    ``granted_at`` (wall clock) for ``lease_s`` seconds, allocation ``revision`` (the acknowledgement)."""

    caps: Mapping[str, int]
    granted_at: float
    lease_s: float
    revision: int
    replica_caps: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # replica id -> class -> cap

    def __post_init__(self) -> None:
        for qos, cap in self.caps.items():
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
                raise ValueError(f"caps[{qos!r}]: must be an int >= 0, got {cap!r}")
        for rid, caps in self.replica_caps.items():
            for qos, cap in caps.items():
                if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
                    raise ValueError(f"replica_caps[{rid!r}][{qos!r}]: must be an int >= 0, got {cap!r}")
        if not self.lease_s > 0:
            raise ValueError(f"lease_s: must be > 0, got {self.lease_s!r}")

    @property
    def expires_at(self) -> float:
        return self.granted_at + self.lease_s

    @classmethod
    def from_wire(cls, lease: NodeLease | Mapping[str, int], *v1: Any) -> NodeLease:
        """``lease`` itself, or the lease of a version-1 call ``set_lease(caps, granted_at, lease_s,
        revision)`` (``lease`` the caps, ``v1`` the other three)."""
        if isinstance(lease, NodeLease):
            return lease
        if len(v1) != 3:
            raise TypeError(f"set_lease: a version-1 lease needs (caps, granted_at, lease_s, revision), got {v1!r}")
        granted_at, lease_s, revision = v1
        caps = {str(k): int(v) for k, v in lease.items()}
        return cls(caps, float(granted_at), float(lease_s), int(revision))


# -- pickled form, wire version 2 (see the module docstring) ---------------------------------------------
def _snapshot_fields(s: NodeSnapshot) -> tuple[Any, ...]:
    return (
        s.node_id,
        s.zone,
        s.incarnation,
        s.at,
        s.started_at,
        s.attrs,
        s.inflight,
        s.inflight_by_class,
        s.queued_by_class,
        s.closed_classes,
        s.service_ms,
        s.accelerator,
        s.policy_sha,
        s.caps,
        s.process,
    )


def _summary_fields(s: ClassSummary) -> tuple[Any, ...]:
    return (s.qos, s.workflow, s.count, s.errors, s.missed, s.latency.buckets, s.latency.count)


def _summary_of(fields: tuple[Any, ...]) -> ClassSummary:
    qos, workflow, count, errors, missed, buckets, n = fields
    return ClassSummary(qos, workflow, count, errors, missed, LatencyHistogram(buckets, n))


def _node_snapshot_v2(*fields: Any) -> NodeSnapshot:
    return NodeSnapshot(*fields)


def _node_snapshot_v4(*fields: Any) -> NodeSnapshot:  # fifteen fields: ``process`` last
    return NodeSnapshot(*fields)


def _agent_report_v2(snapshot: tuple[Any, ...], summaries: dict[str, tuple[Any, ...]]) -> AgentReport:
    return AgentReport(NodeSnapshot(*snapshot), {k: _summary_of(f) for k, f in summaries.items()})


def _zone_report_v2(
    zone: str,
    nodes: dict[str, tuple[Any, ...]],
    summaries: dict[str, tuple[Any, ...]],
    registrations: dict[str, tuple[str, ...]],
) -> ZoneReport:
    return ZoneReport(
        zone,
        {n: NodeSnapshot(*f) for n, f in nodes.items()},
        {k: _summary_of(f) for k, f in summaries.items()},
        registrations,
    )


# -- pickled form, wire version 3 (Serve replicas) -------------------------------------------------------
def _class_stats_fields(c: ReplicaClassStats) -> tuple[Any, ...]:
    return (c.offered, c.admitted, dict(c.shed), c.expired, c.completed, c.failed, c.missed,
            c.latency.buckets, c.latency.count)  # fmt: skip


def _class_stats_of(fields: tuple[Any, ...]) -> ReplicaClassStats:
    offered, admitted, shed, expired, completed, failed, missed, buckets, n = fields
    return ReplicaClassStats(offered, admitted, shed, expired, completed, failed, missed, LatencyHistogram(buckets, n))


def _replica_fields(r: ReplicaReport) -> tuple[Any, ...]:
    classes = {q: _class_stats_fields(c) for q, c in r.classes.items()}
    return (r.deployment, r.replica_id, r.node_id, r.zone, r.accelerator, r.slots, r.limit, r.policy_version,
            r.policy_sha, r.since, r.at, classes)  # fmt: skip


def _replica_of(fields: tuple[Any, ...]) -> ReplicaReport:
    deployment, replica_id, node_id, zone, accelerator, slots, limit, version, sha, since, at, classes = fields
    return ReplicaReport(
        deployment, replica_id, node_id, zone, accelerator, slots, limit, version, sha, since, at,
        {q: _class_stats_of(c) for q, c in classes.items()},
    )  # fmt: skip


def _agent_report_v3(
    snapshot: tuple[Any, ...], summaries: dict[str, tuple[Any, ...]], replicas: tuple[tuple[Any, ...], ...]
) -> AgentReport:
    report = _agent_report_v2(snapshot, summaries)
    return AgentReport(report.snapshot, report.summaries, tuple(_replica_of(r) for r in replicas))


def _zone_report_v3(
    zone: str,
    nodes: dict[str, tuple[Any, ...]],
    summaries: dict[str, tuple[Any, ...]],
    registrations: dict[str, tuple[str, ...]],
    replicas: dict[str, tuple[Any, ...]],
) -> ZoneReport:
    report = _zone_report_v2(zone, nodes, summaries, registrations)
    return ZoneReport(zone, report.nodes, report.summaries, report.registrations,
                      {k: _replica_of(r) for k, r in replicas.items()})  # fmt: skip
