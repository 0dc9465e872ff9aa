"""The class Ray runs for ``@agentic_ray.actor``: the user's class with its methods behind the actor's queue.

``governed_class(cls)`` returns a subclass of ``cls`` (same name, so Ray's dashboard and logs show the
user's class) in which

- ``__init__`` takes one more keyword-only argument, ``ACTOR_KWARG`` (``_agentic_actor``): the
  ``ActorSpec`` the creator decided (slots, ``max_queued``, the policy's class table, per-method default
  class and budget, placement rule ids, policy version). It installs this process's
  ``ActorAdmission`` (``ThreadedAdmission`` for a sync actor, ``AsyncAdmission`` for an async one: a
  class with any ``async def`` method, Ray's own rule) before running the user's ``__init__``.
  A Ray actor owns its worker process, so the admission is a per-process singleton.
- every public or private method (not dunder methods, static or class methods) is replaced by a
  wrapper with the keyword-only ``CONTEXT_KWARG`` (``_agentic_ctx``, the ``TaskContext`` on the wire,
  as for tasks: ``actors._worker``) added to its ``__signature__`` (Ray checks call arguments against
  it) and Ray's per-method options (``@ray.method``'s ``__ray_*__`` attributes) copied. The wrapper
  offers the call to the admission and runs the method when it is started. Generator methods are
  admitted once and hold their slot until the stream ends. In an async actor every wrapper is a
  coroutine function (Ray runs an async actor's sync methods on its event loop anyway); a sync
  generator method of an async actor, and every method of a named ``concurrency_group`` (Ray gives those
  their own threads or loops: health and control methods), run ungated, with the context applied.
- calls a method makes on its own actor (``self.helper()``) run directly: a gated call must not wait
  for the slot its caller holds (``INSIDE``).
- ``agentic_actor_stats()`` (ungated; unless the class defines one) returns the queue's counts.

No ``functools.wraps``: Ray unwraps ``__wrapped__`` to read signatures, which would hide the context
argument (and make cloudpickle pickle the user's method by reference).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentic_ray.actors._actor_admission import INSIDE, ActorAdmission, AsyncAdmission, ThreadedAdmission
from agentic_ray.actors._worker import CONTEXT_KWARG, TaskContext
from agentic_ray.policies.types import QosClass

__all__ = [
    "ACTOR_KWARG",
    "METHOD_ATTR",
    "STATS_METHOD",
    "ActorSpec",
    "admission",
    "gated_method_names",
    "governed_class",
    "is_async_class",
    "method_defaults",
]

ACTOR_KWARG = "_agentic_actor"
"""The keyword-only argument of the governed ``__init__`` that carries the ``ActorSpec``."""
METHOD_ATTR = "__agentic_method__"
"""Set by ``@agentic_ray.method`` on a method: its default agentic options (``qos``, ``budget_ms``)."""
STATS_METHOD = "agentic_actor_stats"


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """What the creator decided for one actor, sent with its creation (``ACTOR_KWARG``).

    ``defaults`` maps a method name to ``(class, budget_ms)`` for calls that arrive without a context
    (a plain Ray handle: ``ray.get_actor``); key ``""`` is the actor's own default. ``rule_ids`` are the
    rules of the actor's placement, carried into every decision record."""

    name: str
    slots: int
    max_queued: int
    classes: Mapping[str, QosClass]
    defaults: Mapping[str, tuple[str, float]]
    rule_ids: tuple[str, ...] = ()
    policy_version: str = ""
    policy_sha256: str = ""
    telemetry: bool = True


_ADMISSION: ActorAdmission | None = None


def admission() -> ActorAdmission | None:
    """This process's actor admission (``None`` outside a governed actor)."""
    return _ADMISSION


