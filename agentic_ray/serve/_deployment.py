"""``@agentic_ray.deployment``: a drop-in for ``@serve.deployment`` with the agentic router and gate.

    @agentic_ray.deployment(num_replicas=3, slots=2, policy="policy.yaml")
    class Model:
        async def __call__(self, prompt: str) -> str: ...

    handle = serve.run(Model.bind())
    handle.remote("hi", qos="critical", budget_ms=80).result()

What it adds to the class (a subclass is made; the user's class is untouched):

- every public method and ``__call__`` runs through the replica's ``ReplicaAdmission`` (an
  ``AdmissionGate``: ``slots`` concurrent calls, per-class bounded queues, priority then earliest
  deadline, expired work dropped). Methods marked ``@ungated`` (and ``reconfigure``, ``check_health``,
  ``record_*``) bypass it. Sync methods run in a worker thread so the gate's loop stays free;
- ``record_replica_metadata`` publishing a ``scheduling.reports.ReplicaMetadata`` (``zone``,
  ``accelerator``, ``labels``, ``slots``, ``cost``, ``node_id``, ``service_ms``): from the node's Ray labels
  (``zone``, ``accelerator``; ``"gpu"`` when the replica holds GPUs), overridden by an
  ``agentic_replica_attrs(self) -> dict`` method on the class when present (e.g. a replica that knows its
  own kind; it may also return ``service_ms: {model: ms}``, a prior routers use until the replica has
  measured its own service times; a bad value fails the replica's start with a ``ValueError`` naming the
  field, a key it does not know is dropped); and ``record_routing_stats`` publishing the gate's snapshot
  (a ``scheduling.reports.RoutingStats``);
- ``request_router_config`` naming ``AgenticRequestRouter`` with the policy's text (and a routing
  backoff of 10 ms growing to 50 ms for a request the router holds, instead of Serve's 25 ms to 0.5 s,
  which would outlast a critical budget), and
  ``max_ongoing_requests = slots + sum of per-class queue bounds`` so Serve hands queued work to the
  gate (which orders it) instead of holding it in the caller's FIFO.

HTTP: served with a route prefix (``serve.run(Model.bind(), route_prefix="/infer")``), the deployment is
its application's HTTP entry: ``__call__`` gets the JSON body as its one argument, the metadata comes
from the request's headers (classified by the router in Serve's proxy) and admission errors become HTTP
statuses (``http_direct``). Each replica runs fewer than ``slots`` calls of the classes that may be shed
while its calls wait longer than ``delay_target_ms`` on the proxy or on its own event loop
(``scheduling.limits.DelayLimit``); the router sees the lower limit in the replica's stats.

Streaming (generator) methods are gated too: a stream is admitted like a call and holds its slot until
it ends or the caller stops reading (its duration is not taken as a sample of the service time). Each
stream's time to first token and per output token (one yielded item = one token) are measured against
its class's ``ttft_ms`` / ``tpot_ms``, exported as ``agentic_ttft_ms`` / ``agentic_tpot_ms`` and
published to routers, which learn each replica's prefill and decode rates from them; a call may say its
``prompt_tokens`` / ``max_tokens`` (``_meta``) so that the router and the gate predict its first token.
Every other keyword is passed to ``serve.deployment``.

Telemetry is on by default (``telemetry=True``): the router's and the gates' decisions go to
``hooks.DEFAULT_HOOK`` (the process's ``TelemetryHook``: ``agentic_decisions`` / ``agentic_shed`` /
``agentic_rejected`` through ``ray.util.metrics``; sampled spans only when tracing is configured, e.g.
``AGENTIC_TRACE_EXPORTER`` in the replicas' ``runtime_env``; the hash-chained decision log only when
``AGENTIC_DECISION_LOG_DIR`` is set), replicas record ``agentic_queue_depth`` and ``agentic_completions``
/ observed latency / budget left, routers ``agentic_breaker_state`` and ``agentic_policy_version_info``.
A call whose kwargs carry a sampled trace context (``tracing.with_trace``, or the HTTP ingress) gets
``agentic.queue`` and ``agentic.execute`` spans in the replica. Turn it off with ``telemetry=False``
(no hook, no metrics, no spans), or turn off only the decision hooks with ``decision_hook="none"`` (gate)
/ ``router_hook="none"`` (router).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agentic_ray.control._serve_tally import drift_workflow
from agentic_ray.policies import Policy, default_policy, load_policy
from agentic_ray.scheduling.admission import DEFAULT_QUEUE_BOUND, MAX_QUEUE_BOUND, replica_gate, tenant_shares_of
from agentic_ray.scheduling.reports import ReplicaMetadata
from agentic_ray.serve._door_call import JSON_CALL_KEY
from agentic_ray.serve._hooks import DEFAULT_HOOK, DecisionHook, load_hook, register_policy
from agentic_ray.serve._http_auth import HttpAuth
from agentic_ray.serve._meta import ROUTED_AT, WORKFLOW_DEADLINE, pop_meta, request_meta, to_request, with_tokens

TRACE_KWARG = "_agentic_trace"  # agentic_ray.telemetry.tracing.TRACE_KWARG (kept import-free of OpenTelemetry)


def pop_trace(kwargs: dict[str, Any]) -> Any:
    """``tracing.pop_trace``, imported on first use."""
    from agentic_ray.telemetry.tracing import pop_trace as _pop

    return _pop(kwargs)


__all__ = ["deployment", "ungated"]

_UNGATED_ATTR = "__agentic_ungated__"
ROUTER_BACKOFF_S = (0.01, 0.05)  # Serve's routing backoff for held requests: first, most (s)
_NEVER_GATED = {"reconfigure", "check_health", "record_routing_stats", "record_replica_metadata",
                "record_autoscaling_stats", "agentic_replica_attrs", "agentic_gate_stats"}  # fmt: skip


def ungated(method: Callable) -> Callable:
    """Mark a deployment method to bypass the admission gate (health, stats, control calls)."""
    setattr(method, _UNGATED_ATTR, True)
    return method


def _resolve_policy(policy: Policy | str | Path | None) -> Policy:
    if policy is None:
        return default_policy()
    if isinstance(policy, Policy):
        return policy
    return load_policy(policy)


def _ungated_names(cls: type) -> list[str]:
    return [name for name, member in inspect.getmembers(cls) if getattr(member, _UNGATED_ATTR, False)]


def _strip_meta(method: Callable) -> Callable:
    """An ungated method still receives the router's ``_agentic`` (and a trace) keyword: drop them."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def stripped_async(self, *args: Any, **kwargs: Any) -> Any:
            pop_meta(kwargs)
            kwargs.pop(TRACE_KWARG, None)
            return await method(self, *args, **kwargs)

        return stripped_async

    @functools.wraps(method)
    def stripped(self, *args: Any, **kwargs: Any) -> Any:
        pop_meta(kwargs)
        kwargs.pop(TRACE_KWARG, None)
        return method(self, *args, **kwargs)

    return stripped


