"""The worker side of ``@agentic_ray.task``: the task context, the deadline check, typed accounting events.

Kept apart from ``agentic_ray.sdk`` so a Ray worker that runs a task imports only this module, the
budget module, the errors and the actor names (no policy engine, pydantic or YAML, not even
``agentic_ray.control``): worker start-up stays cheap (``tests/actors/test_worker.py`` pins it).

The context. The submitter sends one ``TaskContext`` (deadline, submission time, class, workflow, stage,
policy version, W3C traceparent, decision-log request id) with each call as the keyword-only argument
``CONTEXT_KWARG`` (``_agentic_ctx``), as the list of its fields (``to_wire``: Ray serializes a list of
plain values with msgpack, five times cheaper than a NamedTuple, which goes through cloudpickle). This
is the pattern of Ray's own tracing helper
(``ray/util/tracing/tracing_helper.py``, ``_inject_tracing_into_function`` adds ``_ray_trace_ctx``) and
of ddtrace's Ray integration: the wrapper adds the parameter to the wrapped function's ``__signature__``,
so Ray's argument check at ``.remote()`` accepts it, and pops it before calling the user's function. Ray
task names stay the user's own (``options(name=...)`` or the function name), in the dashboard, the state
API and the logs. A user function with a parameter of that name is refused at decoration
(``worker_signature``).

``make_worker_function(fn)`` returns ``runner(*args, _agentic_ctx=None, **kwargs)``. Called without a
context (plain Ray use of the wrapped function) it runs ``fn`` unchecked. With one it:

1. refuses to start when ``time.time() >= ctx.deadline_at``: raises ``BudgetExhausted`` (reason
   ``deadline_passed``) without calling ``fn``, and accounts ``Refused``;
2. otherwise accounts ``Started``, runs ``fn`` inside ``deadline_scope(Deadline(ctx.deadline_at))``
   (child tasks submitted by ``fn`` inherit the remaining budget), and accounts ``Ended`` with the
   service time, the latency since submission, success, whether it met the deadline and the budget
   left (ms, < 0 when late).

Tracing: when the submitter traced the call (a sampled ``agentic.submit`` span), ``ctx.traceparent`` is
set. Only then does the runner import the tracing module (configured once per worker from the
environment, ``telemetry.tracing.configure_tracing_from_env``) and run ``fn`` inside
``span("agentic.execute", parent=carrier, child_only=True)``; untraced calls pay one ``is None`` test.

Events. The node agents' input is typed here, once, for producer and consumer alike: ``Placed`` (from
the submitting process: the task waits in Ray's queue), ``Started``, ``Ended`` and ``Refused`` (from the
worker). They are NamedTuples, as cheap to build as the positional tuples they replace;
``record_batch`` dispatches on ``type(event)``. On the way to the agent they travel as lists of plain
values (``encode_events`` / ``decode_events``): Ray serializes a batch of NamedTuples through cloudpickle,
which calls a Python hook per object (~4 us per event), and lists with msgpack (~0.2 us). ``Ended`` and
``Refused`` carry the task's workflow and stage; the agent keys its summaries with ``control.stage_key``
(``workflow/stage`` for a stage task, so drift compares it with the stage's budget).

Events go to a per-process ``_Accountant``: a daemon thread sends them in batches every 0.1 s to the
node's agent (``record_batch``), off the task's critical path (the submitting process reports each
placement the same way, ``account_placed``, to the agent of the node it chose); it checks each send on
its next turn and, when the cached agent handle is dead (the control plane was restarted while this
worker lived), looks the agent up again and re-sends the batch.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from agentic_ray._budget import Deadline, deadline_scope, stage_deadline, workflow_scope
from agentic_ray.actors._common import NAMESPACE, agent_name
from agentic_ray.errors import BudgetExhausted

__all__ = [
    "CONTEXT_KWARG",
    "EVENT_TYPES",
    "Ended",
    "Placed",
    "Refused",
    "Started",
    "TaskContext",
    "TaskEvent",
    "account_placed",
    "decode_events",
    "encode_events",
    "make_worker_function",
    "stop_accounting",
    "worker_signature",
]

CONTEXT_KWARG = "_agentic_ctx"
"""The keyword-only argument that carries a call's ``TaskContext`` to the worker."""


