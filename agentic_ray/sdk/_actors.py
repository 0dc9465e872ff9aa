"""Governed actors: ``@agentic_ray.actor``, ``@agentic_ray.method`` and the handles they give.

``@agentic_ray.actor(qos=..., budget_ms=..., tenant=..., data_class=..., accelerator=..., workflow=...,
model=..., max_queued=N, telemetry=True, **ray_options)`` on a class returns an ``AgenticActorClass``;
``Cls.remote(*args)`` / ``Cls.options(name=..., lifetime="detached", ...).remote(*args)``:

1. classifies the actor with the active policy, as a task is classified (``PolicyError`` for an unknown
   class, tenant or workflow; ``EntitlementError`` when its tenant may not use the class), and each
   method's defaults (``@agentic_ray.method(qos=..., budget_ms=...)``, falling back key by key to the
   actor's);
2. places it from the cached cluster view with the task path's node choice (``ClusterViewCache.place``:
   ``NoEligibleNode`` with the rule ids when no node qualifies; never refused for the nodes' task caps):
   ``NodeAffinitySchedulingStrategy`` to the chosen node, soft only together with a ``label_selector``
   that admits exactly the allowed nodes (a restart after a node loss stays on allowed nodes), else
   hard. Residency rules hold in every case, the fallback without a view included;
3. creates the Ray actor of ``actors._actor_class.governed_class(cls)`` with Ray's ``max_concurrency``
   raised to ``slots + max_queued + OVERFLOW_THREADS`` (``slots``: the ``max_concurrency`` given, default
   1 for a sync actor and Ray's 1000 for an async one), sending the ``ActorSpec`` (class table of the
   policy, slots, bound, per-method defaults, rule ids) with the creation; inside, the actor's queue
   (``actors._actor_admission``) lets ``slots`` calls run at once, by priority then deadline, and
   refuses with ``Overloaded`` beyond ``max_queued``.

It returns an ``AgenticActorHandle``: ``handle.method.remote(...)`` and
``handle.method.options(qos=..., budget_ms=...).remote(...)`` classify each call in the calling
process (entitlement included) and send its ``TaskContext`` (deadline ``min(now + budget, enclosing
deadline)``, class, policy version) in ``_agentic_ctx``, as the task path does; inside the method
``agentic_ray.current_deadline()`` is the call's deadline and nested tasks inherit it. A call whose
class would need a placement the actor was not given (a rule that matches that class only) is refused
with ``NoEligibleNode``; tenant, data class, workflow, model and accelerator are the actor's and cannot
change per call. ``handle.ray_handle`` is the Ray ``ActorHandle`` (``ray.kill(h.ray_handle)``); calls
through a plain Ray handle (``ray.get_actor``) are governed too, with each method's default class
and budget. ``Cls.get_actor(name, namespace=None)`` wraps a named actor's handle again.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agentic_ray._budget import current_deadline, deadline_after
from agentic_ray.actors._actor_admission import OVERFLOW_THREADS
from agentic_ray.actors._actor_class import (
    METHOD_ATTR,
    ActorSpec,
    gated_method_names,
    governed_class,
    is_async_class,
    method_defaults,
)
from agentic_ray.actors._worker import CONTEXT_KWARG
from agentic_ray.errors import BudgetExhausted, NoEligibleNode
from agentic_ray.policies import RequestMeta
from agentic_ray.scheduling.actor_queue import DEFAULT_MAX_QUEUED, check_max_queued
from agentic_ray.sdk import _state, _telemetry
from agentic_ray.sdk._tasks import _required_resources

__all__ = ["AgenticActorClass", "AgenticActorHandle", "AgenticActorMethod", "actor", "method"]

_ACTOR_KEYS = ("qos", "budget_ms", "tenant", "data_class", "workflow", "model", "accelerator")
_CALL_KEYS = ("qos", "budget_ms")
ASYNC_DEFAULT_SLOTS = 1000  # Ray's default max_concurrency of an async actor
_UNCHECKED = object()


def _check_qos_type(qos: object) -> None:
    if qos is not None and not isinstance(qos, str):
        raise TypeError(f"qos: must be a class name (str), got {qos!r}")


def _check_slots(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_concurrency: must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class _ActorInfo:
    """What a handle knows of its actor: the methods it may call with their default request metadata,
    and the placement requirement the actor was created under (calls must fit inside it)."""

    name: str
    metas: dict[str, RequestMeta]
    requirement: Any
    rule_ids: tuple[str, ...]


class AgenticActorMethod:
    """``handle.method``: ``.remote(*args, **kwargs)`` and ``.options(qos=..., budget_ms=..., **ray)``."""

    __slots__ = ("_checked", "_info", "_meta", "_name", "_ray_method", "_ray_options", "_submit")

    def __init__(self, ray_method: Any, name: str, info: _ActorInfo, meta: RequestMeta,
                 ray_options: dict[str, Any] | None = None) -> None:  # fmt: skip
        self._ray_method = ray_method
        self._name = name
        self._info = info
        self._meta = meta
        self._ray_options = dict(ray_options or {})
        self._submit = ray_method.options(**self._ray_options).remote if self._ray_options else ray_method.remote
        self._checked: Any = _UNCHECKED  # the last placement requirement found to fit the actor's

    def options(self, **overrides: Any) -> AgenticActorMethod:
        """A copy with ``qos``/``budget_ms`` (or Ray method options: ``num_returns``, ``name``...)
        overridden. Checked now: ``ValueError`` for a bad budget, ``TypeError`` for an option fixed by the
        actor (tenant, data class, workflow, model, accelerator), ``PolicyError``/``EntitlementError``
        for a class the policy lacks or the actor's tenant may not use."""
        meta = self._meta
        ray_options = dict(self._ray_options)
        for key, value in overrides.items():
            if key in _CALL_KEYS:
                if key == "qos":
                    _check_qos_type(value)
                meta = replace(meta, **{key: value})
            elif key in _ACTOR_KEYS:
                raise TypeError(f"{key}: fixed by the actor {self._info.name} (set it on @agentic_ray.actor)")
            else:
                ray_options[key] = value
        method = AgenticActorMethod(self._ray_method, self._name, self._info, meta, ray_options)
        rt = _state.current()
        if rt is not None:
            method._classify(rt, time.time())
        return method

    def _classify(self, rt: Any, now: float) -> Any:
        classification = rt.policy.classify(self._meta, now)
        requirement = classification.requirement
        if requirement is not self._checked:
            actor_requirement = self._info.requirement
            if requirement is not None and (actor_requirement is None or not actor_requirement.implies(requirement)):
                raise NoEligibleNode(
                    f"{self._info.name}.{self._name}: calls of class {classification.qos.name!r} need a placement "
                    "the actor was not created under; create the actor with that class",
                    rule_ids=tuple(classification.rule_ids),
                )
            self._checked = requirement
        return classification

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Classify the call, send it with its context; returns the ``ObjectRef`` (as Ray's)."""
        rt = _state._RUNTIME or _state.runtime()
        now = time.time()
        classification = self._classify(rt, now)
        deadline_at = deadline_after(now, classification.budget_ms, current_deadline())
        if now >= deadline_at:
            raise BudgetExhausted(
                f"{self._info.name}.{self._name} not called: the enclosing budget ran out "
                f"{(now - deadline_at) * 1000.0:.1f} ms ago",
                reason="deadline_passed",
                rule_ids=classification.rule_ids,
            )
        traceparent = None
        tr = _telemetry.tracing_on()
        if tr is not None:
            traceparent = _traceparent(tr, f"{self._info.name}.{self._name}", classification.qos.name)
        kwargs[CONTEXT_KWARG] = [deadline_at, now, classification.qos.name, classification.workflow, None,
                                 classification.policy_version, traceparent, None, None, None]  # fmt: skip
        return self._submit(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self._info.name}.{self._name} is an actor method; call .remote(...)")


def _traceparent(tr: Any, name: str, qos: str) -> str | None:
    """The W3C traceparent of a sampled ``agentic.submit`` span for this call (None when not sampled)."""
    with tr.root_span("agentic.submit", {"agentic.task": name, "agentic.qos": qos}) as span:
        if not span.is_recording():
            return None
        carrier = tr.with_trace({}).get(tr.TRACE_KWARG)
        return carrier.get("traceparent") if carrier else None


class AgenticActorHandle:
    """A governed actor's handle: ``handle.method.remote(...)``, ``handle.method.options(...)``;
    ``ray_handle`` is Ray's ``ActorHandle``. Pickles (pass it to tasks and other actors)."""

    def __init__(self, ray_handle: Any, info: _ActorInfo) -> None:
        self._ray_handle = ray_handle
        self._info = info

    @property
    def ray_handle(self) -> Any:
        """The Ray ``ActorHandle`` (for ``ray.kill`` and Ray APIs that want one; calls through it get
        each method's default class and budget)."""
        return self._ray_handle

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_ray_handle", "_info"):
            raise AttributeError(name)
        meta = self._info.metas.get(name)
        if meta is None:
            return getattr(self._ray_handle, name)  # agentic_actor_stats, Ray's own attributes
        method = AgenticActorMethod(getattr(self._ray_handle, name), name, self._info, meta)
        self.__dict__[name] = method  # later look-ups skip __getattr__
        return method

    def __reduce__(self) -> Any:
        return (AgenticActorHandle, (self._ray_handle, self._info))

    def __repr__(self) -> str:
        return f"AgenticActorHandle({self._info.name}, {self._ray_handle!r})"


class AgenticActorClass:
    """What ``@agentic_ray.actor`` returns: ``.remote(*args, **kwargs)``, ``.options(**overrides)``,
    ``.get_actor(name, namespace=None)``."""

    def __init__(self, cls: type, agentic: dict[str, Any], ray_options: dict[str, Any], max_queued: int,
                 telemetry: bool, governed: type | None = None, ray_class: Any = None) -> None:  # fmt: skip
        if "scheduling_strategy" in ray_options or "label_selector" in ray_options:
            raise ValueError(
                "scheduling_strategy/label_selector: placement is decided by the policy; "
                "express placement as policy rules"
            )
        _check_qos_type(agentic.get("qos"))
        self._cls = cls
        self._agentic = {k: v for k, v in agentic.items() if v is not None}
        self._meta = RequestMeta(**{k: v for k, v in self._agentic.items() if k != "accelerator"})
        self._accelerator: str | None = self._agentic.get("accelerator")
        self._ray_options = dict(ray_options)
        self._max_queued = check_max_queued(max_queued)
        self._telemetry = bool(telemetry)
        self._is_async = is_async_class(cls)
        given = self._ray_options.get("max_concurrency")
        self._slots = _check_slots(given) if given is not None else (ASYNC_DEFAULT_SLOTS if self._is_async else 1)
        self._resources = _required_resources(self._ray_options)
        self._governed = governed if governed is not None else governed_class(cls)
        self._ray_class = ray_class
        self._metas = self._method_metas()
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__
        rt = _state.current()
        if rt is not None:  # a policy is at hand: refuse an unknown class or tenant now, not at .remote()
            self._classify_all(rt.policy, time.time())

    def _method_metas(self) -> dict[str, RequestMeta]:
        opts = method_defaults(self._cls)
        metas = {}
        for name in gated_method_names(self._cls):
            own = {k: v for k, v in opts.get(name, {}).items() if v is not None}
            metas[name] = replace(self._meta, **own) if own else self._meta
        return metas

    def options(self, **overrides: Any) -> AgenticActorClass:
        """A copy with agentic fields (``qos``, ``tenant``, ..., ``max_queued``, ``telemetry``) and/or Ray
        actor options (``name``, ``namespace``, ``lifetime``, ``get_if_exists``, ``max_restarts``,
        ``num_cpus``, ``max_concurrency``...) overridden; checked as at decoration."""
        agentic, ray_options = dict(self._agentic), dict(self._ray_options)
        max_queued, telemetry = self._max_queued, self._telemetry
        for key, value in overrides.items():
            if key in _ACTOR_KEYS:
                agentic[key] = value
            elif key == "max_queued":
                max_queued = value
            elif key == "telemetry":
                telemetry = value
            else:
                ray_options[key] = value
        same_groups = ray_options.get("concurrency_groups") == self._ray_options.get("concurrency_groups")
        return AgenticActorClass(self._cls, agentic, ray_options, max_queued, telemetry, self._governed,
                                 self._ray_class if same_groups else None)  # fmt: skip

    def _classify_all(self, policy: Any, now: float) -> tuple[Any, dict[str, tuple[str, float]]]:
        """The actor's classification and each method's default ``(class, budget_ms)`` (key ``""``: the
        actor's own); raises what classification raises, and ``NoEligibleNode`` for a method whose
        default class needs a placement the actor's does not give."""
        classification = policy.classify(self._meta, now)
        defaults = {"": (classification.qos.name, classification.budget_ms)}
        requirement = classification.requirement
        for name, meta in self._metas.items():
            c = classification if meta is self._meta else policy.classify(meta, now)
            if c.requirement is not None and (requirement is None or not requirement.implies(c.requirement)):
                raise NoEligibleNode(
                    f"{self.__name__}.{name}: its default class {c.qos.name!r} needs a placement the actor's "
                    f"class {classification.qos.name!r} does not give",
                    rule_ids=tuple(c.rule_ids),
                )
            defaults[name] = (c.qos.name, c.budget_ms)
        return classification, defaults

    def _base(self) -> Any:
        if self._ray_class is None:
            import ray

            groups = self._ray_options.get("concurrency_groups")  # Ray takes them only here, not in .options()
            self._ray_class = (
                ray.remote(concurrency_groups=groups)(self._governed) if groups else ray.remote(self._governed)
            )
        return self._ray_class

    def _info(self, classification: Any) -> _ActorInfo:
        return _ActorInfo(self.__name__, self._metas, classification.requirement, tuple(classification.rule_ids))

    def remote(self, *args: Any, **kwargs: Any) -> AgenticActorHandle:
        """Classify, place and create the actor; returns its ``AgenticActorHandle``."""
        rt = _state.runtime()
        policy = rt.policy
        classification, defaults = self._classify_all(policy, time.time())
        placement = rt.place(classification, self._accelerator, self._resources, task=False)
        options = dict(self._ray_options)
        options.pop("concurrency_groups", None)
        options["max_concurrency"] = self._slots + self._max_queued + OVERFLOW_THREADS
        if placement.node_id is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(placement.node_id, soft=placement.soft)
        if placement.label_selector:
            options["label_selector"] = dict(placement.label_selector)
        spec = ActorSpec(
            name=self.__name__,
            slots=self._slots,
            max_queued=self._max_queued,
            classes=dict(policy.classes),
            defaults=defaults,
            rule_ids=tuple(classification.rule_ids),
            policy_version=classification.policy_version,
            policy_sha256=classification.policy_sha256,
            telemetry=self._telemetry,
        )
        handle = self._base().options(**options).remote(*args, _agentic_actor=spec, **kwargs)
        if _telemetry.DECISION_LOG is not None:
            _telemetry.log_placement(self.__name__, _telemetry.next_request_id(), classification, placement)
        return AgenticActorHandle(handle, self._info(classification))

    def get_actor(self, name: str, namespace: str | None = None) -> AgenticActorHandle:
        """The named actor ``name`` (created from this class) as a governed handle. The placement
        requirement calls are checked against is this class's (with its current options)."""
        import ray

        rt = _state.runtime()
        classification, _ = self._classify_all(rt.policy, time.time())
        return AgenticActorHandle(ray.get_actor(name, namespace=namespace), self._info(classification))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.__name__} is an agentic_ray.actor; create it with {self.__name__}.remote(...)")


