"""Task submission: ``@agentic_ray.task``, the ``AgenticRemoteFunction`` it returns, ``budget``.

``.remote()`` decides (``decide``: the policy's classification, the deadline capped by any enclosing
one, a node from the cached view) and submits through a per-placement function built once
(``_submit_function``) that calls Ray's ``RemoteFunction._remote`` with the options merged and
validated beforehand. The decision travels as a ``TaskContext`` in the keyword-only argument
``_agentic_ctx`` (``actors._worker``; the worker wrapper adds it to the function's signature so Ray's
argument check accepts it), as a list of plain values that Ray serializes with msgpack; the task keeps
the user's name (``options(name=...)`` or the function name) in Ray's dashboard, state API and logs.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from agentic_ray import _identity
from agentic_ray._budget import (
    Budget,
    budget_scope,
    current_deadline,
    current_workflow,
    deadline_after,
    workflow_scope,
)
from agentic_ray.actors._worker import (
    CONTEXT_KWARG,
    account_placed,
    make_worker_function,
    worker_signature,
)
from agentic_ray.control._placement import Placement
from agentic_ray.errors import BudgetExhausted, EntitlementError
from agentic_ray.policies import RequestMeta
from agentic_ray.sdk import _results, _state, _telemetry

__all__ = ["AgenticRemoteFunction", "budget", "task"]

_AGENTIC_KEYS = ("qos", "budget_ms", "workflow", "stage", "accelerator", "tenant", "data_class", "model")
_PACKAGE = sys.modules[__package__]  # agentic_ray.sdk: its ACCOUNT_PLACEMENTS switch is read per call


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
        self._task_name = str(self._ray_options.get("name") or self.__name__)
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

    def _submit_function(self, placement: Placement) -> Callable[[tuple, dict], Any]:
        """``submit(args, kwargs)`` for one placement, built once per placement and cached.

        Ray's ``.options(**o).remote()`` merges and validates ``o`` on every call; here the merge and the
        validation run once per placement (with Ray's own ``update_options``/``validate_task_options``)
        and each call goes straight to ``RemoteFunction._remote``. The task name is among the merged
        options when the user gave one; otherwise Ray names the task after the function, as for
        ``@ray.remote``. If that private entry point is missing, it falls back to
        ``.options(...).remote()``."""
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
            runtime_env_info = base._serialized_base_runtime_env_info
            direct = base._remote

            def submit(args: tuple, kwargs: dict) -> Any:
                return direct(args=args, kwargs=kwargs, serialized_runtime_env_info=runtime_env_info, **merged)

        except (AttributeError, ImportError):

            def submit(args: tuple, kwargs: dict) -> Any:
                return base.options(**options).remote(*args, **kwargs)

        if len(self._by_node) > 256:
            self._by_node.clear()
        self._by_node[key] = submit
        return submit

    def decide(self, now: float | None = None) -> tuple[Any, float, Placement]:
        """The policy decision and placement ``.remote()`` would use: ``(classification, deadline_at,
        placement)``. Raises what ``.remote()`` raises before submitting (``PolicyError``,
        ``BudgetExhausted``, ``NoEligibleNode``)."""
        rt = _state.runtime()
        now = time.time() if now is None else now
        meta = self._meta
        if _identity._bound is not None:  # a bound process runs as its tenant (module _identity)
            tenant = _identity.resolve_tenant(rt.policy, meta.tenant)
            if tenant != meta.tenant:
                meta = replace(meta, tenant=tenant)
        classification = rt.policy.classify(meta, now)
        deadline_at = deadline_after(now, classification.budget_ms, current_deadline())
        workflow_deadline = _workflow_deadline(classification, now)
        if workflow_deadline is not None and classification.stage_share is not None:
            deadline_at = workflow_deadline  # the stage's own deadline is fixed when it starts
        if now >= deadline_at:
            raise BudgetExhausted(
                f"task {self.__name__} not submitted: the enclosing budget ran out "
                f"{(now - deadline_at) * 1000.0:.1f} ms ago",
                reason="deadline_passed",
                rule_ids=classification.rule_ids,
            )
        placement = rt.place(classification, self._accelerator, self._resources)
        return classification, deadline_at, placement

    def _context(self, classification: Any, deadline_at: float, now: float) -> tuple[float | None, float | None]:
        """``(workflow_deadline, stage_share)`` of the context of a call decided at ``now``."""
        if classification.workflow is None:
            return None, None
        wd = _workflow_deadline(classification, now)
        return (min(wd, deadline_at) if classification.stage_share is None else wd), classification.stage_share

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Classify, place and submit; returns the ``ObjectRef`` (as ``ray.remote``'s ``.remote()``)."""
        tr = _telemetry.tracing_on()
        if tr is None:
            return self._submit(args, kwargs, None)
        with tr.root_span("agentic.submit", {"agentic.task": self._task_name}) as sp:
            if not sp.is_recording():
                return self._submit(args, kwargs, None)
            return self._submit(args, kwargs, sp, tr)

    def _submit(self, args: tuple, kwargs: dict, sp: Any, tr: Any = None) -> Any:
        """Decide and submit ``kwargs`` (``.remote()``'s own dict) plus the context. With a recording
        ``agentic.submit`` span ``sp`` (tracing module ``tr``), the context carries its traceparent so
        the worker's ``agentic.execute`` span becomes its child."""
        now = time.time()
        try:
            classification, deadline_at, placement = self.decide(now)
        except EntitlementError as exc:
            _telemetry.log_refusal(self._task_name, exc, _state.runtime().policy)
            raise
        qos = classification.qos.name
        traceparent = None
        if sp is not None:
            sp.set_attribute("agentic.qos", qos)
            sp.set_attribute("agentic.node_id", placement.node_id or "")
            carrier = tr.with_trace({}).get(tr.TRACE_KWARG)  # only a sampled span's context travels
            traceparent = carrier.get("traceparent") if carrier else None
        request_id = None
        if _telemetry.DECISION_LOG is not None:
            request_id = _telemetry.next_request_id()
            _telemetry.log_placement(self._task_name, request_id, classification, placement)
        workflow_deadline, stage_share = self._context(classification, deadline_at, now)
        kwargs[CONTEXT_KWARG] = [deadline_at, now, qos, classification.workflow, classification.stage,
                                 classification.policy_version, traceparent, request_id, workflow_deadline,
                                 stage_share]  # TaskContext.to_wire(), without building the tuple  # fmt: skip
        ref = self._submit_function(placement)(args, kwargs)
        if placement.node_id is not None and _PACKAGE.ACCOUNT_PLACEMENTS:
            account_placed(placement.node_id, qos, deadline_at)
        rt = _state.current()
        if rt is not None:
            rt.track(placement.node_id, ref)
        _results.remember(ref, deadline_at, self._task_name)  # for agentic_ray.get (sdk._results)
        return ref

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.__name__} is an agentic_ray.task; call {self.__name__}.remote(...)")


