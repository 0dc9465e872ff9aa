"""The SDK: ``init``/``shutdown``, ``@task``, ``budget``, ``apply_policy``/``rollback_policy``, ``status``.

``@agentic_ray.task(qos=..., budget_ms=..., workflow=..., stage=..., accelerator=..., tenant=...,
data_class=..., **ray_options)`` wraps a function like ``@ray.remote``; ``f.remote(...)``:

1. classifies the call with the active policy (``PolicyError`` for an unknown class, tenant or workflow,
   raised before anything is submitted); the deadline is ``min(now + budget, enclosing deadline)``,
   and a deadline that already passed raises ``BudgetExhausted`` at once;
2. places it from the **cached cluster view** (the GlobalCoordinator's merged agent snapshots,
   refreshed by a background thread every ``VIEW_REFRESH_S`` while the process places work; after
   ``VIEW_IDLE_S`` without placements the thread stops polling and the next placement fetches the view
   once, synchronously, if it has gone stale; otherwise no actor call on this path) with
   ``placement.choose_node``, and submits with ``NodeAffinitySchedulingStrategy(node, soft=False)``;
   ``NoEligibleNode`` (with rule ids) when no node can satisfy the rules. When the view is unavailable
   or stale, ``placement.fallback_placement``: plain Ray scheduling if the policy allows every known
   node, else a ``label_selector`` on the allowed zones, so residency holds;
3. on the worker, a wrapper refuses to start after the deadline (``BudgetExhausted``, the function is
   not called), runs the function inside ``deadline_scope`` (child tasks inherit the remaining budget),
   and accounts start/end with the node's agent through a batching background thread.

Telemetry, off the untraced hot path: when tracing is configured in the submitting process
(``telemetry.configure_tracing`` with an exporter, or ``AGENTIC_TRACE_EXPORTER`` at ``init``),
``.remote()`` runs inside ``root_span("agentic.submit")`` and, for a sampled span, appends the W3C
traceparent to the task name (``worker.TRACE_SUFFIX``); the worker opens ``agentic.execute`` under it
(``child_only``). Otherwise ``.remote()`` pays one module lookup. With ``AGENTIC_DECISION_LOG_DIR`` set,
every placement is appended to a per-process hash-chained ``DecisionLog``
(``<dir>/sdk-decisions-<pid>.jsonl``); its checkpoint heads go to the GlobalCoordinator and appear in
``status()["decision_logs"]``. Completion/queue/rejection metrics come from the node agents.

Every process (driver or worker) has one ``ClusterViewCache`` (``actors/view_cache.py``) with the policy
(read from the KV by sha256) and the view. Deadlines are wall-clock seconds (``time.time()``) because
they cross processes.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from agentic_ray._budget import Budget, budget_scope, current_deadline
from agentic_ray.actors import _view_cache as view_cache
from agentic_ray.actors._common import (
    GLOBAL_NAME,
    NAMESPACE,
    ControlPlaneConfig,
)
from agentic_ray.actors._view_cache import ClusterViewCache
from agentic_ray.actors._worker import (
    TRACE_SUFFIX,
    account_placed,
    encode_context,
    make_worker_function,
    stop_accounting,
)
from agentic_ray.control._placement import (
    Placement,
)
from agentic_ray.errors import BudgetExhausted
from agentic_ray.policies import Policy, RequestMeta, load_policy

__all__ = [
    "AgenticRemoteFunction",
    "apply_policy",
    "budget",
    "cluster_view",
    "init",
    "rollback_policy",
    "shutdown",
    "status",
    "task",
]

log = logging.getLogger(__name__)

_AGENTIC_KEYS = ("qos", "budget_ms", "workflow", "stage", "accelerator", "tenant", "data_class", "model")


_RUNTIME: ClusterViewCache | None = None
_RUNTIME_LOCK = threading.Lock()
_TRACING_MODULE = "agentic_ray.telemetry.tracing"
_DECISION_LOG: Any = None  # this process's DecisionLog when AGENTIC_DECISION_LOG_DIR is set
# Report each placement to the chosen node's agent (queued-not-started accounting, worker.account_placed).
# Off, agents see tasks only once they start, and their gates ignore work waiting in Ray's queue.
ACCOUNT_PLACEMENTS = True


def _tracing_on() -> Any:
    """The tracing module when it is imported and configured with an exporter, else ``None``."""
    tr = sys.modules.get(_TRACING_MODULE)
    if tr is None or tr.tracing_config().exporter == "none":
        return None
    return tr


def _open_telemetry_from_env() -> None:
    """Per process, once: tracing from ``AGENTIC_TRACE_EXPORTER``/``AGENTIC_TRACE_SAMPLING`` (when not
    configured yet) and the decision log from ``AGENTIC_DECISION_LOG_DIR``."""
    global _DECISION_LOG
    exporter = os.environ.get("AGENTIC_TRACE_EXPORTER")
    if exporter:
        from agentic_ray.telemetry import tracing

        if tracing.tracing_config().exporter == "none":
            ratio = float(os.environ.get("AGENTIC_TRACE_SAMPLING", str(tracing.TracingConfig().sampling_ratio)))
            tracing.configure_tracing(tracing.TracingConfig(exporter=exporter, sampling_ratio=ratio))
    log_dir = os.environ.get("AGENTIC_DECISION_LOG_DIR")
    if log_dir and _DECISION_LOG is None:
        from agentic_ray.telemetry.audit import open_decision_log

        every = int(os.environ.get("AGENTIC_DECISION_LOG_CHECKPOINT_EVERY", "1000"))
        _DECISION_LOG = open_decision_log(
            os.path.join(log_dir, f"sdk-decisions-{os.getpid()}.jsonl"),
            checkpoint_every=every,
            on_checkpoint=_anchor_head,
        )
        _anchor_head(_DECISION_LOG.head)


def _anchor_head(head: Any) -> None:
    """Send a decision-log checkpoint head to the GlobalCoordinator (fire-and-forget)."""
    rt = _RUNTIME
    log_ = _DECISION_LOG
    if rt is None or log_ is None:
        return
    with contextlib.suppress(Exception):
        rt.global_handle().report_log_head.remote(f"{os.getpid()}:{log_.path}", head.to_dict())


def _log_placement(fn: AgenticRemoteFunction, name: str, classification: Any, placement: Placement) -> None:
    rt = _RUNTIME
    with contextlib.suppress(Exception):
        _DECISION_LOG.log_decision(
            request_id=name,
            action="place",
            qos=classification.qos.name,
            policy_version=rt.policy.version if rt is not None else "",
            policy_sha256=rt.policy_sha if rt is not None else "",
            rule_ids=tuple(classification.rule_ids) + tuple(placement.rule_ids),
            inputs={"task": fn._task_name, "workflow": classification.workflow, "stage": classification.stage},
            predicted={"node_id": placement.node_id, "reason": placement.reason},
            outcome="submitted",
        )


def _runtime() -> ClusterViewCache:
    global _RUNTIME
    rt = _RUNTIME
    if rt is not None:
        return rt
    import ray

    if not ray.is_initialized():
        init()
        return _RUNTIME  # type: ignore[return-value]
    with _RUNTIME_LOCK:
        created = _RUNTIME is None
        if created:
            _RUNTIME = ClusterViewCache()
    if created:
        _open_telemetry_from_env()
    return _RUNTIME


# ---------------------------------------------------------------------------------------------------
# Driver side: the remote function
# ---------------------------------------------------------------------------------------------------
def _required_resources(ray_options: dict[str, Any]) -> dict[str, float]:
    resources = dict(ray_options.get("resources") or {})
    if ray_options.get("num_gpus"):
        resources["GPU"] = float(ray_options["num_gpus"])
    return resources


class AgenticRemoteFunction:
    """What ``@agentic_ray.task`` returns: ``.remote(*args, **kwargs)`` and ``.options(**overrides)``."""

    def __init__(
        self, fn: Callable[..., Any], agentic: dict[str, Any], ray_options: dict[str, Any], remote_fn: Any = None
    ) -> None:
        self._fn = fn
        self._agentic = dict(agentic)
        self._meta = RequestMeta(**{k: v for k, v in agentic.items() if k != "accelerator"})
        self._accelerator: str | None = agentic.get("accelerator")
        self._ray_options = dict(ray_options)
        if "scheduling_strategy" in ray_options or "label_selector" in ray_options:
            raise ValueError(
                "scheduling_strategy/label_selector: placement is decided by the policy; "
                "express placement as policy rules"
            )
        self._resources = _required_resources(ray_options)
        self._remote_fn = remote_fn
        self._by_node: dict[Any, Any] = {}
        self.__name__ = getattr(fn, "__name__", "task")
        self._task_name = str(self._ray_options.get("name") or self.__name__).replace("|", "/")
        self.__doc__ = fn.__doc__

    def _base(self) -> Any:
        if self._remote_fn is None:
            import ray

            runner = make_worker_function(self._fn)
            self._remote_fn = ray.remote(**self._ray_options)(runner) if self._ray_options else ray.remote(runner)
        return self._remote_fn

    def options(self, **overrides: Any) -> AgenticRemoteFunction:
        """A copy with agentic fields (``qos``, ``budget_ms``, ...) and/or Ray options overridden."""
        agentic = dict(self._agentic)
        ray_options = dict(self._ray_options)
        for key, value in overrides.items():
            (agentic if key in _AGENTIC_KEYS else ray_options)[key] = value
        agentic = {k: v for k, v in agentic.items() if v is not None}
        same_ray = ray_options == self._ray_options
        return AgenticRemoteFunction(self._fn, agentic, ray_options, self._remote_fn if same_ray else None)

    def _submit_function(self, placement: Placement) -> Callable[[str, tuple, dict], Any]:
        """``submit(task_name, args, kwargs)`` for one placement, built once per placement and cached.

        Ray's ``.options(**o).remote()`` merges and validates ``o`` on every call; here the merge and the
        validation run once per placement (with Ray's own ``update_options``/``validate_task_options``)
        and each call goes straight to ``RemoteFunction._remote`` with only the task name changing. If
        that private entry point is missing, it falls back to ``.options(...).remote()``."""
        key = (placement.node_id, placement.soft, tuple(sorted((placement.label_selector or {}).items())))
        submit = self._by_node.get(key)
        if submit is not None:
            return submit
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options: dict[str, Any] = {}
        if placement.node_id is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(placement.node_id, soft=placement.soft)
        if placement.label_selector:
            options["label_selector"] = dict(placement.label_selector)
        base = self._base()
        try:
            try:
                from ray._common import ray_option_utils  # Ray >= 2.50
            except ImportError:
                from ray._private import ray_option_utils  # older Ray

            defaults = dict(base._default_options)
            defaults.pop("max_calls", None)
            merged = ray_option_utils.update_options(defaults, options)
            ray_option_utils.validate_task_options(merged, in_options=True)
            merged.pop("name", None)
            runtime_env_info = base._serialized_base_runtime_env_info
            direct = base._remote

            def submit(task_name: str, args: tuple, kwargs: dict) -> Any:
                return direct(
                    args=args, kwargs=kwargs, serialized_runtime_env_info=runtime_env_info, name=task_name, **merged
                )

        except (AttributeError, ImportError):

            def submit(task_name: str, args: tuple, kwargs: dict) -> Any:
                return base.options(name=task_name, **options).remote(*args, **kwargs)

        if len(self._by_node) > 256:
            self._by_node.clear()
        self._by_node[key] = submit
        return submit

    def decide(self, now: float | None = None) -> tuple[Any, float, Placement]:
        """The policy decision and placement ``.remote()`` would use: ``(classification, deadline_at,
        placement)``. Raises what ``.remote()`` raises before submitting (``PolicyError``,
        ``BudgetExhausted``, ``NoEligibleNode``)."""
        rt = _runtime()
        now = time.time() if now is None else now
        classification = rt.policy.classify(self._meta, now)
        deadline_at = classification.deadline
        parent = current_deadline()
        if parent is not None and parent.at < deadline_at:
            deadline_at = parent.at
        if now >= deadline_at:
            raise BudgetExhausted(
                f"task {self.__name__} not submitted: the enclosing budget ran out "
                f"{(now - deadline_at) * 1000.0:.1f} ms ago",
                reason="deadline_passed",
                rule_ids=classification.rule_ids,
            )
        placement = rt.place(classification, self._accelerator, self._resources)
        return classification, deadline_at, placement

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Classify, place and submit; returns the ``ObjectRef`` (as ``ray.remote``'s ``.remote()``)."""
        tr = _tracing_on()
        if tr is None:
            return self._submit(args, kwargs, None, None)
        with tr.root_span("agentic.submit", {"agentic.task": self._task_name}) as sp:
            return self._submit(args, kwargs, tr, sp)

    def _submit(self, args: tuple, kwargs: dict, tr: Any, sp: Any) -> Any:
        """Decide and submit. With a recording ``agentic.submit`` span ``sp``, its traceparent rides in the
        task name so the worker's ``agentic.execute`` span becomes its child."""
        now = time.time()
        classification, deadline_at, placement = self.decide(now)
        name = encode_context(
            self._task_name, deadline_at, now, classification.qos.name, classification.workflow, classification.stage
        )
        if sp is not None and sp.is_recording():
            sp.set_attribute("agentic.qos", classification.qos.name)
            sp.set_attribute("agentic.node_id", placement.node_id or "")
            carrier = tr.with_trace({}).get(tr.TRACE_KWARG)
            if carrier and "traceparent" in carrier:
                name = name + TRACE_SUFFIX + carrier["traceparent"]
        if _DECISION_LOG is not None:
            _log_placement(self, name, classification, placement)
        ref = self._submit_function(placement)(name, args, kwargs)
        if placement.node_id is not None and ACCOUNT_PLACEMENTS:
            account_placed(placement.node_id, classification.qos.name, deadline_at)
        rt = _RUNTIME
        if rt is not None:
            rt.track(placement.node_id, ref)
        return ref

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.__name__} is an agentic_ray.task; call {self.__name__}.remote(...)")


