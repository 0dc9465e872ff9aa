"""The worker side of ``@agentic_ray.task``: deadline check, deadline context, batched accounting.

Kept apart from ``agentic_ray.sdk`` so a Ray worker that runs a task imports only this module, the
budget module and the errors (no policy engine, pydantic or YAML): worker start-up stays cheap.

``make_worker_function(fn)`` returns ``runner(*args, **kwargs)``; the context ``(deadline_at, qos,
workflow, stage, submitted_at, name)`` (wall-clock seconds) travels in the Ray task name
(``encode_context``), which is cheaper than an extra task argument. The runner:

1. refuses to start when ``time.time() >= deadline_at``: raises ``BudgetExhausted`` (reason
   ``deadline_passed``) without calling ``fn``, and accounts a ``refused`` event;
   The workflow field of ``refused`` and ``end`` events is ``drift_key``: ``workflow/stage`` for a
   stage task, so drift compares it with the stage's budget;
2. otherwise accounts ``start``, runs ``fn`` inside ``deadline_scope(Deadline(deadline_at))`` (child
   tasks submitted by ``fn`` inherit the remaining budget), and accounts ``end`` with the service time,
   the latency since submission, success, whether it met the deadline and the budget left (ms, < 0
   when late).

Tracing: when the submitter traced the call (a sampled ``agentic.submit`` span), the task name ends in
``|tp=<W3C traceparent>`` (``TRACE_SUFFIX``; in the name and not in the kwargs, because the wrapper
carries ``fn``'s signature and Ray checks kwargs against it). Only then does the runner import the
tracing module (configured once per worker from ``AGENTIC_TRACE_EXPORTER`` / ``AGENTIC_TRACE_SAMPLING``)
and run ``fn`` inside ``span("agentic.execute", parent=carrier, child_only=True)``; untraced calls pay
one substring test.

Events go to a per-process ``_Accountant``: a daemon thread sends them in batches every 0.1 s to the
node's agent (``record_batch``), off the task's critical path (the submitting process reports each
placement the same way, ``account_placed``, to the agent of the node it chose); it checks each send on its next turn
and, when the cached agent handle is dead (the control plane was restarted while this worker lived),
looks the agent up again and re-sends the batch.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agentic_ray._budget import Deadline, deadline_scope
from agentic_ray.actors._common import NAMESPACE, agent_name
from agentic_ray.control._summary import stage_key
from agentic_ray.errors import BudgetExhausted

__all__ = [
    "TRACE_SUFFIX",
    "account_placed",
    "decode_context",
    "encode_context",
    "make_worker_function",
    "split_trace",
    "stop_accounting",
]

_LOCK = threading.Lock()

TRACE_SUFFIX = "|tp="


class _Accountant:
    """Buffers task events in this process and sends them in batches every 0.1 s to node agents: a
    worker's ``start``/``end``/``refused`` go to its own node's agent, a submitter's ``placed`` events
    to the agent of the node each task was placed on."""

    FLUSH_S = 0.1
    MAX_BATCH = 1000

    def __init__(self) -> None:
        self.events: deque = deque()  # (node_id or None for this process's node, event)
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

    def add(self, event: tuple, node_id: str | None = None) -> None:
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
                    pending.append((agent.record_batch.remote(batch), node_id, batch))
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


def _account(event: tuple, node_id: str | None = None) -> None:
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
    of ``qos`` there, so the agent counts it as queued until its worker reports ``start``."""
    _account(("placed", qos, deadline_at), node_id)


def encode_context(
    name: str, deadline_at: float, submitted_at: float, qos: str, workflow: str | None, stage: str | None
) -> str:
    """The Ray task name that carries the agentic context:
    ``name|dl=<deadline>|at=<submitted>|<qos>|<workflow>|<stage>`` (wall-clock seconds; ``|`` cannot occur
    in policy names). A task name costs nothing to ship, unlike an extra argument that Ray serializes."""
    return f"{name}|dl={deadline_at:.6f}|at={submitted_at:.6f}|{qos}|{workflow or ''}|{stage or ''}"


def decode_context(task_name: str | None) -> tuple | None:
    """``(deadline_at, qos, workflow, stage, submitted_at, name)`` from ``encode_context``'s output, or
    ``None`` for a name it did not make."""
    if not task_name:
        return None
    parts = task_name.rsplit("|", 5)
    if len(parts) != 6 or not parts[1].startswith("dl=") or not parts[2].startswith("at="):
        return None
    try:
        deadline_at, submitted_at = float(parts[1][3:]), float(parts[2][3:])
    except ValueError:
        return None
    return (deadline_at, parts[3], parts[4] or None, parts[5] or None, submitted_at, parts[0])


