"""Control-plane administration from a driver: ``init``/``shutdown``, policy rollout and rollback,
``status`` and ``cluster_view``.

``init`` connects to Ray (or starts a local one), makes sure the detached GlobalCoordinator runs (it
creates the zone coordinators and one node agent per node), optionally rolls out a policy, creates
this process's ``ClusterViewCache`` and waits until every node's agent has reported. ``shutdown``
stops this process's threads and, when ``init`` started Ray, the control plane and Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from agentic_ray import _identity
from agentic_ray.actors import _view_cache as view_cache
from agentic_ray.actors._common import GLOBAL_NAME, NAMESPACE, ControlPlaneConfig
from agentic_ray.actors._worker import stop_accounting
from agentic_ray.policies import Policy, load_policy
from agentic_ray.sdk import _state, _telemetry

__all__ = [
    "apply_policy",
    "policy_history",
    "promote_policy",
    "cluster_view",
    "init",
    "rollback_policy",
    "shutdown",
    "status",
    "stop_control_plane_actors",
]

log = logging.getLogger(__name__)


def _global_coordinator(config: ControlPlaneConfig | None = None) -> Any:
    from agentic_ray.actors._global_coordinator import GlobalCoordinator

    return GlobalCoordinator.options(
        name=GLOBAL_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(None if config is None else config.to_dict())


def _get(ref: Any, timeout: float) -> Any:
    """``ray.get`` of a coordinator call, raising an agentic-ray error it raised as itself (not wrapped in
    ``RayTaskError``), so callers see ``PolicySignatureError("unsigned: ...")`` and nothing else."""
    import ray

    from agentic_ray.errors import AgenticRayError

    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, (AgenticRayError, ValueError)):
            raise exc.cause from None
        raise


def _as_bundle(policy: Any) -> tuple[Any, str] | None:
    """``(PolicyBundle, source)`` when ``policy`` is a bundle or the path of one, else ``None``."""
    from agentic_ray.policies.signing import BUNDLE_KIND, PolicyBundle

    if isinstance(policy, PolicyBundle):
        return policy, "<bundle>"
    if isinstance(policy, (str, os.PathLike)):
        try:
            with open(policy, "rb") as f:
                head = f.read(4096)
        except OSError:
            return None  # load_policy says what is wrong with the path
        if head.lstrip().startswith(b"{") and BUNDLE_KIND.encode() in head:
            with open(policy, "rb") as f:
                return PolicyBundle.from_json(f.read()), os.fspath(policy)
    return None


def _trusted_pems(trusted_keys: Any) -> tuple[str, ...]:
    """PEM texts of ``trusted_keys`` (paths of PEM files, or PEM texts), checked."""
    from agentic_ray.policies.signing import public_keys_from_pem

    pems = []
    for item in trusted_keys:
        text = str(item)
        if "-----BEGIN" not in text:
            with open(item, encoding="ascii") as f:
                text = f.read()
        pems.append(text)
    public_keys_from_pem(pems)  # PolicySignatureError("bad_key") before anything starts
    return tuple(pems)


def _as_policy(policy: Any) -> tuple[Policy, str]:
    if isinstance(policy, Policy):
        return policy, policy.source or "<policy object>"
    if isinstance(policy, (str, os.PathLike)):
        return load_policy(policy), os.fspath(policy)
    raise TypeError(f"policy: expected a path or a Policy, got {type(policy).__name__}")


def init(
    policy: Any = None,
    address: str | None = None,
    *,
    config: ControlPlaneConfig | None = None,
    wait_s: float = 30.0,
    tenant: str | None = None,
    trusted_keys: Any = None,
    **ray_init_kwargs: Any,
) -> dict[str, Any]:
    """Connect to Ray (or start an embedded local Ray) and make sure the control plane runs.

    ``address`` / ``RAY_ADDRESS`` (set by ``ray job submit``) connect to a cluster, the same variables
    then going in the job's ``runtime_env`` (``_ray_env.job_runtime_env``: this job's workers and a Serve
    it starts get them; a value of yours, in ``runtime_env`` or the submitted job's, is kept); otherwise a
    local Ray starts, with the environment of ``agentic_ray._ray_env.prepare`` (the front door in Serve's
    proxies, gRPC to replicas, workers at niceness 0; a variable already set is kept). Idempotent:
    when Ray is already initialised it is reused. ``policy`` (path or ``Policy``) is validated here
    (``PolicyValidationError``, nothing changed) and rolled out; without it the control plane keeps its
    active policy (the built-in default at first start). Waits up to ``wait_s`` for every alive node's
    agent to report. ``tenant`` binds this process to a tenant (also
    ``AGENTIC_TENANT``, which binds a job's workers too; module ``agentic_ray._identity``): its tasks and
    handle calls then run as that tenant. ``trusted_keys``: Ed25519 public keys (PEM file paths or texts)
    whose signed bundles alone may change the policy from then on (``policies.signing``): a control
    plane without keys takes them; one with other keys refuses (``PolicySignatureError``). ``policy`` may
    then be a signed bundle (or its path). Returns the policy info.
    """
    import dataclasses

    import ray

    _identity.bind(tenant)  # ValueError before anything starts
    pems = _trusted_pems(trusted_keys) if trusted_keys else ()
    if pems:
        config = dataclasses.replace(config or ControlPlaneConfig(), trusted_keys=pems)

    bundle = _as_bundle(policy) if policy is not None else None
    new_policy = _as_policy(policy) if policy is not None and bundle is None else None
    started = False
    if not ray.is_initialized():
        from agentic_ray._ray_env import job_runtime_env, prepare

        ray_init_kwargs.setdefault("log_to_driver", True)
        started = address is None and "RAY_ADDRESS" not in os.environ  # else ray.init connects to a cluster
        if started:
            prepare()  # the local Ray's proxies run the front door, its workers at normal priority
        else:  # a cluster started without them: the job's workers, and a Serve it starts, get them instead
            runtime_env = job_runtime_env(ray_init_kwargs.get("runtime_env"))
            if runtime_env is not None:
                ray_init_kwargs["runtime_env"] = runtime_env
        ray.init(address=address, **ray_init_kwargs)
    coordinator = _global_coordinator(config)
    _warn_of_niceness(coordinator)
    if pems:
        _get(coordinator.trust_keys.remote(list(pems)), 60)  # an existing plane takes them, or refuses
    info = ray.get(coordinator.policy.remote(), timeout=60)
    if new_policy is not None:
        info = _get(coordinator.apply_policy.remote(new_policy[0], new_policy[1], True), 120)
    elif bundle is not None:
        info = _get(coordinator.apply_bundle.remote(bundle[0].to_json(), bundle[1], True), 120)
    rt = _state.install(started)
    _telemetry.open_from_env()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            view = rt.refresh(timeout=10)
            if view["nodes"] and all(n["reported"] for n in view["nodes"]):
                break
        except Exception as exc:
            rt.view_error = repr(exc)
        if time.monotonic() > deadline:
            log.warning("agentic_ray.init: not every agent reported within %.0f s", wait_s)
            break
        time.sleep(0.1)
    return info


def _warn_of_niceness(coordinator: Any) -> None:
    """Log a warning when the control plane runs above niceness 0: Ray's default for workers, on a cluster
    started without ``RAY_worker_niceness=0`` whose control plane a job without agentic-ray's runtime_env
    started (``ray.init`` before ``agentic_ray.init``, or ``AGENTIC_JOB_RUNTIME_ENV=0``)."""
    import ray

    from agentic_ray.control._serve_state import niced

    try:
        niceness = niced(ray.get(coordinator.process_info.remote(), timeout=60))
    except Exception:  # a coordinator of an older version has no such call: nothing to say
        return
    if niceness is not None:
        log.warning(
            "agentic_ray.init: the control plane runs at niceness %d (Ray's default for workers): it and the "
            "node agents yield to every normal process on their hosts. Start Ray with RAY_worker_niceness=0, or "
            "call agentic_ray.init(address=...) instead of ray.init and restart the control plane "
            "(agentic_ray.shutdown(stop_control_plane=True)); README: Labelled clusters",
            niceness,
        )


def shutdown(stop_control_plane: bool | None = None) -> None:
    """Stop this process's view and accounting threads; with ``stop_control_plane`` (default: only when ``init`` started
    the local Ray) kill the coordinators and agents and clear their checkpoint; then ``ray.shutdown()``
    when ``init`` started Ray."""
    import ray

    rt = _state.take()
    _identity.bind(None)  # back to the job's AGENTIC_TENANT, if any
    _telemetry.close()
    started = bool(rt and rt.started_ray)
    if rt is not None:
        rt.stop()
    stop_accounting()  # its thread must not call Ray once Ray is shut down (Ray would auto-init)
    from agentic_ray.serve._plane import stop_serve_plane

    stop_serve_plane()  # this process's routers' link to the control plane (same reason)
    if stop_control_plane is None:
        stop_control_plane = started
    if stop_control_plane and ray.is_initialized():
        stop_control_plane_actors()
    if started and ray.is_initialized():
        ray.shutdown()


def stop_control_plane_actors() -> None:
    """Kill every actor in namespace ``agentic`` and delete the checkpoint keys."""
    import ray
    from ray.experimental import internal_kv

    try:
        g = ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)
        ray.kill(g, no_restart=True)
    except ValueError:
        pass
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") == NAMESPACE:
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(entry["name"], namespace=NAMESPACE), no_restart=True)
    for key in internal_kv._internal_kv_list("", namespace=NAMESPACE):
        internal_kv._internal_kv_del(key, namespace=NAMESPACE)


def apply_policy(
    path_or_policy: Any,
    wait: bool = True,
    *,
    canary: float | None = None,
    canary_nodes: list[str] | None = None,
    shadow: bool = False,
    canary_window_s: float = 60.0,
    canary_margin: float = 1.0,
    canary_min_samples: int = 20,
    canary_p99_slack: float = 1.2,
) -> dict[str, Any]:
    """Validate (``PolicyValidationError`` for an invalid document: the active policy stays), version
    and push a policy to every agent. Returns ``{name, version, sha256, revision, source, acked,
    missing}`` (node ids that acknowledged / did not within the timeout). ``path_or_policy`` may be a
    signed bundle (``policies.signing.PolicyBundle`` or its file): a control plane with trusted keys
    takes only those (``PolicySignatureError`` otherwise, nothing changed); the answer then also names
    the signing key ids (``signed_by``), the ``sequence`` and the ``risks`` it was checked for. Every
    change is a ``policy_change`` record in this process's decision log when one is open.

    ``canary=0.2`` (or ``canary_nodes=[node ids]``) runs it as a canary instead: it governs that fraction
    of the nodes and of each deployment's replicas (chosen deterministically, never a zone's or a
    deployment's last), is compared with the active policy by burn rate and p99 over
    ``canary_window_s`` and promoted when no worse, or rolled back when its burn rate exceeds the
    baseline's by more than ``canary_margin`` (judged once the canary served ``canary_min_samples``
    requests in the window) or, at the end of the window, its p99 exceeds ``canary_p99_slack`` times the
    baseline's. ``shadow=True`` runs it in shadow: every router
    evaluates it beside the active one and counts what it would have done differently (``status()
    ["trial"]``), acting on nothing. The answer then has ``trial``. A canary fraction outside (0, 1) is a
    ``ValueError``; so is a trial while another runs (``promote_policy`` / ``rollback_policy`` first), and
    an ``actions`` rule naming a deployment the control plane does not know is a ``PolicyValidationError``
    naming the rule; nothing changes then. A canary or shadow trial takes a policy, not a signed bundle."""

    from agentic_ray.control._trial import CanarySettings, check_fraction

    if canary is not None:
        check_fraction(canary)
    if sum((canary is not None, bool(canary_nodes), bool(shadow))) > 1:
        raise ValueError("apply_policy: give one of canary, canary_nodes and shadow")
    CanarySettings(canary_window_s, canary_margin, canary_min_samples, canary_p99_slack)  # ValueError first
    rt = _state.runtime()
    bundle = _as_bundle(path_or_policy)
    if bundle is not None:
        if canary is not None or canary_nodes or shadow:
            raise ValueError("apply_policy: a signed bundle is applied whole; canary and shadow take a policy")
        info = _get(rt.global_handle().apply_bundle.remote(bundle[0].to_json(), bundle[1], wait), 120)
        _telemetry.log_policy_change(info, "apply_bundle")
        rt.reload_policy()
        return info
    policy, source = _as_policy(path_or_policy)
    trial = None
    if canary is not None or canary_nodes or shadow:
        trial = {"canary": canary, "canary_nodes": list(canary_nodes or ()), "shadow": bool(shadow),
                 "window_s": canary_window_s, "margin": canary_margin,
                 "min_samples": canary_min_samples, "p99_slack": canary_p99_slack}  # fmt: skip
    info = _get(rt.global_handle().apply_policy.remote(policy, source, wait, trial), 120)
    _telemetry.log_policy_change(info, "shadow" if shadow else "canary" if trial else "apply")
    if trial is None:
        rt.remember_policy(policy)
        rt.adopt_policy_sha(policy.sha256)
    return info


def rollback_policy(wait: bool = True) -> dict[str, Any]:
    """Roll back the running canary or shadow policy, else return to the previous policy version
    (``ValueError`` when there is neither; nothing changes)."""
    rt = _state.runtime()
    info = _get(rt.global_handle().rollback_policy.remote(wait), 120)
    _telemetry.log_policy_change(info, "rollback")
    rt.reload_policy()
    return info


def promote_policy(wait: bool = True) -> dict[str, Any]:
    """Make the running canary or shadow policy the active one everywhere (``ValueError`` when none runs;
    nothing changes)."""
    rt = _state.runtime()
    info = _get(rt.global_handle().promote_policy.remote(wait), 120)
    _telemetry.log_policy_change(info, "promote")
    rt.reload_policy()
    return info


def policy_history() -> list[dict[str, Any]]:
    """Every kept policy version and trial: ``{version, sha256, revision, source, state, at, by}``, oldest
    first (state ``active``, ``superseded``, ``canary running``, ``shadow promoted``, ...)."""
    rt = _state.runtime()
    return list(_get(rt.global_handle().history.remote(), 60))


NO_CONTROL_PLANE = (
    "no control plane on this cluster (agentic_ray.init() starts one): Serve deployments run on their "
    "deploy-time policies, without reports, live policy or caps"
)


def status() -> dict[str, Any]:
    """The GlobalCoordinator's ``status()`` (JSON-able; see its docstring). On a cluster without a
    control plane: ``{"control_plane": False, "detail": ..., "serve": {"control_plane": False, ...}}``,
    saying that Serve deployments run on their deploy-time policies (nothing is started)."""
    import ray

    try:
        if _state.current() is None and ray.is_initialized():
            ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)  # asking starts nothing in this process
        handle = _state.runtime().global_handle()
    except ValueError:  # connected, and no GlobalCoordinator runs
        return _no_control_plane()
    return ray.get(handle.status.remote(), timeout=30)


def _no_control_plane() -> dict[str, Any]:
    """The answer of ``status()`` on a cluster without a control plane."""
    return {
        "control_plane": False,
        "detail": NO_CONTROL_PLANE,
        "serve": {"control_plane": False, "detail": NO_CONTROL_PLANE, "deployments": {}},
    }


def cluster_view() -> dict[str, Any]:
    """This process's cached view: age (since fetched, and of the oldest node snapshot in it), nodes
    (in-flight, closed classes, EWMA service ms per class, snapshot age), active policy, last refresh
    error. Asking counts as use: it keeps the background refresh going (and fetches once if the view
    went stale while idle)."""
    rt = _state.runtime()
    if time.monotonic() - rt.last_used > view_cache.VIEW_IDLE_S and not rt.view_fresh():
        rt.try_refresh(timeout=1.0)
    rt.last_used = time.monotonic()
    return {
        "age_s": time.monotonic() - rt.view_at if rt.view_at else None,
        "oldest_snapshot_age_s": rt.view_age_s(),
        "fresh": rt.view_fresh(),
        "policy_sha": rt.policy_sha,
        "policy_version": rt.policy.version,
        "nodes": [
            {
                "node_id": n.node_id,
                "zone": n.attrs.zone,
                "accelerator": n.attrs.accelerator,
                "inflight": n.inflight,
                "closed_classes": sorted(n.closed_classes),
                "service_ms": dict(n.service_ms),
                "snapshot_age_s": rt.view_age_s(n.node_id),
            }
            for n in rt.nodes
        ],
        "error": rt.view_error,
    }