def _current() -> ActorAdmission | None:
    """The admission a call goes through: ``None`` outside a governed actor and inside a gated call.

    Wrappers call this module-level function rather than reading ``_ADMISSION`` or ``INSIDE`` themselves:
    Ray pickles the wrappers by value, with a copy of the module globals they name, and a function
    defined at module level travels by reference (the copy of a global would never see ``_install``)."""
    adm = _ADMISSION
    if adm is None or INSIDE.get():
        return None
    return adm


def _install(spec: ActorSpec, is_async: bool) -> None:
    global _ADMISSION
    _ADMISSION = AsyncAdmission(spec) if is_async else ThreadedAdmission(spec)


def is_async_class(cls: type) -> bool:
    """Ray's rule: an actor is async when any of its methods is a coroutine or async generator function."""
    return any(
        inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
        for _, m in inspect.getmembers(cls, inspect.isfunction)
    )


def gated_method_names(cls: type) -> list[str]:
    """The methods a handle may call (and the queue governs): every function attribute of ``cls`` that
    is not a dunder method, a static method or a class method."""
    names = []
    for name, _ in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("__") and name.endswith("__"):
            continue
        if isinstance(inspect.getattr_static(cls, name), (staticmethod, classmethod)):
            continue
        names.append(name)
    return names


def method_defaults(cls: type) -> dict[str, dict[str, Any]]:
    """Method name -> its ``@agentic_ray.method`` options (only methods that have some)."""
    out = {}
    for name in gated_method_names(cls):
        options = getattr(getattr(cls, name), METHOD_ATTR, None)
        if options:
            out[name] = dict(options)
    return out


def _signature_with(fn: Callable[..., Any], kwarg: str, what: str) -> inspect.Signature | None:
    """``fn``'s signature plus the keyword-only ``kwarg`` (default ``None``, before any ``**kwargs``);
    ``TypeError`` when ``fn`` already has a parameter of that name."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    if kwarg in sig.parameters:
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r}: the parameter name {kwarg!r} is reserved by agentic_ray.actor "
            f"(it carries the {what}); rename the parameter"
        )
    params = list(sig.parameters.values())
    extra = inspect.Parameter(kwarg, inspect.Parameter.KEYWORD_ONLY, default=None)
    at = len(params) - 1 if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD else len(params)
    return sig.replace(parameters=[*params[:at], extra, *params[at:]])


def _dress(wrapper: Callable[..., Any], fn: Callable[..., Any], signature: inspect.Signature | None) -> Callable:
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(wrapper, attr, getattr(fn, attr, None))
    for attr in dir(fn):  # Ray's per-method options (@ray.method) and ours
        if attr.startswith("__ray_") or attr == METHOD_ATTR:
            setattr(wrapper, attr, getattr(fn, attr))
    if signature is not None:
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
    return wrapper


def _ungated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A method outside the queue (a named concurrency group; a sync generator of an async actor): the
    context only sets the call's deadline scope."""
    if inspect.isasyncgenfunction(fn):

        async def agen(self: Any, *args: Any, _agentic_ctx: list | None = None, **kwargs: Any) -> Any:
            if _agentic_ctx is None:
                async for item in fn(self, *args, **kwargs):
                    yield item
                return
            with ActorAdmission.executing(TaskContext.from_wire(_agentic_ctx), fn.__name__):
                async for item in fn(self, *args, **kwargs):
                    yield item

        return agen
    if inspect.iscoroutinefunction(fn):

        async def coro(self: Any, *args: Any, _agentic_ctx: list | None = None, **kwargs: Any) -> Any:
            if _agentic_ctx is None:
                return await fn(self, *args, **kwargs)
            with ActorAdmission.executing(TaskContext.from_wire(_agentic_ctx), fn.__name__):
                return await fn(self, *args, **kwargs)

        return coro
    if inspect.isgeneratorfunction(fn):

        def gen(self: Any, *args: Any, _agentic_ctx: list | None = None, **kwargs: Any) -> Any:
            if _agentic_ctx is None:
                yield from fn(self, *args, **kwargs)
                return
            with ActorAdmission.executing(TaskContext.from_wire(_agentic_ctx), fn.__name__):
                yield from fn(self, *args, **kwargs)

        return gen

    def plain(self: Any, *args: Any, _agentic_ctx: list | None = None, **kwargs: Any) -> Any:
        if _agentic_ctx is None:
            return fn(self, *args, **kwargs)
        with ActorAdmission.executing(TaskContext.from_wire(_agentic_ctx), fn.__name__):
            return fn(self, *args, **kwargs)

    return plain