def actor(
    cls: type | None = None,
    *,
    qos: str | None = None,
    budget_ms: float | None = None,
    tenant: str | None = None,
    data_class: str | None = None,
    accelerator: str | None = None,
    workflow: str | None = None,
    model: str | None = None,
    max_queued: int = DEFAULT_MAX_QUEUED,
    telemetry: bool = True,
    **ray_options: Any,
) -> Any:
    """``@agentic_ray.actor`` / ``@agentic_ray.actor(qos="standard", tenant="acme-eu", max_queued=32, ...)``:
    a drop-in for ``@ray.remote`` on classes whose placement the policy decides and whose calls wait in a
    bounded priority-then-deadline queue (module docstring). ``qos``, ``budget_ms``, ``tenant``,
    ``data_class``, ``workflow`` and ``model`` classify the actor and are its methods' defaults;
    ``accelerator`` restricts its nodes to that kind (node label ``accelerator``); ``max_queued`` bounds
    the calls waiting in it (beyond that the least critical is refused with ``Overloaded``);
    ``telemetry=False`` turns its metrics and decision records off. Other keywords are Ray actor options
    (``max_concurrency`` is the number of calls run at once). Checked here: ``ValueError`` for
    ``budget_ms <= 0``, ``max_queued < 1``, ``max_concurrency < 1`` or a placement option; ``TypeError``
    for a non-class or a parameter named ``_agentic_ctx``/``_agentic_actor``; ``PolicyError`` for an
    unknown class or tenant once a policy is loaded (else at ``.remote()``)."""
    agentic = dict(qos=qos, budget_ms=budget_ms, tenant=tenant, data_class=data_class, accelerator=accelerator,
                   workflow=workflow, model=model)  # fmt: skip

    def wrap(c: type) -> AgenticActorClass:
        if not inspect.isclass(c):
            raise TypeError("agentic_ray.actor decorates classes (use agentic_ray.task for functions)")
        return AgenticActorClass(c, agentic, ray_options, max_queued, telemetry)

    return wrap(cls) if cls is not None else wrap


def method(
    fn: Callable[..., Any] | None = None,
    *,
    qos: str | None = None,
    budget_ms: float | None = None,
    **ray_method_options: Any,
) -> Any:
    """``@agentic_ray.method(qos="critical", budget_ms=50)`` on a method of an ``@agentic_ray.actor``
    class: the defaults of its calls (each falls back to the actor's). Other keywords go to
    ``@ray.method`` (``num_returns``, ``concurrency_group``, ``max_task_retries``...).
    ``ValueError`` for ``budget_ms <= 0``, ``TypeError`` for a ``qos`` that is not a name."""
    _check_qos_type(qos)
    RequestMeta(budget_ms=budget_ms)  # ValueError naming budget_ms
    options = {k: v for k, v in (("qos", qos), ("budget_ms", budget_ms)) if v is not None}

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f) or inspect.isclass(f):
            raise TypeError("agentic_ray.method decorates methods")
        if ray_method_options:
            import ray

            f = ray.method(**ray_method_options)(f)
        setattr(f, METHOD_ATTR, options)
        return f

    return wrap(fn) if fn is not None else wrap