def _workflow_deadline(classification: Any, now: float) -> float | None:
    """The deadline of the workflow run a call belongs to: the enclosing run's (``workflow_scope``, set
    on the worker of a workflow task and by ``agentic_ray.workflow``) when it is of the same workflow,
    else a run that starts now (for a stage, with the earlier stages taken to have used their nominal
    budgets), never after the enclosing deadline. ``None`` outside a workflow."""
    name = classification.workflow
    if name is None:
        return None
    scope = current_workflow()
    if scope is not None and scope.name == name:
        return scope.deadline
    share = classification.stage_share
    left_ms = classification.budget_ms / share if share else classification.budget_ms
    return deadline_after(now, left_ms, current_deadline())


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
    ``@ray.remote`` on functions. ``budget_ms <= 0`` raises ``ValueError`` here, a function with a
    parameter named ``_agentic_ctx`` ``TypeError`` (that argument carries the task context); an unknown
    class, tenant or workflow raises ``PolicyError`` at ``.remote()`` before anything is submitted.
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
        worker_signature(f)  # refuses a parameter named like the context argument, here and not at .remote()
        return AgenticRemoteFunction(f, agentic, ray_options)

    return wrap(fn) if fn is not None else wrap


@contextlib.contextmanager
def workflow(name: str) -> Iterator[Any]:
    """``with agentic_ray.workflow("fraud"):`` -- one run of the policy's workflow ``name``: its deadline
    is fixed now (its budget, never past an enclosing deadline), and the stages submitted in the block
    take their deadlines from what the run has left when each starts, so slack left by fast stages
    passes to later ones (``_budget.StagePlan``). ``PolicyError`` for a workflow the policy lacks."""
    from agentic_ray.errors import PolicyError

    policy = _state.runtime().policy
    spec = policy.workflows.get(name)
    if spec is None:
        raise PolicyError(f"unknown workflow {name!r} (policy {policy.name} {policy.version})")
    with workflow_scope(name, deadline_after(time.time(), spec.budget_ms, current_deadline())) as run:
        yield run


@contextlib.contextmanager
def budget(ms: float) -> Iterator[Budget]:
    """``with agentic_ray.budget(150):`` -- tasks submitted in the block get at most the time left
    (never more than an enclosing budget). ``ms <= 0`` raises ``ValueError``."""
    with budget_scope(ms, time.time()) as b:
        yield b