def split_trace(task_name: str) -> tuple[str, str | None]:
    """``(name without the trace suffix, traceparent or None)`` for a task name (see ``TRACE_SUFFIX``)."""
    head, sep, traceparent = task_name.rpartition(TRACE_SUFFIX)
    return (head, traceparent) if sep else (task_name, None)


_TRACING: Any = None


def _worker_tracing() -> Any:
    """The tracing module, configured once in this worker from the environment (a ``runtime_env``):
    ``AGENTIC_TRACE_EXPORTER`` (none/console/otlp/memory), ``AGENTIC_TRACE_SAMPLING``. Imported only
    when a traced task arrives."""
    global _TRACING
    if _TRACING is None:
        import os

        from agentic_ray.telemetry import tracing

        exporter = os.environ.get("AGENTIC_TRACE_EXPORTER")
        if exporter and tracing.tracing_config().exporter == "none":
            ratio = float(os.environ.get("AGENTIC_TRACE_SAMPLING", str(tracing.TracingConfig().sampling_ratio)))
            tracing.configure_tracing(tracing.TracingConfig(exporter=exporter, sampling_ratio=ratio))
        _TRACING = tracing
    return _TRACING


def _current_task_name() -> str | None:
    import ray

    return ray.get_runtime_context().get_task_name()


def drift_key(ctx: tuple) -> str | None:
    """The workflow part of a task's accounting key (``summary.stage_key`` of its workflow and stage)."""
    return stage_key(ctx[2], ctx[3])


def _refuse(ctx: tuple, started: float) -> BudgetExhausted:
    deadline_at, qos, _workflow, _stage, submitted, name = ctx
    _account(("refused", qos, drift_key(ctx), (started - submitted) * 1000.0))
    late_ms = (started - deadline_at) * 1000.0
    return BudgetExhausted(
        f"task {name} not started: its deadline passed {late_ms:.1f} ms before it could start",
        reason="deadline_passed",
    )


def make_worker_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` for Ray. The agentic context comes in the task name (``encode_context``); a call
    without one (a name this module did not make) runs ``fn`` unchecked. The wrapper shows ``fn``'s
    signature (``__signature__``) so Ray checks arguments at ``.remote()`` exactly as for ``fn``; no
    ``functools.wraps``, whose ``__wrapped__`` would make Ray pickle ``fn`` by reference."""

    def _finish(ctx: tuple, started: float, ok: bool) -> None:
        end = time.time()
        _account(
            ("end", ctx[1], drift_key(ctx), (end - started) * 1000.0, (end - ctx[4]) * 1000.0, ok, end <= ctx[0],
             (ctx[0] - end) * 1000.0)
        )  # fmt: skip

    call = fn
    if inspect.iscoroutinefunction(fn):
        # Ray refuses ``async def`` tasks; run the coroutine to completion in the worker instead.
        import asyncio

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(fn(*args, **kwargs))

    def runner(*args: Any, **kwargs: Any) -> Any:
        task_name = _current_task_name()
        traceparent = None
        if task_name and TRACE_SUFFIX in task_name:
            task_name, traceparent = split_trace(task_name)
        ctx = decode_context(task_name)
        if ctx is None:
            return call(*args, **kwargs)
        started = time.time()
        if started >= ctx[0]:
            raise _refuse(ctx, started)
        _account(("start", ctx[1]))
        ok = False
        try:
            with deadline_scope(Deadline(ctx[0])):
                if traceparent is None:
                    result = call(*args, **kwargs)
                else:
                    tracing = _worker_tracing()
                    attrs = {"agentic.qos": ctx[1], "agentic.task": ctx[5]}
                    parent = {"traceparent": traceparent}
                    with tracing.span("agentic.execute", parent=parent, attributes=attrs, child_only=True):
                        result = call(*args, **kwargs)
            ok = True
            return result
        finally:
            _finish(ctx, started, ok)

    runner.__name__ = getattr(fn, "__name__", "task")
    runner.__qualname__ = getattr(fn, "__qualname__", runner.__name__)
    runner.__module__ = getattr(fn, "__module__", __name__)
    runner.__doc__ = fn.__doc__
    with contextlib.suppress(TypeError, ValueError):
        runner.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return runner