def _gated_names(cls: type) -> list[str]:
    names = []
    for name, member in inspect.getmembers(cls):
        if name != "__call__" and name.startswith("_"):
            continue
        if name in _NEVER_GATED or not callable(member) or isinstance(member, type):
            continue
        if getattr(member, _UNGATED_ATTR, False):
            continue
        if name == "__call__" and member is object.__call__:
            continue
        names.append(name)
    return names


_REQUEST_CONTEXT: Any = None


def serve_request_id() -> str | None:
    """Serve's id of the request being handled here (the HTTP request's ``X-Request-ID``, propagated to
    the handle calls made while handling it), or None outside a request."""
    global _REQUEST_CONTEXT
    if _REQUEST_CONTEXT is None:
        from ray.serve.context import _get_serve_request_context

        _REQUEST_CONTEXT = _get_serve_request_context
    try:
        return _REQUEST_CONTEXT().request_id or None
    except Exception:  # outside a replica's request
        return None


def _admission_request(self: Any, kwargs: dict[str, Any]) -> tuple[Any, Any, str | None]:
    """``(Request, trace, drift workflow)`` of one gated call; removes the agentic keywords from ``kwargs``.
    The request is known by Serve's request id (``ReplicaAdmission.request_id``), as at the router."""
    admission = self._agentic_admission
    meta = pop_meta(kwargs)
    trace = pop_trace(kwargs) if TRACE_KWARG in kwargs else None
    now = time.time()
    routed_at = meta.get(ROUTED_AT)
    if routed_at is not None:
        admission.note_upstream_delay((now - routed_at) * 1000.0)  # the trip from the router to this gate
    classification = self._agentic_policy.classify(request_meta(meta), now)
    request = to_request(
        classification,
        admission.request_id(serve_request_id()),
        now,
        meta.get("deadline"),
        meta.get("model"),
        meta.get(WORKFLOW_DEADLINE),
    )
    return with_tokens(request, meta), trace, drift_workflow(meta.get("workflow"), meta.get("stage"))