class TaskContext(NamedTuple):
    """What the submitter decided for one call, shipped with it (``CONTEXT_KWARG``).

    Times are wall-clock seconds (``time.time()``), because they cross processes. ``traceparent`` is the
    W3C traceparent of a sampled ``agentic.submit`` span, else ``None``; ``request_id`` is the call's id
    in the submitting process's decision log (``None`` when that process keeps none)."""

    deadline_at: float
    submitted_at: float
    qos: str
    workflow: str | None
    stage: str | None
    policy_version: str | None
    traceparent: str | None
    request_id: str | None
    workflow_deadline: float | None = None  # the deadline of the workflow run the task belongs to
    stage_share: float | None = None  # a stage's share of what that run has left when it starts

    def to_wire(self) -> list[Any]:
        """The context as it travels: the list of its fields. Ray serializes a list of plain values with
        msgpack (~1.7 us per call) and a NamedTuple with cloudpickle (~8 us)."""
        return list(self)

    @classmethod
    def from_wire(cls, wire: list[Any]) -> TaskContext:
        """The context back from ``to_wire``'s list (``TypeError`` for a list of the wrong length)."""
        return cls._make(wire)


# -- events: what workers and submitters tell a node's agent (NodeAgentImpl.record_batch) -------------
class Placed(NamedTuple):
    """A submitter placed a task of ``qos`` on the agent's node; it waits in Ray's queue until it starts
    or its deadline (``deadline_at``, wall-clock seconds) passes."""

    qos: str
    deadline_at: float


class Started(NamedTuple):
    """A task of ``qos`` started on the agent's node."""

    qos: str


class Ended(NamedTuple):
    """A task ended: ``service_ms`` running, ``latency_ms`` since submission, ``ok`` (no exception),
    ``met`` (ended by its deadline), ``budget_left_ms`` (< 0 when late)."""

    qos: str
    workflow: str | None
    stage: str | None
    service_ms: float
    latency_ms: float
    ok: bool
    met: bool
    budget_left_ms: float


class Refused(NamedTuple):
    """A task did not start: its deadline had passed ``latency_ms`` after its submission."""

    qos: str
    workflow: str | None
    stage: str | None
    latency_ms: float


TaskEvent = Placed | Started | Ended | Refused
EVENT_TYPES: tuple[type, ...] = (Placed, Started, Ended, Refused)
"""The event types in wire order: an event travels as ``[EVENT_TYPES.index(type), *fields]``."""
_WIRE_CODE = {cls: code for code, cls in enumerate(EVENT_TYPES)}


def encode_events(events: list[TaskEvent]) -> list[list[Any]]:
    """Events as ``record_batch`` receives them over Ray: one list per event, its type's wire code then
    its fields. Ray serializes lists of plain values with msgpack, about 25x cheaper than a list of
    NamedTuples (cloudpickle calls a Python hook per object) and 10x cheaper than tuples."""
    return [[_WIRE_CODE[type(ev)], *ev] for ev in events]


def decode_events(rows: list[list[Any]]) -> list[TaskEvent]:
    """The events back from ``encode_events``' rows. Built with ``tuple.__new__`` rather than
    ``_make`` (0.14 against 0.23 us per event, on the agent's path): the rows come from
    ``encode_events`` only, so their length is not checked again."""
    types, new = EVENT_TYPES, tuple.__new__
    return [new(types[row[0]], row[1:]) for row in rows]


_LOCK = threading.Lock()