def task(
    fn: Callable[..., Any] | None = None,
    *,
    qos: str | None = None,
    budget_ms: float | None = None,
    workflow: str | None = None,
    stage: str | None = None,
    accelerator: str | None = None,
    tenant: str | None = None,
    data_class: str | None = None,
    model: str | None = None,
    **ray_options: Any,
) -> Any:
    """``@agentic_ray.task`` / ``@agentic_ray.task(qos="critical", budget_ms=150, ...)``: a drop-in for
    ``@ray.remote`` on functions. ``budget_ms <= 0`` raises ``ValueError`` here; an unknown class,
    tenant or workflow raises ``PolicyError`` at ``.remote()`` before anything is submitted.
    ``accelerator`` restricts the nodes to that accelerator kind (node label ``accelerator``).
    Other keyword arguments are Ray task options (``num_cpus``, ``resources``, ``max_retries``...)."""
    agentic = {
        k: v
        for k, v in dict(
            qos=qos,
            budget_ms=budget_ms,
            workflow=workflow,
            stage=stage,
            accelerator=accelerator,
            tenant=tenant,
            data_class=data_class,
            model=model,
        ).items()
        if v is not None
    }

    def wrap(f: Callable[..., Any]) -> AgenticRemoteFunction:
        if not callable(f) or inspect.isclass(f):
            raise TypeError("agentic_ray.task decorates functions (use Ray actors for classes)")
        return AgenticRemoteFunction(f, agentic, ray_options)

    return wrap(fn) if fn is not None else wrap


