"""Serve's link to the control plane, one per process: registration, reports, live policy.

Every router (``AgenticRequestRouter``, wherever it runs: a driver, Serve's HTTP proxy, an ingress
replica) and every replica of an ``@agentic_ray.deployment`` adds itself here as a member
(``RouterMember``, ``ReplicaMember``). One daemon thread per process (``ServePlane``) does all the
control-plane I/O, never on the request path and never blocking it (Ray calls are fire-and-forget; a
reply is read on a later turn with ``ray.wait(timeout=0)``, like the task path's accountant,
``actors/_worker.py``):

- it looks for the GlobalCoordinator (the named actor ``GLOBAL_NAME`` in ``NAMESPACE``) every
  ``LOOKUP_S`` until it finds one. Without one nothing else happens: the deployment runs on its
  deploy-time policy as it always did (``status()`` says there is no control plane);
- once found, each member registers (``serve_register``, with its deploy-time policy's text);
- every ``POLL_S`` it reads the published targets (``serve/targets`` in Ray's internal KV, one read
  per process) and, for a member whose deployment should run another policy, loads that policy's text
  from the KV (``policy/<sha256>``), compiles it here and has the member switch to it on the member's
  own event loop (``loop.call_soon_threadsafe``), so the switch falls between requests: a request
  finishes under the version that admitted it, and its decision records carry that version;
- replicas report every ``REPORT_S`` (and at once after a switch) to their node's agent
  (``record_replica``: a ``ReplicaReport`` and drift summaries from the replica's ``ServeTally``); the
  agent answers the replica's per-class caps from its lease, which the replica's gate enforces
  (``AdmissionGate.set_class_caps``) until they lapse; a lowered cap is enforced ``_CAP_GRACE_S``
  after it is published (routers see it a stats period or two later: ``RoutingStats.class_caps``);
- with the targets it reads the overlay (``serve/overlay``: the actions in force, ``control._actions``)
  and hands each member its part on the member's loop: routers route away from avoided replicas and
  nodes (``RoutingState.set_avoid``), replicas scale their classes' caps by a ``tighten_admission``
  factor (on top of the lease's caps: ``control._actions.tightened_caps``); a canary's replicas switch
  to its policy (and back to their deployment's target when it ends); routers evaluate a shadow policy
  beside theirs and report what it would have done differently with their heartbeats;
- routers send a heartbeat every ``HEARTBEAT_S`` and at once after a switch (``serve_heartbeat``: the
  version they run, their acknowledgement, and the classes they saw), and report the requests they shed
  themselves to their node's agent every ``REPORT_S`` (``record_router``).

A call that fails drops the handle it used (looked up again later); a coordinator that went away is
looked for again and members register anew. When Ray is shut down under the process the thread drops
everything (a Ray call then would start a new Ray) and waits. ``stop_serve_plane`` ends the thread
(``agentic_ray.shutdown`` calls it).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from typing import Any

from agentic_ray._ray_env import process_env
from agentic_ray.actors._common import (
    GLOBAL_NAME,
    NAMESPACE,
    agent_name,
    kv_get,
    read_serve_overlay,
    read_serve_targets,
)
from agentic_ray.control._reports import ReplicaReport
from agentic_ray.control._serve_tally import ServeTally

__all__ = [
    "HEARTBEAT_S",
    "POLL_S",
    "REPORT_S",
    "ReplicaMember",
    "RouterMember",
    "ServePlane",
    "current_plane",
    "member_id",
    "plane",
    "stop_serve_plane",
]

log = logging.getLogger(__name__)

TICK_S = 0.05
POLL_S = 0.25
REPORT_S = 0.25
HEARTBEAT_S = 1.0
LOOKUP_S = 2.0


class _Member:
    """What the plane needs of a router or replica: identity, the policy it runs, a tally, a switch."""

    kind = "member"

    def __init__(self, owner: Any, member_id: str, deployment: str, node_id: str, deploy_text: str) -> None:
        self._owner = weakref.ref(owner)
        self.member_id = member_id
        self.deployment = deployment
        self.node_id = node_id
        self.deploy_text = deploy_text
        self.tally = ServeTally(deployment)
        self.registered = False
        self.switching: str | None = None  # sha256 of a switch scheduled and not applied yet
        self.report_now = False
        self.next_report = 0.0
        self.next_heartbeat = 0.0
        self.since = time.time()
        self.summaries: dict[str, Any] = {}
        self.overlay: Any = None  # the overlay this member took last (``take_overlay``)
        self.process = process_env()  # its process's niceness, and in a proxy whether the door is in

    @property
    def alive(self) -> bool:
        return self._owner() is not None

    def current_loop(self) -> Any:
        """The event loop the owner serves requests on, once known (None before its first request:
        then a switch applies at once, from the plane's thread)."""
        return None

    def policy_ids(self) -> tuple[str, str]:
        """``(version, sha256)`` of the policy the member runs now."""
        raise NotImplementedError

    def _apply(self, policy: Any) -> None:
        raise NotImplementedError

    def switch(self, policy: Any) -> None:
        """Run ``policy`` from the next request on (on the owner's loop when it is known)."""
        self.switching = policy.sha256

        def apply() -> None:
            try:
                self._apply(policy)
            except Exception as exc:  # a bad switch must not break serving: keep the old policy
                log.warning("agentic serve: %s %s could not switch policy: %r", self.kind, self.member_id, exc)
            finally:
                self.switching = None
                self.report_now = True

        loop = self.current_loop()
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(apply)
        else:
            apply()

    def on_loop(self, fn: Any) -> None:
        """Run ``fn()`` on the owner's loop when it is known (between requests), else now."""
        loop = self.current_loop()
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(fn)
        else:
            fn()

    def take_overlay(self, overlay: dict[str, Any], resolve: Any = None) -> None:
        """Apply this member's part of the published overlay (see the module docstring); ``resolve(sha)``
        gives a policy by its sha256 (None when it cannot be loaded)."""
        self.overlay = overlay

    def registration(self) -> dict[str, Any]:
        version, sha = self.policy_ids()
        return {"kind": self.kind, "member_id": self.member_id, "deployment": self.deployment,
                "node_id": self.node_id, "policy_version": version, "policy_sha": sha,
                "classes": self.tally.classes_seen(), "sent_at": time.time(), "process": self.process}  # fmt: skip


class RouterMember(_Member):
    """An ``AgenticRequestRouter`` (``owner``): it switches with ``owner._switch_policy(policy)``."""

    kind = "router"

    def policy_ids(self) -> tuple[str, str]:
        owner = self._owner()
        policy = owner.policy if owner is not None else None
        return (policy.version, policy.sha256) if policy is not None else ("", "")

    def current_loop(self) -> Any:
        owner = self._owner()
        return getattr(owner, "_agentic_loop", None)

    def _apply(self, policy: Any) -> None:
        owner = self._owner()
        if owner is not None:
            owner._switch_policy(policy)

    def take_overlay(self, overlay: dict[str, Any], resolve: Any = None) -> None:
        super().take_overlay(overlay, resolve)
        replicas = dict(overlay.get("avoid_replicas") or {})
        nodes = dict(overlay.get("avoid_nodes") or {})
        shadow_sha = (overlay.get("shadow") or {}).get("sha")
        shadow = resolve(shadow_sha) if shadow_sha and resolve is not None else None

        def apply() -> None:
            owner = self._owner()
            if owner is None or owner.state is None:
                return
            try:
                owner.state.set_avoid(replicas, nodes)
            except ValueError as exc:
                log.warning("agentic serve: router %s: bad avoid overlay: %s", self.member_id, exc)
            owner._set_shadow(shadow)

        self.on_loop(apply)

    def registration(self) -> dict[str, Any]:
        out = super().registration()
        owner = self._owner()
        counts = getattr(owner, "shadow_counts", None)
        if counts:
            out["shadow"] = dict(counts)
        return out


class ReplicaMember(_Member):
    """A replica of an agentic deployment (``owner``, the user's object with ``_agentic_admission``)."""

    kind = "replica"

    def __init__(self, owner: Any, member_id: str, deployment: str, metadata: Any, deploy_text: str) -> None:
        super().__init__(owner, member_id, deployment, metadata.node_id or "", deploy_text)
        self.metadata = metadata
        self.caps_until: float | None = None  # wall clock when the caps from the agent lapse
        self.on_canary = False  # switched to a canary's policy (switched back when the canary ends)
        self.lease_caps: dict[str, int] = {}  # from the agent's lease
        self.factors: dict[str, float] = {}  # ``tighten_admission`` factors in force here

    def policy_ids(self) -> tuple[str, str]:
        owner = self._owner()
        admission = getattr(owner, "_agentic_admission", None)
        return (admission.policy_version, admission.policy_sha or "") if admission is not None else ("", "")

    def current_loop(self) -> Any:
        owner = self._owner()
        admission = getattr(owner, "_agentic_admission", None)
        return admission.loop if admission is not None else None

    def _apply(self, policy: Any) -> None:
        owner = self._owner()
        if owner is not None:
            owner._agentic_policy = policy
            owner._agentic_admission.switch_policy(policy)

    def report(self, now: float) -> ReplicaReport:
        """This replica's ``ReplicaReport`` since its previous one (its tally's deltas)."""
        owner = self._owner()
        gate = owner._agentic_admission.gate if owner is not None else None
        classes, self.summaries = self.tally.take()
        version, sha = self.policy_ids()
        md = self.metadata
        slots = gate.slots if gate is not None else max(1, md.slots)
        limit = gate.limit if gate is not None else slots
        since, self.since = self.since, now
        return ReplicaReport(self.deployment, self.member_id, self.node_id, md.zone, md.accelerator, slots,
                             max(1, limit), version, sha or None, since, now, classes)  # fmt: skip

    def set_caps(self, caps: dict[str, int], until: float | None) -> None:
        """The caps of the agent's lease (until ``until``), tightened by the actions' factors."""
        self.lease_caps = dict(caps)
        self.caps_until = until if caps else None
        self._install()

    def take_overlay(self, overlay: dict[str, Any], resolve: Any = None) -> None:
        super().take_overlay(overlay, resolve)
        mine = (overlay.get("serve_caps") or {}).get(self.deployment)
        zone = mine.get("zone") if mine else None
        factors = dict(mine.get("classes") or {}) if mine and (zone is None or zone == self.metadata.zone) else {}
        if factors != self.factors:
            self.factors = {str(q): float(f) for q, f in factors.items()}
            self._install()

    def _install(self) -> None:
        owner = self._owner()
        if owner is None:
            return
        gate = owner._agentic_admission.gate
        caps = self.lease_caps
        if self.factors:
            from agentic_ray.control._actions import tightened_caps

            base = {q: gate.slots + gate.queue_bound(q) for q in self.factors}
            caps = tightened_caps(caps, self.factors, base)
        if caps != gate.class_caps:
            gate.set_class_caps(caps, now=time.time(), grace_s=_CAP_GRACE_S)


class ServePlane:
    """The process's control-plane link (see the module docstring)."""

    def __init__(self) -> None:
        self.members: list[_Member] = []
        self._lock = threading.Lock()
        self._global: Any = None
        self._next_lookup = 0.0
        self._next_poll = 0.0
        self._agents: dict[str, Any] = {}
        self._pending: list[tuple[Any, str, Any]] = []  # (ref, what, member): replies read on later turns
        self._policies: dict[str, Any] = {}  # sha256 -> compiled Policy
        self.targets: dict[str, str] = {}
        self._overlay_raw: dict[str, Any] | None = None
        self.overlay: dict[str, Any] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentic-serve-plane", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        """True while a GlobalCoordinator is known."""
        return self._global is not None

    def add(self, member: _Member) -> None:
        with self._lock:
            self.members.append(member)

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        import ray

        while not self._stop.wait(TICK_S):
            if not ray.is_initialized():
                self._forget()
                continue
            try:
                self._turn(ray)
            except Exception as exc:  # never let the thread die: serving does not depend on it
                self.errors += 1
                log.debug("agentic serve plane: turn failed: %r", exc)

    def _forget(self) -> None:
        self._global, self._agents, self._pending = None, {}, []
        for m in self.members:
            m.registered = False

    def _turn(self, ray: Any) -> None:
        with self._lock:
            self.members = [m for m in self.members if m.alive]
            members = list(self.members)
        if not members:
            return
        self._check_replies(ray)
        mono = time.monotonic()
        if self._global is None:
            if mono < self._next_lookup:
                return
            self._next_lookup = mono + LOOKUP_S
            try:
                self._global = ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)
            except ValueError:
                return  # no control plane: deploy-time policies, no reports
        for m in members:
            if not m.registered:
                m.registered = True  # a failed call marks it unregistered again (``_check_replies``)
                ref = self._global.serve_register.remote(m.registration(), m.deploy_text)
                self._pending.append((ref, "register", m))
        if mono >= self._next_poll:
            self._next_poll = mono + POLL_S
            self._poll(members)
        now = time.time()
        for m in members:
            if isinstance(m, ReplicaMember):
                if m.caps_until is not None and now >= m.caps_until:
                    m.set_caps({}, None)
                if m.report_now or mono >= m.next_report:
                    m.report_now, m.next_report = False, mono + REPORT_S
                    self._send_replica(ray, m, now)
            elif isinstance(m, RouterMember) and (m.report_now or mono >= m.next_report):
                heartbeat = m.report_now or mono >= m.next_heartbeat
                m.report_now, m.next_report = False, mono + REPORT_S
                self._send_router(ray, m, heartbeat, mono)

    def _poll(self, members: list[_Member]) -> None:
        self.targets = read_serve_targets()
        raw = read_serve_overlay()
        if raw != self._overlay_raw:
            self._overlay_raw, self.overlay = raw, dict(raw)
        for m in members:
            if m.overlay is not self.overlay:
                m.take_overlay(self.overlay, self._policy)
        canary = self.overlay.get("canary") or {}
        canary_sha, on_canary = canary.get("sha"), set(canary.get("replicas") or ())
        for m in members:
            want = self.targets.get(m.deployment)
            if isinstance(m, ReplicaMember):
                if canary_sha and m.member_id in on_canary:
                    want, m.on_canary = canary_sha, True
                elif m.on_canary:  # the canary ended or moved: back to the deployment's target
                    want = want or self._deploy_policy(m).sha256
                    m.on_canary = m.policy_ids()[1] != want
            if not want or m.switching == want or m.policy_ids()[1] == want:
                continue
            policy = self._policy(want)
            if policy is not None:
                m.switch(policy)

    def _policy(self, sha: str) -> Any:
        policy = self._policies.get(sha)
        if policy is None:
            text = kv_get("policy/" + sha)
            if text is None:
                return None
            from agentic_ray.policies import parse_policy

            policy = self._policies[sha] = parse_policy(text.decode(), source=f"<control plane {sha[:12]}>")
        return policy

    def _deploy_policy(self, m: _Member) -> Any:
        """The member's deploy-time policy, compiled once (cached by its sha256 like the others)."""
        from agentic_ray.policies import parse_policy

        policy = parse_policy(m.deploy_text, source=f"<deployment {m.deployment}>")
        return self._policies.setdefault(policy.sha256, policy)

    def _agent(self, ray: Any, node_id: str) -> Any:
        handle = self._agents.get(node_id)
        if handle is None:
            handle = self._agents[node_id] = ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
        return handle

    def _send_replica(self, ray: Any, m: ReplicaMember, now: float) -> None:
        report = m.report(now)
        if not m.node_id:
            return
        try:
            ref = self._agent(ray, m.node_id).record_replica.remote(report, m.summaries)
            self._pending.append((ref, "replica", m))
        except Exception:
            self._agents.pop(m.node_id, None)

    def _send_router(self, ray: Any, m: RouterMember, heartbeat: bool, mono: float) -> None:
        classes, summaries = m.tally.take()
        if (classes or summaries) and m.node_id:
            try:
                ref = self._agent(ray, m.node_id).record_router.remote(m.deployment, m.member_id, classes, summaries)
                self._pending.append((ref, "agent", m))
            except Exception:
                self._agents.pop(m.node_id, None)
        if heartbeat:
            m.next_heartbeat = mono + HEARTBEAT_S
            self._pending.append((self._global.serve_heartbeat.remote(m.registration()), "heartbeat", m))

    def _check_replies(self, ray: Any) -> None:
        if not self._pending:
            return
        still = []
        for ref, what, m in self._pending:
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                still.append((ref, what, m))
                continue
            try:
                reply = ray.get(ref, timeout=0)
            except Exception:
                self.errors += 1
                if what in ("register", "heartbeat"):
                    self._global = None  # the coordinator went away: look for it again, register anew
                    for member in self.members:
                        member.registered = False
                else:
                    self._agents.pop(m.node_id, None)
                continue
            if what == "replica" and isinstance(m, ReplicaMember):
                caps, until = reply
                m.set_caps(dict(caps or {}), until)
        self._pending = still


_SEQ = itertools.count(1)
_CAP_GRACE_S = 0.5  # two default routing-stats periods: how late routers may learn of a lowered cap
_PLANE: ServePlane | None = None
_PLANE_LOCK = threading.Lock()


def plane() -> ServePlane:
    """This process's ``ServePlane`` (its thread starts on first use)."""
    global _PLANE
    if _PLANE is None:
        with _PLANE_LOCK:
            if _PLANE is None:
                _PLANE = ServePlane()
    return _PLANE


def current_plane() -> ServePlane | None:
    """The process's plane when one was started, else None."""
    return _PLANE


def stop_serve_plane() -> None:
    """End this process's plane thread, if any (a later member starts a new one)."""
    global _PLANE
    with _PLANE_LOCK:
        p, _PLANE = _PLANE, None
    if p is not None:
        p.stop()


def member_id(prefix: str, node_id: str | None) -> str:
    """A router id unique in the cluster: ``<prefix>:<first 8 of the node id>:<pid>:<n>``."""
    return f"{prefix}:{(node_id or 'local')[:8]}:{os.getpid()}:{next(_SEQ)}"