def _wrap_stream(method: Callable) -> Callable:
    """A streaming (generator) method: admitted like any call; holds its slot until the stream ends
    (or the caller stops reading); its time to first token and per output token are measured
    (``_streams.measured_stream``). A sync generator's items are produced in a worker thread."""
    from agentic_ray.serve._streams import measured_stream

    is_async = inspect.isasyncgenfunction(method)
    done = object()

    async def threaded(items: Any) -> Any:
        while (item := await asyncio.to_thread(next, items, done)) is not done:
            yield item

    @functools.wraps(method)
    async def gated_stream(self, *args: Any, **kwargs: Any) -> Any:
        request, trace, workflow = _admission_request(self, kwargs)
        items = method(self, *args, **kwargs)
        async for item in measured_stream(self._agentic_admission, request, trace,
                                          items if is_async else threaded(items), workflow):  # fmt: skip
            yield item

    return gated_stream


def _is_http(arg: Any) -> bool:
    """True for the starlette ``Request`` Serve passes to ``__call__`` of an HTTP request."""
    from starlette.requests import Request as HttpRequest

    return isinstance(arg, HttpRequest)


async def _http_call(self: Any, http_request: Any, method: Callable, is_async: bool) -> Any:
    """A direct HTTP request (the deployment is its application's HTTP entry): ``http_direct``."""
    from agentic_ray.serve._http_direct import http_response

    async def call(payload: Any) -> Any:
        if is_async:
            return await method(self, payload)
        return await asyncio.to_thread(method, self, payload)

    def trace_parent(carrier: Any) -> Any:
        from agentic_ray.telemetry.tracing import extract, is_sampled

        return extract(carrier) if is_sampled(carrier) else None

    return await http_response(self, http_request, call, trace_parent)


def _wrap_method(name: str, method: Callable) -> Callable:
    if inspect.isgeneratorfunction(method) or inspect.isasyncgenfunction(method):
        return _wrap_stream(method)
    is_async = inspect.iscoroutinefunction(method)

    @functools.wraps(method)
    async def gated(self, *args: Any, **kwargs: Any) -> Any:
        if name == "__call__" and len(args) == 1 and not kwargs and _is_http(args[0]):
            return await _http_call(self, args[0], method, is_async)
        request, trace, workflow = _admission_request(self, kwargs)
        async with self._agentic_admission.admitted(request, trace, workflow=workflow):
            if is_async:
                return await method(self, *args, **kwargs)
            return await asyncio.to_thread(method, self, *args, **kwargs)

    return gated


def _node_attrs(slots: int, policy: Policy | None = None) -> dict[str, Any]:
    import ray

    ctx = ray.get_runtime_context()
    labels = {str(k): str(v) for k, v in (ctx.get_node_labels() or {}).items()}
    gpus = ctx.get_assigned_resources().get("GPU", 0)
    accelerator = labels.get("accelerator") or ("gpu" if gpus else "cpu")
    return {
        "zone": labels.get("zone") or labels.get("ray.io/availability-zone") or "default",
        "accelerator": accelerator,
        "labels": {k: v for k, v in labels.items() if not k.startswith("ray.io/")},
        "slots": slots,
        "cost": policy.replica_cost(accelerator) if policy is not None else (1.0 if accelerator == "cpu" else 2.0),
        "node_id": ctx.get_node_id(),
    }


def _check_options(slots: Any, bounds: dict[str, Any], telemetry: Any, serve_options: dict[str, Any]) -> None:
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"slots: must be an integer >= 1, got {slots!r}")
    for name, bound in bounds.items():
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {bound!r}")
    for key in ("request_router_config", "max_ongoing_requests"):
        if key in serve_options:
            raise ValueError(f"{key}: set by agentic_ray.deployment; use slots/default_queue_bound instead")
    if not isinstance(telemetry, bool):
        raise ValueError(f"telemetry: must be True or False, got {telemetry!r}")


def _hook_specs(telemetry: bool, decision_hook: str | None, router_hook: str | None) -> tuple[str, str]:
    """The gate's and the router's hook paths, checked early (the default hook starts a thread: not here)."""
    if telemetry:
        decision_hook = DEFAULT_HOOK if decision_hook is None else decision_hook
        router_hook = DEFAULT_HOOK if router_hook is None else router_hook
    else:
        decision_hook = router_hook = "none"
    for spec in (decision_hook, router_hook):
        if spec != DEFAULT_HOOK:
            load_hook(spec)
    return decision_hook, router_hook


