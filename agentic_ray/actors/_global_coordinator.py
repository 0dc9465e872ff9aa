"""GlobalCoordinator: the Ray shell around the control plane's root; membership, policy rollout,
allocation, drift and the cluster view are decided by the pure pieces in ``agentic_ray.control``.

One detached, named (``agentic-global``), restartable actor holding one ``control.GlobalState``. This
module does only the I/O: every ``reconcile_interval_s`` it reads ``ray.nodes()`` and acts on
``plan_membership`` (starts a ZoneCoordinator and a NodeAgent for a new node, kills the agent of a node
that left and tells its zone) and pushes the active policy to every agent that has not acknowledged it
(``PolicyRollout.needs_push``: a restarted agent catches up this way). Every ``allocate_interval_s`` it
takes the offered load since the previous round (``GlobalState.take_demand``), runs ``plan_allocation``
and sends each zone its agents' ``NodeLease`` (with their replicas' caps); after every loop it evaluates
drift. Zones call ``zone_report`` with a ``ZoneReport`` (or the dict of an older zone) every
``report_interval_s`` and whenever an agent's snapshot changed.

Serve. Routers and replicas of ``@agentic_ray.deployment`` register (``serve_register``) and routers send
heartbeats with the policy they run (``serve_heartbeat``); replicas report through their agents. A
rollout decides per deployment (``control.ServeState.apply``: a deployment refuses a policy that drops a
class its callers use, keeps its policy and the refusal is recorded) and publishes the targets in the
internal KV (``serve/targets``), which routers and replicas poll; ``rollback_policy`` returns each
deployment that took the undone rollout to its previous target. ``status()["serve"]`` shows each
deployment's target and the version every router and replica runs.

State that must survive a restart (policy history, the last allocation, Serve's targets) is checkpointed in Ray's
internal KV (``common.save_checkpoint``; the JSON of ``GlobalState.checkpoint``); ``__init__`` resumes
from it, so a restarted coordinator serves the same policy version.

Outputs: ``cluster_view()`` (a ``ClusterView``, what each process's ``ClusterViewCache`` places from),
``view()`` (its JSON form, for older caches and people), ``status()`` (the telemetry seam of
``agentic-ray status``, ``control._status``), ``agents_info()``, ``policy()``. Metrics
(``AgenticMetrics(RayMetrics(), "coordinator")``): every drift evaluation goes through
``telemetry.publish_drift_report`` (``agentic_alerts_active``/``agentic_alerts_raised``, WARNING/INFO
records on the ``agentic_ray.alerts`` logger, ``agentic_slo_attainment`` per class); each allocation
round counts ``agentic_coordinator_rounds{level="global"}``; the active policy version is
``agentic_policy_version_info{version}`` (set on start/restore, rollout and rollback).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from typing import Any

import ray

from agentic_ray._ray_env import process_env
from agentic_ray.actors._common import (
    NAMESPACE,
    ControlPlaneConfig,
    agent_name,
    kv_get,
    kv_put,
    load_checkpoint,
    save_checkpoint,
    write_serve_overlay,
    write_serve_targets,
    zone_name,
)
from agentic_ray.control._actions import ActionRecord, tightened_leases
from agentic_ray.control._allocation import leases_by_zone, plan_allocation
from agentic_ray.control._global_state import GlobalState
from agentic_ray.control._membership import NodeInfo, alive_nodes, plan_membership
from agentic_ray.control._reports import ZoneReport
from agentic_ray.control._serve_state import ServeMember
from agentic_ray.control._status import agents_info, policy_answer, status_json
from agentic_ray.control._view import ClusterView, cluster_view
from agentic_ray.errors import PolicySignatureError, PolicyValidationError, Problem
from agentic_ray.policies import Policy, default_policy, parse_policy
from agentic_ray.policies.signing import PolicyBundle, public_keys_from_pem, verify_bundle
from agentic_ray.telemetry.alerts import publish_drift_report
from agentic_ray.telemetry.metrics import AgenticMetrics
from agentic_ray.telemetry.ray_metrics import RayMetrics

__all__ = ["GlobalCoordinator"]

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class GlobalCoordinator:
    """The root of the control plane (see the module docstring)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        # The allocator's array code imports numpy (about 0.25 s): load it now, not in the first round,
        # which would otherwise hold up the actor's loop (and its first leases) that long.
        import agentic_ray.scheduling._allocator_arrays  # noqa: F401

        now = time.time()
        self.process = process_env()  # what this process runs with (niceness): status shows it
        self.metrics = AgenticMetrics(RayMetrics(), "coordinator")
        ckpt = None
        try:
            ckpt = load_checkpoint()
        except Exception as exc:
            log.warning("global: could not read checkpoint: %s", exc)
        if config is None and ckpt and ckpt.get("config"):
            config = ckpt["config"]  # a coordinator created again without settings keeps the old ones
        self.config = ControlPlaneConfig.from_dict(config)
        self.state = GlobalState.restore(ckpt, default_policy(), self.config.drift_config(), now)
        self.state.serve.stale_after_s = self.config.stale_after_s
        if not self.state.restored:
            self._checkpoint()
        self._published_serve: dict[str, str] | None = None
        self._trusted: dict[str, Any] | None = None
        self._published_overlay: dict[str, Any] | None = None
        self._requested_bundles: tuple[Any, ...] = ()
        self._decision_log: Any = None
        self.metrics.policy_version(self.state.policy.version)
        self.handles: dict[str, Any] = {}  # node id -> NodeAgent handle
        self.zones: dict[str, Any] = {}  # zone -> ZoneCoordinator handle
        self._last_alloc = 0.0
        self._pushing: dict[str, asyncio.Task] = {}
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # -- persistence -------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        save_checkpoint(self.state.checkpoint(self.config.to_dict()))

    def _publish_serve(self) -> None:
        """Write Serve's targets to the KV when they changed (after the checkpoint wrote the texts)."""
        targets = self.state.serve.published()
        if targets != self._published_serve:
            write_serve_targets(targets)
            self._published_serve = targets

    # -- the loop ----------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self._reconcile()
                now = time.time()
                if now - self._last_alloc >= self.config.allocate_interval_s:
                    self._last_alloc = now
                    if not await self._allocate(now):
                        self._last_alloc = 0.0  # no agent reported yet: try again next loop, not a round later
                self._evaluate_drift(now)
                self._execute(self.state.plan_actions(now))
                await self._watch_trial(now)
                if self.state.serve.prune(now):
                    self._publish_serve()
                # Ray drops gauge series not refreshed within ~2 export intervals: set it again each time.
                self.metrics.policy_version(self.state.policy.version)
            except Exception as exc:
                log.warning("global: loop iteration failed: %r", exc)
            await asyncio.sleep(self.config.reconcile_interval_s)

    def _zone_handle(self, zone: str) -> Any:
        handle = self.zones.get(zone)
        if handle is None:
            from agentic_ray.actors._zone import ZoneCoordinator

            handle = ZoneCoordinator.options(
                name=zone_name(zone), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
            ).remote(zone, self.config.to_dict())
            self.zones[zone] = handle
        return handle

    async def _reconcile(self) -> None:
        state = self.state
        state.nodes = alive_nodes(ray.nodes())
        change = plan_membership(state.nodes, state.agents)
        for info in change.start:
            self._start_agent(info)
        for node_id in change.drop:
            self._drop_agent(node_id)
        reported = state.reported_policies()
        if state.trial is not None and state.trial.kind == "canary":
            canary = state.trial.nodes
            stale = [n for n, sha in reported.items() if sha != state.policy_for(n).sha256]
            state.rollout.needs_push({n: sha for n, sha in reported.items() if n not in canary})  # acks
        else:
            stale = state.rollout.needs_push(reported)
        for node_id in stale:
            if node_id not in self._pushing:
                self._pushing[node_id] = asyncio.get_event_loop().create_task(self._push_policy(node_id))

    def _start_agent(self, info: NodeInfo) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from agentic_ray.actors._node_agent import NodeAgent

        self._zone_handle(info.zone)  # the zone first, so the agent's first report lands
        self.handles[info.node_id] = NodeAgent.options(
            name=agent_name(info.node_id),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(info.node_id, soft=False),
        ).remote(info.node_id, info.agent_attrs(), self.config.to_dict())
        self.state.agent_started(info, agent_name(info.node_id), time.time())

    def _drop_agent(self, node_id: str) -> None:
        record = self.state.agent_dropped(node_id, time.time())
        handle = self.handles.pop(node_id, None)
        if handle is not None:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        zone = self.zones.get(record.zone) if record is not None else None
        if zone is not None:
            zone.forget.remote(node_id)

    async def _push_policy(self, node_id: str) -> bool:
        """Send its policy to ``node_id``'s agent (the active one, or a canary's on a canary node); True
        when it acknowledged that policy."""
        policy = self.state.policy_for(node_id)
        try:
            ack = await asyncio.wait_for(self.handles[node_id].set_policy.remote(policy), self.config.ack_timeout_s)
            self.state.rollout.acknowledge(node_id, ack)  # recorded only while that policy is still active
            return ack == policy.sha256
        except Exception as exc:
            log.debug("global: policy push to %s failed: %s", node_id[:12], exc)
            return False
        finally:
            if self._pushing.get(node_id) is asyncio.current_task():
                del self._pushing[node_id]

    async def _allocate(self, now: float) -> bool:
        """One allocation round; False when no agent has reported yet (no round)."""
        state = self.state
        nodes = state.reported_nodes()
        if not nodes:
            return False
        demand = state.take_demand(now, self.config.allocate_interval_s, self.config.stale_after_s)
        previous = state.allocation
        allocation = plan_allocation(
            state.policy, nodes, state.snapshots, demand, previous, now, self.config.allocate_interval_s
        )
        state.allocation = allocation
        self.metrics.coordinator_round("global")
        zones = tightened_leases(leases_by_zone(allocation, nodes), state.planner.overlay().node_caps)
        for zone, leases in zones.items():
            self._zone_handle(zone).push_leases.remote(leases)
        if previous is None or allocation.leases != previous.leases:
            self._checkpoint()
        return True

    def _evaluate_drift(self, now: float) -> None:
        report = self.state.drift.evaluate(now)
        try:  # metrics + WARNING/INFO records on the ``agentic_ray.alerts`` logger
            publish_drift_report(self.metrics, report)
        except Exception as exc:
            log.warning("global: publishing alerts failed: %r", exc)
        self.state.record_drift(report, now)

    # -- trials ------------------------------------------------------------------------------------
    async def _watch_trial(self, now: float) -> None:
        """Keep a canary's replicas current and act on its verdict (promote or roll back, reason logged)."""
        state = self.state
        if state.trial is None:
            return
        state.refresh_trial()
        self._publish_overlay()
        verdict = state.judge_canary(now)
        if verdict is None:
            return
        if verdict.action == "promote":
            await self._promote(verdict.reason, wait=False)
        else:
            await self._end_trial("rolled_back", verdict.reason)

    async def _end_trial(self, outcome: str, reason: str) -> dict[str, Any]:
        now = time.time()
        trial = self.state.end_trial(outcome, reason, now)
        self._log_trial(trial, outcome, reason, now)
        self._publish_overlay()
        if trial.kind == "canary":  # its nodes go back to the active policy
            for n in trial.nodes:
                if n in self.handles and n not in self._pushing:
                    self._pushing[n] = asyncio.get_event_loop().create_task(self._push_policy(n))
        return policy_answer(self.state, trial=trial.to_dict(now) | {"state": outcome, "reason": reason})

    async def _promote(self, reason: str, wait: bool = True) -> dict[str, Any]:
        trial = self.state.trial
        if trial is None:
            raise ValueError("nothing to promote: no canary or shadow policy runs (agentic-ray policy history)")
        await self._end_trial("promoted", reason)
        answer = await self.apply_policy(trial.policy, trial.source, wait)
        return answer | {"promoted": {"kind": trial.kind, "version": trial.policy.version, "reason": reason}}

    async def promote_policy(self, wait: bool = True) -> dict[str, Any]:
        """Make the running canary or shadow policy the active one everywhere. ``ValueError`` when none runs."""
        return await self._promote("promoted by hand", wait)

    def _log_trial(self, trial: Any, event: str, reason: str, now: float) -> None:
        try:
            dlog = self._log()
            if dlog is not None:
                dlog.log_decision(
                    request_id=f"{trial.kind}:{trial.policy.sha256[:12]}", action=f"control:{trial.kind}_{event}",
                    qos="", policy_version=trial.policy.version, policy_sha256=trial.policy.sha256, rule_ids=(),
                    inputs={"baseline_sha": trial.baseline_sha, "nodes": list(trial.nodes),
                            "replicas": list(trial.replicas)},
                    predicted={}, outcome=f"{event}: {reason}", ts=now,
                )  # fmt: skip
        except Exception as exc:
            log.warning("global: decision log write failed: %r", exc)

    def _check_actions(self, policy: Policy) -> None:
        """Refuse a policy whose ``actions`` rules name a deployment the control plane does not know."""
        known = self.state.serve.deployments
        registered = ", ".join(sorted(known)) or "none"
        problems = [
            Problem(f"actions.rules[{i}].when.deployment",
                    f"rule {r.id!r}: unknown deployment {r.deployment!r} (registered: {registered})",
                    None, policy.source or "<policy>")
            for i, r in enumerate(policy.actions.rules)
            if r.deployment is not None and r.deployment not in known
        ]  # fmt: skip
        if problems:
            raise PolicyValidationError(problems, policy.source or "<policy>")

    # -- actions -----------------------------------------------------------------------------------
    def _execute(self, records: list[ActionRecord]) -> None:
        """Log the actions' transitions and put the planner's overlay in force: Serve's part published to
        routers and replicas, node caps at the next allocation round (brought forward), replica counts
        through Serve's controller, resource requests through the autoscaler (``control._actions``)."""
        for r in records:
            self._log_action(r)
            if r.event in ("action", "revert", "skip"):
                log.info("agentic actions: %s %s %s on %s (%s)", r.event, r.rule, r.action, r.target, r.alert)
        overlay = self.state.planner.overlay()
        self._publish_overlay()
        if any(r.action == "tighten_admission" and "nodes" in r.detail for r in records):
            self._last_alloc = 0.0  # node caps changed: lease them now
        scaled = [r for r in records if r.action == "scale_out" and r.event in ("action", "revert")]
        for r in scaled:
            if not r.dry_run and "deployment" in r.detail:
                self._scale(r)
        if overlay.resources != self._requested_bundles:
            self._requested_bundles = overlay.resources
            self._request_resources([dict(b) for b in overlay.resources])

    def _publish_overlay(self) -> None:
        """Write Serve's overlay (actions in force, canary, shadow) to the KV when it changed."""
        serve = self.state.serve_overlay()
        if serve != self._published_overlay:
            write_serve_overlay(serve)
            self._published_overlay = serve

    def _scale(self, record: ActionRecord) -> None:
        """Set a deployment's replica count through Serve's controller (the application must be deployed
        with ``external_scaler_enabled=True``); a failure is logged and shown in ``status()["events"]``."""
        app, _, name = str(record.detail["deployment"]).partition("/")
        replicas = int(record.detail["replicas"])
        try:
            from ray.serve._private.common import DeploymentID
            from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

            controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
            ref = controller.update_deployment_replicas.remote(DeploymentID(name=name, app_name=app), replicas)
        except Exception as exc:
            self.state.record_event(time.time(), "scale_failed", deployment=record.detail["deployment"],
                                    replicas=replicas, rule=record.rule, reason=repr(exc))  # fmt: skip
            return
        # Serve's controller answers later (it refuses an application deployed without external_scaler_enabled):
        # record what it said, not that it was asked.
        asyncio.get_event_loop().create_task(self._scaled(ref, str(record.detail["deployment"]), replicas, record.rule))

    async def _scaled(self, ref: Any, deployment: str, replicas: int, rule: str) -> None:
        try:
            await asyncio.wait_for(ref, timeout=30)
            self.state.record_event(time.time(), "scaled", deployment=deployment, replicas=replicas, rule=rule)
        except Exception as exc:
            self.state.record_event(time.time(), "scale_failed", deployment=deployment, replicas=replicas, rule=rule,
                                    reason=repr(exc))  # fmt: skip

    def _request_resources(self, bundles: list[dict[str, float]]) -> None:
        try:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=bundles)
            self.state.record_event(time.time(), "resources_requested", bundles=bundles)
        except Exception as exc:
            self.state.record_event(time.time(), "resources_request_failed", bundles=bundles, reason=repr(exc))

    def _log(self) -> Any:
        """This coordinator's decision log (``ControlPlaneConfig.decision_log_dir`` or
        ``AGENTIC_DECISION_LOG_DIR``), opened on first use; None without one."""
        if self._decision_log is None:
            directory = self.config.decision_log_dir or os.environ.get("AGENTIC_DECISION_LOG_DIR")
            if not directory:
                return None
            from agentic_ray.telemetry.audit import open_decision_log

            os.makedirs(directory, exist_ok=True)
            self._decision_log = open_decision_log(os.path.join(directory, f"coordinator-{os.getpid()}.jsonl"))
        return self._decision_log

    def _log_action(self, record: ActionRecord) -> None:
        """One action transition as a decision-log record naming the alert (request id) and the rule."""
        try:
            dlog = self._log()
            if dlog is None:
                return
            policy = self.state.policy
            dlog.log_decision(
                request_id=record.alert or record.target, action=f"control:{record.event}", qos="",
                policy_version=policy.version, policy_sha256=policy.sha256, rule_ids=(record.rule,),
                inputs={"alert": record.alert, "action": record.action, "target": record.target,
                        "dry_run": record.dry_run},
                predicted=dict(record.detail), outcome=f"{record.event}:{record.action}", ts=record.at,
            )  # fmt: skip
        except Exception as exc:  # the log must not break the control loop
            log.warning("global: decision log write failed: %r", exc)

    # -- inputs ------------------------------------------------------------------------------------
    async def zone_report(self, zone: str, report: ZoneReport | dict[str, Any]) -> None:
        """Called by a ZoneCoordinator with its fresh node snapshots and merged summary delta (a
        ``ZoneReport``, or the payload dict of a zone of wire version 1)."""
        self.state.ingest(ZoneReport.from_wire(zone, report), time.time())

    async def serve_register(self, member: dict[str, Any], policy_text: str | None = None) -> dict[str, Any]:
        """A Serve router or replica registers (``control.ServeMember`` as a dict) with its deploy-time
        policy's canonical YAML; returns its deployment's target ``{sha256, version, revision}``."""
        now = time.time()
        m = ServeMember.from_dict(member, now)
        if policy_text and m.policy_sha and not self.state.serve.knows_policy(m.policy_sha):
            try:
                policy = parse_policy(policy_text, source=f"<deployment {m.deployment}>")
                self.state.serve.add_policy(policy.sha256, {q: c.budget_ms for q, c in policy.classes.items()})
                if kv_get("policy/" + policy.sha256) is None:
                    kv_put("policy/" + policy.sha256, policy_text)
            except Exception as exc:  # a bad text from a member must not break the coordinator
                log.warning("global: policy of %s does not parse: %r", m.deployment, exc)
        new = m.deployment not in self.state.serve.deployments
        target = self.state.serve.register(m)
        if new:
            self.state.record_event(now, "serve_deployment_registered", deployment=m.deployment,
                                    policy_version=m.policy_version)  # fmt: skip
        return target.to_dict()

    async def serve_heartbeat(self, member: dict[str, Any]) -> dict[str, Any]:
        """A router's heartbeat: the policy it runs (its acknowledgement), the classes it saw and, while a
        shadow policy runs, its counts of what that policy would have done differently."""
        shadow, trial = member.get("shadow"), self.state.trial
        if shadow and trial is not None and trial.kind == "shadow" and shadow.get("sha") == trial.policy.sha256:
            trial.shadow[str(member["member_id"])] = {k: int(v) for k, v in shadow.items() if k != "sha"}
        return self.state.serve.router_heartbeat(ServeMember.from_dict(member, time.time())).to_dict()

    async def report_log_head(self, log_id: str, head: dict[str, Any]) -> None:
        """Anchor a decision log's checkpoint head (``{count, hash}``) reported by the process writing it;
        shown in ``status()["decision_logs"]`` so a later ``verify`` can compare against it."""
        self.state.anchor_log_head(log_id, head, time.time())

    # -- policy rollout ----------------------------------------------------------------------------
    async def _rollout(self, policy: Policy, wait: bool, serve: dict[str, Any] | None = None) -> dict[str, Any]:
        self.metrics.policy_version(policy.version)
        self._checkpoint()
        self._publish_serve()
        extra = {"serve": serve or {}}
        for task in list(self._pushing.values()):
            task.cancel()
        self._pushing = {}
        nodes = list(self.handles)
        if wait and nodes:
            results = await asyncio.gather(*(self._push_policy(n) for n in nodes))
            return policy_answer(self.state, [n for n, ok in zip(nodes, results, strict=True) if ok], **extra)
        for n in nodes:
            self._pushing[n] = asyncio.get_event_loop().create_task(self._push_policy(n))
        return policy_answer(self.state, [], **extra)

    async def apply_policy(self, policy: Policy, source: str | None = None, wait: bool = True,
                           trial: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        """Make ``policy`` active (a compiled ``Policy``, validated by whoever built it), checkpoint it and
        push it to every agent; with ``wait`` returns after the acknowledgements (``acked``/``missing``).
        Applying the active policy again is a no-op that still reports the acknowledgements. A control
        plane with trusted keys refuses it (``PolicySignatureError("unsigned")``): use ``apply_bundle``.

        ``trial``: ``{"canary": fraction}`` or ``{"canary_nodes": [...]}`` (with ``window_s``, ``margin``)
        starts it as a canary, ``{"shadow": True}`` in shadow (``control._trial``); ``by``: who asked.
        Refused (``PolicyValidationError`` / ``ValueError``, nothing changed): an ``actions`` rule naming
        an unknown deployment, a bad canary, a trial already running."""
        if self.config.trusted_keys:
            raise PolicySignatureError(
                "unsigned", "this control plane accepts only signed policy bundles (it has trusted keys): "
                "sign the policy (agentic-ray policy sign) and apply the bundle",
            )  # fmt: skip
        return await self._apply(policy, source, wait, trial=trial)

    async def apply_bundle(self, bundle_json: str, source: str | None = None, wait: bool = True) -> dict[str, Any]:
        """Verify a signed bundle (``policies.signing.verify_bundle`` against the trusted keys, the highest
        sequence applied and the active policy) and apply its policy, recording the signing key ids and
        sequence in the history. ``PolicySignatureError`` (nothing changed) when it must be refused."""
        trusted = self._trusted_keys()
        if not trusted:
            raise PolicySignatureError(
                "untrusted_key", "this control plane has no trusted keys (agentic_ray.init(trusted_keys=...)); "
                "apply the policy itself, or start it with keys",
            )  # fmt: skip
        verified = verify_bundle(
            PolicyBundle.from_json(bundle_json), trusted, highest_sequence=self.state.rollout.highest_sequence,
            previous=self.state.policy, budget_raise_fraction=self.config.budget_raise_fraction,
        )  # fmt: skip
        answer = await self._apply(verified.policy, source, wait, verified.key_ids, verified.sequence)
        return answer | {"signed_by": list(verified.key_ids), "sequence": verified.sequence,
                         "risks": list(verified.risks)}  # fmt: skip

    async def trust_keys(self, pems: list[str]) -> list[str]:
        """Set the trusted keys of a control plane that has none (from then on only signed bundles change
        its policy); returns their key ids. The same keys again: a no-op. Other keys when some are set:
        ``PolicySignatureError("bad_key")`` (they change only with a new control plane)."""
        keys = public_keys_from_pem(pems)
        if self.config.trusted_keys:
            if set(keys) != set(self._trusted_keys()):
                raise PolicySignatureError(
                    "bad_key", "this control plane already has other trusted keys; they are not changed at run time"
                )
            return sorted(keys)
        self.config = dataclasses.replace(self.config, trusted_keys=tuple(pems))
        self._trusted = None
        self.state.record_event(time.time(), "trusted_keys_set", key_ids=sorted(keys))
        self._checkpoint()
        return sorted(keys)

    def _trusted_keys(self) -> dict[str, Any]:
        if self._trusted is None:
            self._trusted = public_keys_from_pem(self.config.trusted_keys) if self.config.trusted_keys else {}
        return self._trusted

    async def _apply(
        self,
        policy: Policy,
        source: str | None,
        wait: bool,
        signed_by: tuple[str, ...] = (),
        sequence: int | None = None,
        trial: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self._check_actions(policy)
        if trial:
            return await self._start_trial(policy, source, trial)
        if self.state.trial is not None and self.state.trial.policy.sha256 != policy.sha256:
            self.state.check_trial_free()
        now = time.time()
        entry = self.state.rollout.apply(policy, source, now, signed_by, sequence)
        if entry is None:
            if sequence is not None:
                self._checkpoint()  # the sequence was still consumed
            return policy_answer(self.state, unchanged=True)
        self.state.record_event(
            now, "policy_applied", sha256=entry.sha256, version=entry.version, revision=entry.revision,
            signed_by=list(signed_by), sequence=sequence,
        )  # fmt: skip
        serve = self.state.serve
        serve.add_policy(policy.sha256, {q: c.budget_ms for q, c in policy.classes.items()})
        verdicts = serve.apply(policy.sha256, policy.version, policy.classes, entry.revision, now)
        for deployment, verdict in verdicts.items():
            if not verdict["accepted"]:
                self.state.record_event(now, "serve_policy_refused", deployment=deployment, version=policy.version,
                                        reason=verdict["reason"])  # fmt: skip
        self._execute(self.state.policy_changed(now))
        return await self._rollout(policy, wait, verdicts)

    async def _start_trial(self, policy: Policy, source: str | None, trial: dict[str, Any]) -> dict[str, Any]:
        from agentic_ray.control._trial import CanarySettings

        now = time.time()
        src = source or policy.source or "<policy>"
        by = trial.get("by")
        if trial.get("shadow"):
            started = self.state.start_shadow(policy, src, now, by)
        else:
            settings = CanarySettings(float(trial.get("window_s", 60.0)), float(trial.get("margin", 1.0)),
                                      int(trial.get("min_samples", 20)),
                                      float(trial.get("p99_slack", 1.2)))  # fmt: skip
            started = self.state.start_canary(policy, src, now, trial.get("canary"), trial.get("canary_nodes"),
                                              settings, by)  # fmt: skip
        kv_put("policy/" + policy.sha256, policy.to_yaml())
        self.state.serve.add_policy(policy.sha256, {q: c.budget_ms for q, c in policy.classes.items()})
        self.state.record_event(now, f"{started.kind}_started", version=policy.version, sha256=policy.sha256,
                                nodes=list(started.nodes), replicas=list(started.replicas))  # fmt: skip
        self._log_trial(started, "started", "", now)
        self._publish_overlay()
        for n in started.nodes:
            if n in self.handles:
                self._pushing[n] = asyncio.get_event_loop().create_task(self._push_policy(n))
        return policy_answer(self.state, trial=started.to_dict(now))

    async def rollback_policy(self, wait: bool = True) -> dict[str, Any]:
        """Roll back the running canary or shadow policy, else return to the previous policy version.
        ``ValueError`` when there is neither. A control plane with trusted keys ends a trial (back to the
        signed active policy) but refuses a version rollback: that is a signed bundle (``--rollback``)."""
        if self.state.trial is not None:
            return await self._end_trial("rolled_back", "rolled back by hand")
        if self.config.trusted_keys:
            raise PolicySignatureError(
                "unsigned", "this control plane has trusted keys: sign the older policy as a rollback "
                "(agentic-ray policy sign --rollback) and apply the bundle",
            )  # fmt: skip
        if len(self.state.rollout.history) < 2:
            raise ValueError("nothing to roll back: no canary or shadow runs and there is no previous policy version")
        undone = self.state.rollout.active.revision
        entry = self.state.rollout.rollback()
        self.state.record_event(time.time(), "policy_rolled_back", sha256=entry.sha256, version=entry.version)
        serve = self.state.serve.rollback(undone)
        self._execute(self.state.policy_changed(time.time()))
        return await self._rollout(self.state.policy, wait, serve)

    async def history(self) -> list[dict[str, Any]]:
        """``policy history``: version, sha256, state, when and by whom, oldest first
        (``GlobalState.history_rows``)."""
        return self.state.history_rows(time.time())

    async def policy(self) -> dict[str, Any]:
        """The active policy: name, version, sha256, revision, source, canonical YAML ``text``."""
        return self.state.rollout.info() | {"text": self.state.rollout.active.text}

    # -- outputs -----------------------------------------------------------------------------------
    async def cluster_view(self) -> ClusterView:
        """The cluster view for placement (``control.ClusterView``): active policy ids and every alive
        node with its agent's latest figures."""
        return cluster_view(self.state, time.time())

    async def view(self) -> dict[str, Any]:
        """``cluster_view()`` as JSON (``snapshot`` figures are zero and ``reported`` False until the
        agent reported); what a ``ClusterViewCache`` of wire version 1 reads."""
        return cluster_view(self.state, time.time()).to_dict()

    async def agents_info(self) -> dict[str, dict[str, Any]]:
        """``{node_id: {name, zone, incarnation, registrations, acked_policy, reported}}`` for every known agent."""
        return agents_info(self.state)

    async def status(self) -> dict[str, Any]:
        """Telemetry seam for ``agentic-ray status`` (JSON-able; the shape is ``control._status``'s):
        ``policy`` (name, version, sha256, revision, source, acked/missing agents), ``zones`` -> list of
        agents with accelerator state and in-flight counts, ``classes`` (per class/workflow budget vs
        observed p99 and burn rates), ``alerts`` (active), ``alert_log``, ``allocation``, ``events``,
        ``restored`` (from checkpoint), ``decision_logs`` (``{log id: {count, hash, at}}``: checkpoint
        heads of per-process decision logs), ``serve`` (deployments, their routers and replicas with the
        policy version each runs and per-class figures, refusals), ``process`` (this coordinator's:
        niceness)."""
        return status_json(self.state, time.time(), self.config.to_dict(), agent_name, self.process)

    async def ping(self) -> float:
        return time.time()

    async def process_info(self) -> dict[str, Any]:
        """What this coordinator's process runs with (``_ray_env.process_env``: niceness); ``init`` warns
        when it is above 0."""
        return dict(self.process)