# ---------------------------------------------------------------------------------------------------
# Budgets in driver code
# ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def budget(ms: float) -> Iterator[Budget]:
    """``with agentic_ray.budget(150):`` -- tasks submitted in the block get at most the time left
    (never more than an enclosing budget). ``ms <= 0`` raises ``ValueError``."""
    with budget_scope(ms, time.time()) as b:
        yield b


# ---------------------------------------------------------------------------------------------------
# Life cycle and policy rollout
# ---------------------------------------------------------------------------------------------------
def _global_coordinator(config: ControlPlaneConfig | None = None) -> Any:
    from agentic_ray.actors._global_coordinator import GlobalCoordinator

    return GlobalCoordinator.options(
        name=GLOBAL_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(None if config is None else config.to_dict())


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
    **ray_init_kwargs: Any,
) -> dict[str, Any]:
    """Connect to Ray (or start an embedded local Ray) and make sure the control plane runs.

    ``address`` / ``RAY_ADDRESS`` (set by ``ray job submit``) connect to a cluster; otherwise a local
    Ray starts. Idempotent: when Ray is already initialised it is reused. ``policy`` (path or
    ``Policy``) is validated here (``PolicyValidationError``, nothing changed) and rolled out; without it
    the control plane keeps its active policy (the built-in default at first start). Waits up to
    ``wait_s`` for every alive node's agent to report. Returns the policy info.
    """
    global _RUNTIME
    import ray

    new_policy = _as_policy(policy) if policy is not None else None
    started = False
    if not ray.is_initialized():
        ray_init_kwargs.setdefault("log_to_driver", True)
        if address is not None:
            ray.init(address=address, **ray_init_kwargs)
        else:
            ray.init(**ray_init_kwargs)  # RAY_ADDRESS when set, else a new local instance
            started = "RAY_ADDRESS" not in os.environ
    coordinator = _global_coordinator(config)
    info = ray.get(coordinator.policy.remote(), timeout=60)
    if new_policy is not None:
        info = ray.get(coordinator.apply_policy.remote(new_policy[0], new_policy[1], True), timeout=120)
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            _RUNTIME = ClusterViewCache()
        _RUNTIME.started_ray = _RUNTIME.started_ray or started
    rt = _RUNTIME
    _open_telemetry_from_env()
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