def _replica_metadata(replica: Any, slots: int, policy: Policy | None = None) -> ReplicaMetadata:
    """What a replica publishes once: its node's facts (its cost from the policy's ``costs`` by
    accelerator kind), overridden by ``agentic_replica_attrs()``."""
    attrs = _node_attrs(slots, policy)
    own = getattr(replica, "agentic_replica_attrs", None)
    if callable(own):
        attrs.update(own() or {})
    return ReplicaMetadata.from_dict(attrs)  # ValueError names a bad field


def _install_admission(replica: Any, policy: Policy, slots: int, bounds: tuple[int, int], decision_hook: str,
                       telemetry: bool, limit_config: Any) -> None:  # fmt: skip
    """Give a replica its policy, published metadata and admission gate (``ReplicaAdmission``)."""
    from agentic_ray.scheduling.limits import DelayLimit
    from agentic_ray.serve._replica_gate import ReplicaAdmission

    replica._agentic_policy = policy
    metadata = replica._agentic_metadata = _replica_metadata(replica, slots, policy)
    hook: DecisionHook = load_hook(decision_hook)
    register_policy(hook, policy.version, policy.sha256)
    metrics = None
    if telemetry:
        from agentic_ray.telemetry.metrics import AgenticMetrics
        from agentic_ray.telemetry.ray_metrics import RayMetrics

        metrics = AgenticMetrics(RayMetrics(), "replica")
    gate = replica_gate(
        metadata.slots,
        policy.classes,
        tenant_shares=tenant_shares_of(policy.tenants),
        default_queue_bound=bounds[0],
        max_queue_bound=bounds[1],
    )
    limiter = DelayLimit(gate.slots, limit_config) if limit_config is not None else None
    admission = replica._agentic_admission = ReplicaAdmission(
        gate, hook=hook, policy_version=policy.version, metrics=metrics, limiter=limiter, policy_sha=policy.sha256
    )
    _join_control_plane(replica, admission, policy, metadata)


def _join_control_plane(replica: Any, admission: Any, policy: Policy, metadata: ReplicaMetadata) -> None:
    """Count this replica's traffic for the control plane and add it to the process's ``ServePlane``
    (which registers it when a control plane exists; ``serve/_plane.py``). Outside a Serve replica
    (no replica context) nothing happens."""
    try:
        from ray import serve

        ctx = serve.get_replica_context()
        replica_id, deployment = ctx.replica_id.unique_id, f"{ctx.app_name}/{ctx.deployment}"
    except Exception:
        return
    from agentic_ray.serve._plane import ReplicaMember, plane

    member = ReplicaMember(replica, replica_id, deployment, metadata, policy.to_yaml())
    admission.tally = member.tally
    admission.replica_id = replica_id
    plane().add(member)