class _Accountant:
    """Buffers task events in this process and sends them in batches every 0.1 s to node agents: a
    worker's ``Started``/``Ended``/``Refused`` go to its own node's agent, a submitter's ``Placed``
    events to the agent of the node each task was placed on."""

    FLUSH_S = 0.1
    MAX_BATCH = 1000

    def __init__(self) -> None:
        self.events: deque[tuple[str | None, TaskEvent]] = deque()  # (node_id or None: this node, event)
        self.dropped = 0
        self.failures = 0
        self._agents: dict[str, Any] = {}
        self._local_node: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="agentic-accounting", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        """End the sending thread (events still buffered are dropped)."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def add(self, event: TaskEvent, node_id: str | None = None) -> None:
        self.events.append((node_id, event))

    def _loop(self) -> None:
        import ray

        pending: list[tuple[Any, str, list]] = []  # (ref, node_id, batch) of the previous round's sends
        while not self._stop.wait(self.FLUSH_S):
            if not ray.is_initialized():
                # Ray was shut down under this process: any Ray call now would start a new Ray
                # (Ray's auto-init), so drop what is buffered and the handles of the old cluster.
                self.dropped += len(self.events) + sum(len(batch) for _, _, batch in pending)
                self.events.clear()
                pending, self._agents, self._local_node = [], {}, None
                continue
            if pending:
                pending = self._check(ray, pending)
            if not self.events:
                continue
            batches: dict[str, list] = {}
            taken = 0
            while self.events and taken < self.MAX_BATCH:
                node_id, event = self.events.popleft()
                if node_id is None:
                    if self._local_node is None:
                        self._local_node = ray.get_runtime_context().get_node_id()
                    node_id = self._local_node
                batches.setdefault(node_id, []).append(event)
                taken += 1
            for node_id, batch in batches.items():
                try:
                    agent = self._agents.get(node_id)
                    if agent is None:
                        agent = self._agents[node_id] = ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
                    pending.append((agent.record_batch.remote(encode_events(batch)), node_id, batch))
                except Exception:
                    self._agents.pop(node_id, None)
                    self.dropped += len(batch)

    def _check(self, ray: Any, pending: list[tuple[Any, str, list]]) -> list[tuple[Any, str, list]]:
        """The sends not done yet. A failed one (the cached agent was killed, e.g. by a control-plane
        restart) drops the handle, which is looked up again, and queues the batch again (up to 3
        failures in a row; then it is counted in ``dropped``)."""
        still = []
        for ref, node_id, batch in pending:
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                still.append((ref, node_id, batch))
                continue
            try:
                ray.get(ref, timeout=0)
                self.failures = 0
            except Exception:
                self._agents.pop(node_id, None)
                self.failures += 1
                if self.failures <= 3:
                    self.events.extendleft((node_id, ev) for ev in reversed(batch))
                else:
                    self.dropped += len(batch)
        return still


_ACCOUNTANT: _Accountant | None = None


def _account(event: TaskEvent, node_id: str | None = None) -> None:
    """Queue ``event`` for the agent of ``node_id`` (``None``: this process's node)."""
    global _ACCOUNTANT
    if _ACCOUNTANT is None:
        with _LOCK:
            if _ACCOUNTANT is None:
                _ACCOUNTANT = _Accountant()
    _ACCOUNTANT.add(event, node_id)


def stop_accounting() -> None:
    """Stop this process's accounting thread, if it has one (``agentic_ray.shutdown`` calls this before
    Ray shuts down); a later event starts a new one."""
    global _ACCOUNTANT
    with _LOCK:
        accountant, _ACCOUNTANT = _ACCOUNTANT, None
    if accountant is not None:
        accountant.stop()


def account_placed(node_id: str, qos: str, deadline_at: float) -> None:
    """Tell ``node_id``'s agent (batched, within ``_Accountant.FLUSH_S``) that this process placed a task
    of ``qos`` there, so the agent counts it as queued until its worker reports ``Started``."""
    _account(Placed(qos, deadline_at), node_id)


_TRACING: Any = None


def _worker_tracing() -> Any:
    """The tracing module, configured once in this worker from the environment (a ``runtime_env``;
    ``configure_tracing_from_env``). Imported only when a traced task arrives."""
    global _TRACING
    if _TRACING is None:
        from agentic_ray.telemetry import tracing

        tracing.configure_tracing_from_env()
        _TRACING = tracing
    return _TRACING


def _task_name(default: str) -> str:
    """This Ray task's name (for messages and span attributes, off the hot path); ``default`` outside Ray."""
    import ray

    if not ray.is_initialized():
        return default
    return ray.get_runtime_context().get_task_name() or default


def _refuse(ctx: TaskContext, started: float, default_name: str) -> BudgetExhausted:
    _account(Refused(ctx.qos, ctx.workflow, ctx.stage, (started - ctx.submitted_at) * 1000.0))
    late_ms = (started - ctx.deadline_at) * 1000.0
    request = f" (request {ctx.request_id})" if ctx.request_id else ""
    return BudgetExhausted(
        f"task {_task_name(default_name)}{request} not started: its deadline passed {late_ms:.1f} ms "
        "before it could start",
        reason="deadline_passed",
    )


def _scopes(ctx: TaskContext, deadline: float) -> Any:
    """The task's deadline scope, and its workflow run's scope when it belongs to one (so stages it
    submits take their deadlines from what the run has left)."""
    if ctx.workflow is not None and ctx.workflow_deadline is not None:
        stack = contextlib.ExitStack()
        stack.enter_context(workflow_scope(ctx.workflow, ctx.workflow_deadline))
        stack.enter_context(deadline_scope(Deadline(deadline)))
        return stack
    return deadline_scope(Deadline(deadline))


def worker_signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    """``fn``'s signature plus the keyword-only ``CONTEXT_KWARG`` (default ``None``), which Ray checks
    ``.remote()``'s arguments against; ``None`` when ``fn`` has no readable signature (Ray then accepts
    any arguments, as for ``fn``). Raises ``TypeError`` when ``fn`` has a parameter of that name: the
    context would be taken from it (``@agentic_ray.task`` calls this at decoration)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    if CONTEXT_KWARG in sig.parameters:
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r}: the parameter name {CONTEXT_KWARG!r} is reserved by "
            "agentic_ray.task (it carries the task context); rename the parameter"
        )
    params = list(sig.parameters.values())
    extra = inspect.Parameter(CONTEXT_KWARG, inspect.Parameter.KEYWORD_ONLY, default=None)
    at = len(params) - 1 if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD else len(params)
    return sig.replace(parameters=[*params[:at], extra, *params[at:]])


def make_worker_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` for Ray: ``runner(*args, _agentic_ctx=None, **kwargs)`` (see the module docstring).
    The wrapper shows ``worker_signature(fn)`` (``__signature__``) so Ray checks arguments at
    ``.remote()`` as for ``fn`` plus the context; no ``functools.wraps``, whose ``__wrapped__`` would
    make Ray pickle ``fn`` by reference. ``TypeError`` for a parameter named ``CONTEXT_KWARG``."""
    signature = worker_signature(fn)
    name = getattr(fn, "__name__", "task")

    call = fn
    if inspect.iscoroutinefunction(fn):
        # Ray refuses ``async def`` tasks; run the coroutine to completion in the worker instead.
        import asyncio

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(fn(*args, **kwargs))

    def runner(*args: Any, _agentic_ctx: list[Any] | None = None, **kwargs: Any) -> Any:
        if _agentic_ctx is None:
            return call(*args, **kwargs)
        ctx = TaskContext.from_wire(_agentic_ctx)
        started = time.time()
        if started >= ctx.deadline_at:
            raise _refuse(ctx, started, name)
        _account(Started(ctx.qos))
        deadline = ctx.deadline_at
        if ctx.stage_share is not None and ctx.workflow_deadline is not None:
            # A stage's deadline is fixed when it starts: its share of what the workflow run has left.
            deadline = min(deadline, stage_deadline(ctx.workflow_deadline, ctx.stage_share, started))
        ok = False
        try:
            with _scopes(ctx, deadline):
                if ctx.traceparent is None:
                    result = call(*args, **kwargs)
                else:
                    tracing = _worker_tracing()
                    attrs = {"agentic.qos": ctx.qos, "agentic.task": _task_name(name)}
                    if ctx.policy_version is not None:
                        attrs["agentic.policy_version"] = ctx.policy_version
                    if ctx.request_id is not None:
                        attrs["agentic.request_id"] = ctx.request_id
                    parent = {"traceparent": ctx.traceparent}
                    with tracing.span("agentic.execute", parent=parent, attributes=attrs, child_only=True):
                        result = call(*args, **kwargs)
            ok = True
            return result
        finally:
            end = time.time()
            _account(
                Ended(ctx.qos, ctx.workflow, ctx.stage, (end - started) * 1000.0, (end - ctx.submitted_at) * 1000.0,
                      ok, end <= deadline, (deadline - end) * 1000.0)
            )  # fmt: skip

    runner.__name__ = name
    runner.__qualname__ = getattr(fn, "__qualname__", name)
    runner.__module__ = getattr(fn, "__module__", __name__)
    runner.__doc__ = fn.__doc__
    if signature is not None:
        runner.__signature__ = signature  # type: ignore[attr-defined]
    return runner