def shutdown(stop_control_plane: bool | None = None) -> None:
    """Stop this process's view and accounting threads; with ``stop_control_plane`` (default: only when ``init`` started
    the local Ray) kill the coordinators and agents and clear their checkpoint; then ``ray.shutdown()``
    when ``init`` started Ray."""
    global _RUNTIME, _DECISION_LOG
    import ray

    rt = _RUNTIME
    _RUNTIME = None
    _DECISION_LOG = None  # the log object stays open in telemetry.audit's per-process table
    started = bool(rt and rt.started_ray)
    if rt is not None:
        rt.stop()
    stop_accounting()  # its thread must not call Ray once Ray is shut down (Ray would auto-init)
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


def apply_policy(path_or_policy: Any, wait: bool = True) -> dict[str, Any]:
    """Validate (``PolicyValidationError`` for an invalid document: the active policy stays), version
    and push a policy to every agent. Returns ``{name, version, sha256, revision, source, acked,
    missing}`` (node ids that acknowledged / did not within the timeout)."""
    import ray

    policy, source = _as_policy(path_or_policy)
    rt = _runtime()
    info = ray.get(rt.global_handle().apply_policy.remote(policy, source, wait), timeout=120)
    rt.remember_policy(policy)
    rt.adopt_policy_sha(policy.sha256)
    return info


def rollback_policy(wait: bool = True) -> dict[str, Any]:
    """Return to the previous policy version (``ValueError`` when there is none)."""
    import ray

    rt = _runtime()
    info = ray.get(rt.global_handle().rollback_policy.remote(wait), timeout=120)
    rt.reload_policy()
    return info


def status() -> dict[str, Any]:
    """The GlobalCoordinator's ``status()`` (JSON-able; see its docstring)."""
    import ray

    return ray.get(_runtime().global_handle().status.remote(), timeout=30)


def cluster_view() -> dict[str, Any]:
    """This process's cached view: age (since fetched, and of the oldest node snapshot in it), nodes
    (in-flight, closed classes, EWMA service ms per class, snapshot age), active policy, last refresh
    error. Asking counts as use: it keeps the background refresh going (and fetches once if the view
    went stale while idle)."""
    rt = _runtime()
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