def deployment(
    _cls: type | None = None,
    *,
    policy: Policy | str | Path | None = None,
    slots: int = 1,
    default_queue_bound: int = DEFAULT_QUEUE_BOUND,
    max_queue_bound: int = MAX_QUEUE_BOUND,
    routing_stats_period_s: float = 0.25,
    router_options: dict[str, Any] | None = None,
    decision_hook: str | None = None,
    router_hook: str | None = None,
    telemetry: bool = True,
    seed: int = 0,
    delay_target_ms: float | None = 8.0,
    max_pace_ms: float = 0.0,
    api_keys: str | Path | Mapping[str, str] | None = None,
    trust_tenant_header: bool = False,
    **serve_options: Any,
) -> Any:
    """Like ``@serve.deployment``, plus the agentic router and a tiered admission gate per replica.

    ``policy``: a ``Policy``, a YAML path, or ``None`` for the built-in policy. ``slots``: calls a replica
    runs at once. ``default_queue_bound`` / ``max_queue_bound``: the queue bound of a class whose policy
    sets none is the queue its budget can drain at the measured service time (``slots * budget_ms /
    service_ms``), at least the first and at most the second (the first until a service time is known).
    ``routing_stats_period_s``: how often replicas publish their queues to routers. ``router_options``:
    keyword config of the pure agentic router. ``decision_hook`` / ``router_hook``: import paths of the
    decision hooks of the gate / the router (see ``agentic_ray.serve._hooks``; None: ``DEFAULT_HOOK`` when
    ``telemetry`` is on; ``"none"``: no hook). ``telemetry``: False turns off hooks, metrics and spans
    (module docstring). ``delay_target_ms``: while calls wait longer than this on the process in front of
    the replica (Serve's HTTP proxy), on their trip from a handle's router to the gate, or on the
    replica's own event loop, it runs fewer than ``slots`` calls at once and the rest wait in its gate,
    most critical first (``scheduling.limits.DelayLimit``), and routers refuse the least urgent class
    for it (``Overloaded(reason="host_saturated")``; the next class at twice the delay, and so on; the
    most urgent class never: ``scheduling.pressure``); ``None`` always runs ``slots``. ``max_pace_ms``:
    at one call at once and still over the target, start work that may be shed at most once per up to
    this long (``DelayLimitConfig.max_pace_ms``; 0, the default: no pacing). It serves closed-loop
    HTTP clients on a saturated host (the chaos suite's noisy neighbour over HTTP: critical attainment
    0-2 % without, 41-76 % with 200 ms) and costs open-loop overload goodput (held work expires in the
    gate: the HTTP ladder at 4x 48 -> 31 requests/s), so it is off unless asked for.
    ``api_keys`` / ``trust_tenant_header``: how HTTP callers are identified when the deployment
    is its app's HTTP entry (``serve._http_auth``: a keys file path, ``"env:NAME"`` or
    a mapping of key hashes to tenants; without either, HTTP requests are anonymous and ``x-tenant`` is
    refused with 403). Read here, in the driver; only hashes travel. Any other keyword
    goes to ``serve.deployment`` (``max_ongoing_requests`` and ``request_router_config`` are set here).
    """
    bounds = {"default_queue_bound": default_queue_bound, "max_queue_bound": max_queue_bound}
    _check_options(slots, bounds, telemetry, serve_options)
    limit_config = None
    if delay_target_ms is not None:
        from agentic_ray.scheduling.limits import DelayLimitConfig

        limit_config = DelayLimitConfig(target_ms=delay_target_ms, max_pace_ms=max_pace_ms)  # ValueError names it
    compiled = _resolve_policy(policy)
    decision_hook, router_hook = _hook_specs(telemetry, decision_hook, router_hook)
    auth = HttpAuth.of(api_keys, trust_tenant_header)  # ValueError names the field, before deploying

    def wrap(cls: type) -> Any:
        from ray import serve
        from ray.serve.config import RequestRouterConfig

        from agentic_ray.serve._router import AgenticRequestRouter

        if not isinstance(cls, type):
            raise TypeError("agentic_ray.deployment decorates a class")
        user_init = cls.__init__
        gated_names = _gated_names(cls)
        # the proxy door may call __call__ directly for an HTTP request (``_door_call``): gated, not a stream
        call = inspect.getattr_static(cls, "__call__", None)
        json_call = "__call__" in gated_names and not (
            inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call))  # fmt: skip

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            user_init(self, *args, **kwargs)
            _install_admission(self, compiled, slots, (default_queue_bound, max_queue_bound), decision_hook,
                               telemetry, limit_config)  # fmt: skip
            self._agentic_auth = auth

        def record_replica_metadata(self) -> dict[str, Any]:
            return {**self._agentic_metadata.to_dict(), JSON_CALL_KEY: json_call}

        def record_routing_stats(self) -> dict[str, Any]:
            return self._agentic_admission.routing_stats()

        namespace: dict[str, Any] = {
            "__init__": __init__,
            "record_replica_metadata": record_replica_metadata,
            "record_routing_stats": record_routing_stats,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
        }
        for name in gated_names:
            namespace[name] = _wrap_method(name, getattr(cls, name))
        for name in _ungated_names(cls):
            namespace[name] = _strip_meta(getattr(cls, name))
        gated_cls = type(cls.__name__, (cls,), namespace)

        bounds = sum(
            (c.queue_bound if c.queue_bound is not None else max(default_queue_bound, max_queue_bound))
            for c in compiled.classes.values()
        )
        router_config = RequestRouterConfig(
            request_router_class=AgenticRequestRouter,
            request_router_kwargs={
                "policy_yaml": compiled.to_yaml(),
                "seed": seed,
                "router": dict(router_options or {}),
                "decision_hook": router_hook,
                "telemetry": telemetry,
                "ungated_methods": sorted(set(_ungated_names(cls)) | _NEVER_GATED),
                "http_auth": auth.to_config(),
                "pressure_ms": delay_target_ms,
            },
            request_routing_stats_period_s=routing_stats_period_s,
            request_routing_stats_timeout_s=max(1.0, routing_stats_period_s * 4),
            # A request the router holds (Wait) is re-decided at least every 50 ms: Serve's default
            # backoff grows to 0.5 s, longer than a critical budget.
            initial_backoff_s=ROUTER_BACKOFF_S[0],
            max_backoff_s=ROUTER_BACKOFF_S[1],
        )
        return serve.deployment(
            gated_cls, max_ongoing_requests=slots + bounds, request_router_config=router_config, **serve_options
        )

    return wrap(_cls) if _cls is not None else wrap