def _gated_threaded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(fn):

        def gen(self: Any, *args: Any, _agentic_ctx: list | None = None, **kwargs: Any) -> Any:
            adm = _current()
            if adm is None:
                yield from fn(self, *args, **kwargs)
                return
            yield from adm.stream(name, _agentic_ctx, fn, (self, *args), kwargs)  # type: ignore[attr-defined]

        return gen

    def call(self: Any, *args: Any, _agentic_ctx: list | None = None, **kwargs: Any) -> Any:
        adm = _current()
        if adm is None:
            return fn(self, *args, **kwargs)
        return adm.call(name, _agentic_ctx, fn, (self, *args), kwargs)  # type: ignore[attr-defined]

    return call


def _gated_async(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(fn):

        async def agen(self: Any, *args: Any, _agentic_ctx: list | None = None, **kwargs: Any) -> Any:
            adm = _current()
            if adm is None:
                async for item in fn(self, *args, **kwargs):
                    yield item
                return
            async for item in adm.stream(name, _agentic_ctx, fn, (self, *args), kwargs):  # type: ignore[attr-defined]
                yield item

        return agen
    is_coroutine = inspect.iscoroutinefunction(fn)

    async def call(self: Any, *args: Any, _agentic_ctx: list | None = None, **kwargs: Any) -> Any:
        adm = _current()
        if adm is None:
            result = fn(self, *args, **kwargs)
            return (await result) if is_coroutine else result
        return await adm.call(name, _agentic_ctx, fn, (self, *args), kwargs, is_coroutine)  # type: ignore[attr-defined]

    return call


def _stats(self: Any) -> dict[str, Any] | None:
    """The actor queue's counts now (slots, ``max_queued``, executing, queued per class, totals)."""
    adm = _ADMISSION
    return None if adm is None else adm.stats()


def governed_class(cls: type) -> type:
    """The subclass of ``cls`` that Ray runs (module docstring). ``TypeError`` when a method or
    ``__init__`` has a parameter named like the context or spec argument."""
    is_async = is_async_class(cls)
    namespace: dict[str, Any] = {}
    for name in gated_method_names(cls):
        fn = getattr(cls, name)
        signature = _signature_with(fn, CONTEXT_KWARG, "call's context")
        named_group = getattr(fn, "__ray_concurrency_group__", None) not in (None, "", "_ray_default_group_")
        if named_group or (is_async and inspect.isgeneratorfunction(fn)):
            wrapper = _ungated(fn)
        elif is_async:
            wrapper = _gated_async(name, fn)
        else:
            wrapper = _gated_threaded(name, fn)
        namespace[name] = _dress(wrapper, fn, signature)

    user_init = cls.__init__
    init_signature = _signature_with(user_init, ACTOR_KWARG, "actor's spec")

    def __init__(self: Any, *args: Any, _agentic_actor: ActorSpec | None = None, **kwargs: Any) -> None:
        if _agentic_actor is not None:
            _install(_agentic_actor, is_async)
        user_init(self, *args, **kwargs)

    _dress(__init__, user_init, init_signature)
    __init__.__name__ = "__init__"
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    namespace["__init__"] = __init__
    if not hasattr(cls, STATS_METHOD):
        namespace[STATS_METHOD] = _stats
    namespace["__module__"] = cls.__module__
    namespace["__qualname__"] = cls.__qualname__
    namespace["__doc__"] = cls.__doc__
    return type(cls.__name__, (cls,), namespace)
