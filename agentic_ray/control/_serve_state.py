"""Serve on the control plane: registered deployments, their routers and replicas, the policy each one
should run and the policy each one runs. Pure: no Ray, no clock (``now``, wall-clock seconds, comes in).

Registration. Every router and replica of an ``@agentic_ray.deployment`` registers with the
GlobalCoordinator when it finds one (``register``: a ``ServeMember`` with the deployment's deploy-time
policy); a deployment is known from its first member on. Routers then send heartbeats with the policy
they run (``router_heartbeat``; the acknowledgement of a switch is an immediate one); replicas report
through their node's agent, and the zones forward the latest ``ReplicaReport`` of each
(``ingest_replicas``): its ``policy_version`` / ``policy_sha`` is the replica's acknowledgement.
Members not heard of for ``stale_after_s`` drop out (``prune``); a deployment without members for
``forget_after_s`` is forgotten with its target.

Targets. A deployment runs its deploy-time policy until a rollout gives it another
(``DeploymentTarget``, revision 0 is the deploy-time one). ``apply(policy, revision, budgets)`` decides
per deployment before anything is published: a deployment refuses a policy that drops a class its
callers use (the classes seen in its members' reports: ``refusal_reason``), keeps its current target and
records why (``Refusal``); the others take the policy as their next target. ``rollback(revision)`` undoes
the rollout of ``revision``: each deployment that took it returns to the target it had before. What is
published (``published()``, ``{deployment: sha256}``, written to Ray's internal KV by the coordinator)
is what routers and replicas poll and switch to, between requests. Nothing is half-applied: status
(``status``) shows, per deployment, its target and the version each router and replica runs.

``to_dict`` / ``from_dict`` are the checkpoint's JSON (targets and refusals survive a coordinator restart;
members re-register).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.control._reports import ReplicaReport

__all__ = ["DeploymentTarget", "Refusal", "ServeMember", "ServeState", "environment_findings", "niced",
           "process_of", "refusal_reason"]  # fmt: skip

_KINDS = ("router", "replica")


@dataclass(frozen=True, slots=True)
class ServeMember:
    """A router or replica of ``deployment`` (``"APP/DEPLOYMENT"``) and the policy it runs now."""

    kind: str
    member_id: str
    deployment: str
    node_id: str
    policy_version: str
    policy_sha: str | None
    seen_at: float = 0.0
    classes: tuple[str, ...] = ()  # classes this member has seen requests of
    sent_at: float = 0.0  # when the member sent it (0: not said); an older message than the one held loses
    process: Mapping[str, Any] = field(default_factory=dict)  # its process: niceness, proxy, door (``process_of``)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind: must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        if not self.member_id:
            raise ValueError("member_id: must not be empty")
        if not self.deployment or "/" not in self.deployment:
            raise ValueError(f"deployment: expected 'APP/DEPLOYMENT', got {self.deployment!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], now: float) -> ServeMember:
        """The member a registration or heartbeat (a plain dict over Ray) describes, seen at ``now``;
        ``KeyError`` / ``ValueError`` name a missing or bad field."""
        return cls(
            kind=str(data["kind"]),
            member_id=str(data["member_id"]),
            deployment=str(data["deployment"]),
            node_id=str(data.get("node_id") or ""),
            policy_version=str(data["policy_version"]),
            policy_sha=data.get("policy_sha"),
            seen_at=now,
            classes=tuple(sorted(str(q) for q in data.get("classes") or ())),
            sent_at=float(data.get("sent_at") or 0.0),
            process=process_of(data.get("process")),
        )


_PROCESS_FIELDS = {"niceness": int, "proxy": bool, "door": bool}


def process_of(data: Any) -> dict[str, Any]:
    """The known fields of a member's ``process`` (``agentic_ray._ray_env.process_env``): ``niceness``
    (int), ``proxy`` and ``door`` (bool); a field of another type, or anything else, is left out (a
    member of another version must not break registration)."""
    if not isinstance(data, Mapping):
        return {}
    return {k: data[k] for k, kind in _PROCESS_FIELDS.items()
            if isinstance(data.get(k), kind) and (kind is bool or not isinstance(data[k], bool))}  # fmt: skip


def niced(process: Any) -> int | None:
    """The niceness of a ``process`` report (``process_of``'s fields) when it is above 0, Ray's default
    for workers being 15; None otherwise (0, or not reported)."""
    niceness = process.get("niceness") if isinstance(process, Mapping) else None
    return niceness if isinstance(niceness, int) and not isinstance(niceness, bool) and niceness > 0 else None


def environment_findings(serve_status: Mapping[str, Any]) -> list[str]:
    """What the ``serve`` section of ``status()`` shows of processes started without agentic-ray's
    environment (``agentic_ray._ray_env``), one line each, per deployment: routers in Serve's proxies
    without the front door, and routers and replicas at a niceness above 0 (Ray's default for workers is
    15: they yield to every normal process on the host)."""
    out = []
    for name, dep in sorted((serve_status.get("deployments") or {}).items()):
        members = [("router", r.get("router_id"), r) for r in dep.get("routers") or []]
        members += [("replica", r.get("replica_id"), r) for r in dep.get("replicas") or []]
        doorless = [mid for _, mid, r in members if (r.get("process") or {}).get("door") is False]
        by_niceness: dict[int, list[str]] = {}
        for kind, mid, r in members:
            niceness = niced(r.get("process"))
            if niceness is not None:
                by_niceness.setdefault(niceness, []).append(f"{kind} {mid}")
        if doorless:
            out.append(f"{name}: {len(doorless)} router(s) in Serve proxies without the front door "
                       f"({', '.join(sorted(doorless))}): the proxies started without "
                       "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH")  # fmt: skip
        for niceness, who in sorted(by_niceness.items()):
            out.append(f"{name}: {len(who)} at niceness {niceness} ({', '.join(sorted(who))}): "
                       "started without RAY_worker_niceness=0")  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class DeploymentTarget:
    """The policy a deployment should run: ``revision`` of the control plane's rollout that set it (0:
    the deployment's own deploy-time policy)."""

    sha256: str
    version: str
    revision: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "version": self.version, "revision": self.revision}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentTarget:
        return cls(str(data["sha256"]), str(data["version"]), int(data.get("revision", 0)))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A deployment refused the policy ``sha256`` (``version``, rollout ``revision``) at ``at``."""

    sha256: str
    version: str
    revision: int
    reason: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "version": self.version, "revision": self.revision, "reason": self.reason,
                "at": self.at}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Refusal:
        return cls(str(data["sha256"]), str(data["version"]), int(data["revision"]), str(data["reason"]),
                   float(data.get("at", 0.0)))  # fmt: skip


def refusal_reason(policy_classes: Iterable[str], classes_seen: Iterable[str]) -> str | None:
    """Why a deployment whose callers used ``classes_seen`` cannot take a policy with ``policy_classes``
    (None: it can): the policy drops a class in use."""
    dropped = sorted(set(classes_seen) - set(policy_classes))
    if dropped:
        return f"the policy drops classes its callers use: {', '.join(dropped)}"
    return None


@dataclass(slots=True)
class _Deployment:
    initial: DeploymentTarget
    history: list[DeploymentTarget] = field(default_factory=list)
    refusal: Refusal | None = None
    classes_seen: set[str] = field(default_factory=set)
    last_seen: float = 0.0
    steered: bool = False  # a rollout gave it a target once: its target is published from then on

    @property
    def target(self) -> DeploymentTarget:
        return self.history[-1] if self.history else self.initial


class ServeState:
    """What the GlobalCoordinator knows of Serve (see the module docstring)."""

    def __init__(self, stale_after_s: float = 5.0, forget_after_s: float = 60.0) -> None:
        if not stale_after_s > 0 or not forget_after_s > 0:
            raise ValueError(f"stale_after_s, forget_after_s: must be > 0, got {stale_after_s!r}, {forget_after_s!r}")
        self.stale_after_s = stale_after_s
        self.forget_after_s = forget_after_s
        self.deployments: dict[str, _Deployment] = {}
        self.routers: dict[str, ServeMember] = {}
        self.replica_members: dict[str, ServeMember] = {}  # registered replicas (before their first report)
        self.replicas: dict[str, ReplicaReport] = {}  # the latest report per replica id
        self.replica_seen: dict[str, float] = {}
        self.budgets: dict[str, dict[str, float]] = {}  # policy sha256 -> class -> budget_ms

    # -- inputs ------------------------------------------------------------------------------------
    def knows_policy(self, sha256: str | None) -> bool:
        """True when the budgets of policy ``sha256`` are known (``add_policy`` was called for it)."""
        return sha256 is not None and sha256 in self.budgets

    def add_policy(self, sha256: str, budgets: Mapping[str, float]) -> None:
        """Remember the class budgets of policy ``sha256`` (shown beside each class's p99)."""
        self.budgets[sha256] = dict(budgets)

    def _deployment(self, member: ServeMember) -> _Deployment:
        dep = self.deployments.get(member.deployment)
        if dep is None:
            initial = DeploymentTarget(member.policy_sha or "", member.policy_version, 0)
            dep = self.deployments[member.deployment] = _Deployment(initial)
        dep.last_seen = max(dep.last_seen, member.seen_at)
        dep.classes_seen.update(member.classes)
        return dep

    def register(self, member: ServeMember) -> DeploymentTarget:
        """A router or replica registered (or a router's heartbeat); returns its deployment's target. A
        router's heartbeat sent before the one held (``sent_at``) does not replace it."""
        dep = self._deployment(member)
        if member.kind == "router":
            held = self.routers.get(member.member_id)
            # A heartbeat sent before the one held (Ray retried it on a restarted coordinator) is older news:
            # keeping it would show the router back on the policy it ran before.
            if held is None or not (member.sent_at and held.sent_at and member.sent_at < held.sent_at):
                self.routers[member.member_id] = member
        else:
            self.replica_members[member.member_id] = member
        return dep.target

    def router_heartbeat(self, member: ServeMember) -> DeploymentTarget:
        """A router says which policy it runs (its acknowledgement) and which classes it saw."""
        return self.register(member)

    def ingest_replicas(self, reports: Iterable[ReplicaReport], now: float) -> None:
        """The latest reports of replicas, as a zone forwarded them at ``now``."""
        for r in reports:
            seen = self.replica_seen.get(r.replica_id)
            if seen is not None and r.replica_id in self.replicas and self.replicas[r.replica_id].at > r.at:
                continue  # an older report than the one held (two zones during a move): keep the newer
            self.replicas[r.replica_id] = r
            self.replica_seen[r.replica_id] = now
            held = self.replica_members.get(r.replica_id)  # its registration said what its process is
            member = ServeMember("replica", r.replica_id, r.deployment, r.node_id, r.policy_version, r.policy_sha,
                                 now, tuple(q for q, c in r.classes.items() if c.offered),
                                 process=held.process if held is not None else {})  # fmt: skip
            self._deployment(member)
            self.replica_members[r.replica_id] = member

    def prune(self, now: float) -> list[str]:
        """Drop members silent for ``stale_after_s`` and deployments without members for
        ``forget_after_s``; returns the deployments forgotten (their targets go unpublished)."""
        stale = now - self.stale_after_s
        for rid in [r for r, m in self.routers.items() if m.seen_at < stale]:
            del self.routers[rid]
        for rid in [r for r, m in self.replica_members.items() if m.seen_at < stale]:
            del self.replica_members[rid]
            self.replicas.pop(rid, None)
            self.replica_seen.pop(rid, None)
        gone = [d for d, rec in self.deployments.items() if rec.last_seen < now - self.forget_after_s]
        for d in gone:
            del self.deployments[d]
        return gone

    # -- rollout -----------------------------------------------------------------------------------
    def classes_seen(self, deployment: str) -> set[str]:
        dep = self.deployments.get(deployment)
        return set(dep.classes_seen) if dep is not None else set()

    def apply(self, sha256: str, version: str, classes: Iterable[str], revision: int, now: float) -> dict[str, Any]:
        """Rollout ``revision`` of policy ``sha256`` (with ``classes``): each deployment takes it as its
        next target or refuses it (``refusal_reason``). Returns ``{deployment: {"accepted": bool,
        "reason": ...}}``."""
        classes = set(classes)
        verdicts: dict[str, Any] = {}
        target = DeploymentTarget(sha256, version, revision)
        for name, dep in self.deployments.items():
            reason = refusal_reason(classes, dep.classes_seen)
            if reason is not None:
                dep.refusal = Refusal(sha256, version, revision, reason, now)
                verdicts[name] = {"accepted": False, "reason": reason}
                continue
            dep.refusal = None
            if dep.target.sha256 != sha256:
                dep.history.append(target)
                dep.steered = True
            verdicts[name] = {"accepted": True, "reason": None}
        return verdicts

    def rollback(self, revision: int) -> dict[str, Any]:
        """Undo rollout ``revision``: deployments that took it return to their previous target; a refusal
        of it is dropped. Returns ``{deployment: {"policy_version": ..., "rolled_back": bool}}``."""
        out: dict[str, Any] = {}
        for name, dep in self.deployments.items():
            rolled = bool(dep.history) and dep.history[-1].revision == revision
            if rolled:
                dep.history.pop()
            if dep.refusal is not None and dep.refusal.revision == revision:
                dep.refusal = None
            out[name] = {"policy_version": dep.target.version, "rolled_back": rolled}
        return out

    def target(self, deployment: str) -> DeploymentTarget | None:
        dep = self.deployments.get(deployment)
        return dep.target if dep is not None else None

    def published(self) -> dict[str, str]:
        """``{deployment: sha256}`` of every deployment a rollout ever gave a target (after a rollback to
        its deploy-time policy, that one); the others run their deploy-time policy and are not published."""
        return {name: dep.target.sha256 for name, dep in self.deployments.items() if dep.steered}

    # -- outputs -----------------------------------------------------------------------------------
    def acks(self, deployment: str) -> tuple[list[str], list[str]]:
        """``(acked, missing)`` member ids of ``deployment``: running its target, or not (yet)."""
        dep = self.deployments.get(deployment)
        if dep is None:
            return [], []
        want = dep.target.sha256
        acked: list[str] = []
        missing: list[str] = []
        for m in self._members(deployment):
            (acked if m.policy_sha == want else missing).append(m.member_id)
        return sorted(acked), sorted(missing)

    def _members(self, deployment: str) -> list[ServeMember]:
        return [m for m in (*self.routers.values(), *self.replica_members.values()) if m.deployment == deployment]

    def status(self, now: float) -> dict[str, Any]:
        """The ``serve`` section of ``status()``: per deployment its target policy, every router and
        replica with the version it runs and its process (``process_of``), per-class figures of each
        replica's latest report, and the refusal of the last rollout it refused; ``environment``: the
        lines of ``environment_findings``."""
        out: dict[str, Any] = {}
        for name in sorted(self.deployments):
            dep = self.deployments[name]
            target = dep.target
            _, missing = self.acks(name)
            entry: dict[str, Any] = {
                "policy_version": target.version,
                "policy_sha": target.sha256,
                "policy_revision": target.revision,
                "policy_source": "deployment" if target.revision == 0 else "control plane",
                "acked": not missing,
                "missing": missing,
                "classes_seen": sorted(dep.classes_seen),
                "routers": [self._router_row(m, now) for m in _of(self.routers, name)],
                "replicas": [self._replica_row(m, now) for m in _of(self.replica_members, name)],
            }
            if dep.refusal is not None:
                entry["refusal"] = dep.refusal.to_dict()
            out[name] = entry
        return {"control_plane": True, "deployments": out, "environment": environment_findings({"deployments": out})}

    @staticmethod
    def _router_row(m: ServeMember, now: float) -> dict[str, Any]:
        return {"router_id": m.member_id, "node_id": m.node_id, "policy_version": m.policy_version,
                "policy_sha": m.policy_sha, "age_s": now - m.seen_at, "process": dict(m.process)}  # fmt: skip

    def _replica_row(self, m: ServeMember, now: float) -> dict[str, Any]:
        r = self.replicas.get(m.member_id)
        row: dict[str, Any] = {
            "replica_id": m.member_id,
            "node_id": m.node_id,
            "zone": None,
            "accelerator": None,
            "policy_version": m.policy_version,
            "policy_sha": m.policy_sha,
            "process": dict(m.process),
            "classes": {},
        }
        if r is None:
            return row
        budgets = self.budgets.get(r.policy_sha or "", {})
        span = max(1e-3, r.at - r.since)
        row.update(zone=r.zone, accelerator=r.accelerator, slots=r.slots, limit=r.limit, report_age_s=now - r.at)
        for qos in sorted(r.classes):
            c = r.classes[qos]
            row["classes"][qos] = {
                "offered_rps": c.offered / span,
                "admitted": c.admitted,
                "shed": sum(c.shed.values()),
                "shed_by_reason": dict(c.shed),
                "expired": c.expired,
                "completed": c.completed,
                "p99_ms": c.latency.quantile(0.99) if c.latency.count else None,
                "budget_ms": budgets.get(qos),
            }
        return row

    # -- checkpoint --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Targets, refusals and classes seen per deployment, and the known budgets (JSON)."""
        return {
            "deployments": {
                name: {
                    "initial": dep.initial.to_dict(),
                    "history": [t.to_dict() for t in dep.history],
                    "refusal": dep.refusal.to_dict() if dep.refusal is not None else None,
                    "classes_seen": sorted(dep.classes_seen),
                    "steered": dep.steered,
                }
                for name, dep in self.deployments.items()
            },
            "budgets": {sha: dict(b) for sha, b in self.budgets.items()},
        }

    def restore(self, data: Mapping[str, Any] | None, now: float) -> None:
        """Take the deployments of a checkpoint (``to_dict``) as last seen at ``now``."""
        for name, d in ((data or {}).get("deployments") or {}).items():
            refusal = d.get("refusal")
            self.deployments[str(name)] = _Deployment(
                DeploymentTarget.from_dict(d["initial"]),
                [DeploymentTarget.from_dict(t) for t in d.get("history") or ()],
                Refusal.from_dict(refusal) if refusal else None,
                {str(q) for q in d.get("classes_seen") or ()},
                now,
                bool(d.get("steered", d.get("history"))),
            )
        for sha, b in ((data or {}).get("budgets") or {}).items():
            self.budgets[str(sha)] = {str(q): float(v) for q, v in b.items()}


def _of(members: Mapping[str, ServeMember], deployment: str) -> list[ServeMember]:
    return sorted((m for m in members.values() if m.deployment == deployment), key=lambda m: m.member_id)
