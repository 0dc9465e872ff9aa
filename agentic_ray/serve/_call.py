"""Calling an agentic deployment from async code: the caller's budget scope, and hedged requests.

``await call(handle, *args, qos=..., budget_ms=..., hedge_after_ms=..., **kwargs)`` is
``await handle.remote(*args, **kwargs)`` plus two things a bare handle call cannot do:

- **Budget scope.** Serve routes a handle call on its own event-loop thread, where the caller's
  ``agentic_ray.budget(ms)`` / ``deadline_scope`` context is not visible. ``call`` reads the enclosing
  deadline here and sends it as the request's absolute deadline, so the router and the replica's gate
  never give the call more time than the caller has left (the router keeps the earlier of it and the
  class's own deadline).
- **Hedging** (Dean & Barroso, "The Tail at Scale", CACM 2013): when ``hedge_after_ms`` is given (the
  HTTP ingress passes the policy's ``hedge_after_ms`` of the request's class) and no answer came within
  it, a second copy is sent, marked ``hedge_of`` the first; the router sends it to another replica than
  the first (never the same one), pays it from the policy's retry budget, and sheds it (``Overloaded``,
  reason ``hedge_budget_exhausted`` or ``no_hedge_replica``) when it cannot; a shed hedge is ignored
  and the first copy is awaited. The first copy to succeed wins and the other is cancelled. No hedge is
  sent once the deadline has passed. The replica's code runs twice for a hedged call, so hedge only
  idempotent methods.

**Deadline** (``AGENTIC_CALL_DEADLINE_SLACK_S``, seconds, default ``0.25``; ``inf`` turns it off). A call
with no answer ``DEADLINE_SLACK_S`` after its deadline (the class's budget as this process's router of the
deployment keeps it, or the caller's earlier ``budget_ms`` / scope) raises
``BudgetExhausted(reason="deadline_exceeded")`` here, and Serve's work for it is cancelled
(``DeploymentResponse.cancel``: taken out of the router's queue, or cancelled on its replica), as gRPC ends a
call at its deadline and as the proxy's door answers 504 (``serve._door``). Without it a call that Serve's
router holds while every replica is full is answered only when a replica takes it: in the chaos suite's
``kill_agent`` on a slow host, 40 of 247 calls (all critical, which is never shed) heard their
``deadline_passed`` 1-6 s after their deadline. A caller that cancels the call (it went away) cancels
Serve's work for it too.

**Client-side throttling** (``serve._handle_throttle``): while the deployment refuses most calls of a
class that may be shed, that share of the class's calls is refused here at once with
``Overloaded(reason="throttled")``, without a trip through Serve's router (``AGENTIC_CALL_THROTTLE=0``:
off); and a call the router of this process would refuse before choosing a replica (no room for its
class anywhere; with ``AGENTIC_CALL_EARLY_REFUSAL=all`` the pressure rule too) is refused here with the
router's own error (early refusal; ``0``: off).

**In-flight limit** (``serve._call_door``): at most a few calls per replica slot of the deployment
(``AGENTIC_CALL_INFLIGHT_PER_SLOT``, default ``3``; ``0``: off) are in Serve's path from this process
at once, per priority level; the rest wait here by priority and deadline (the freshest first once the
queue stands) if never shed, until too little of their budget is left
(``BudgetExhausted(reason="deadline_exceeded")``); a call that may be shed is refused at once
(``Overloaded(reason="caller_queue_delay")``; ``AGENTIC_CALL_QUEUE_INTERVAL_MS`` lets it wait). A call let
in after waiting is put to the early refusal again, its room judged anew.

Raises what the handle call raises (``AdmissionError`` subclasses for shed work), except that Ray's
actor errors of a replica that died or became unreachable while it held the call (``ActorDiedError``,
``ActorUnavailableError``) become ``ReplicaFailed`` (an ``AgenticRayError``, ``retry_after_s`` about
the time Serve takes to notice; the call may have run, so it is not retried here); with a hedge, the
first copy's error when both fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import time
import uuid
from typing import Any

from agentic_ray._budget import current_deadline, current_workflow, deadline_after
from agentic_ray.errors import BudgetExhausted, ReplicaFailed
from agentic_ray.serve import _call_door, _handle_throttle
from agentic_ray.serve._meta import CALL_ID, HEDGE_OF, META_KWARG, WORKFLOW_DEADLINE, env_number, pop_meta

__all__ = ["CALL_ID", "HEDGE_OF", "call", "call_meta"]

_REPLICA_RETRY_AFTER_S = 1.0  # about when Serve's routers have dropped a dead replica
SLACK_ENV = "AGENTIC_CALL_DEADLINE_SLACK_S"  # seconds after a call's deadline it is cancelled; inf: never
DEFAULT_SLACK_S = 0.25
DEADLINE_SLACK_S = env_number(os.environ.get(SLACK_ENV), DEFAULT_SLACK_S)
_IDS: tuple[int, str, itertools.count] = (-1, "", itertools.count())


def new_call_id() -> str:
    """A call id unique across processes: a random per-process prefix and a counter (32 hex digits).

    Not ``uuid4()`` per call: it reads ``os.urandom``, which releases the GIL, and in a caller whose Serve
    router thread is busy each call then waits for the GIL to come back (measured: 0.2 ms per id beside a
    busy thread, against under 1 us for this), on every call, refused or not."""
    global _IDS
    pid, prefix, counter = _IDS
    if pid != os.getpid():  # first call, or a forked child: a fresh prefix
        pid, prefix, counter = _IDS = (os.getpid(), uuid.uuid4().hex[:16], itertools.count())
    return f"{prefix}{next(counter):016x}"


def call_meta(kwargs: dict[str, Any], now: float) -> dict[str, Any]:
    """The wire metadata of a call: ``kwargs``' agentic keywords (removed from it), the deadline of the
    enclosing budget scope when that is earlier, and a fresh call id."""
    meta = pop_meta(kwargs)
    budget_ms = meta.get("budget_ms")
    deadline = meta.get("deadline")
    scope = current_deadline()
    if budget_ms is not None:
        deadline = deadline_after(now, float(budget_ms), deadline, scope)
    elif scope is not None and (deadline is None or scope.at < deadline):
        deadline = scope.at
    if deadline is not None:
        meta["deadline"] = deadline
    run = current_workflow()
    if run is not None and meta.get("workflow") == run.name:
        meta[WORKFLOW_DEADLINE] = run.deadline  # a stage's deadline is its share of what the run has left
    meta[CALL_ID] = new_call_id()
    return meta


async def _answer(response: Any) -> Any:
    return await response


async def call(handle: Any, *args: Any, hedge_after_ms: float | None = None, **kwargs: Any) -> Any:
    """Call ``handle`` (an agentic deployment's handle) with the agentic keywords in ``kwargs`` (``qos``,
    ``budget_ms``, ``tenant``, ``data_class``, ``workflow``); see the module docstring. A replica that
    dies or becomes unreachable while it holds the call raises ``ReplicaFailed`` (typed), not Ray's
    actor error."""
    if hedge_after_ms is not None and not hedge_after_ms > 0:
        raise ValueError(f"hedge_after_ms: must be > 0, got {hedge_after_ms!r}")
    from ray.exceptions import RayActorError

    now = time.time()
    meta = call_meta(kwargs, now)
    ticket = _handle_throttle.admit(handle, meta, now)  # raises Overloaded when refused here
    deadline = _handle_throttle.deadline_for(handle, meta, now, ticket)  # classified once when admitted
    entered = await _enter(handle, meta, now, ticket, deadline)  # raises when held here too long or displaced
    accepted = False
    try:
        result = await _within(_call(handle, args, hedge_after_ms, kwargs, meta), deadline, DEADLINE_SLACK_S)
        accepted = True
    except RayActorError as exc:
        failed = ReplicaFailed(f"the replica running the call failed: {type(exc).__name__}", type(exc).__name__,
                               _REPLICA_RETRY_AFTER_S)  # fmt: skip
        _handle_throttle.outcome(ticket, failed)
        raise failed from exc
    except asyncio.CancelledError:  # the caller went away: counted neither way
        raise
    except BaseException as exc:
        _handle_throttle.outcome(ticket, exc)
        raise
    finally:
        if entered is not None:
            entered.done(accepted)
    _handle_throttle.outcome(ticket, None)
    return result


async def _enter(handle: Any, meta: dict[str, Any], now: float, ticket: Any, deadline: float | None) -> Any:
    """Room in Serve's path for the call (``serve._call_door``): an ``Entered`` to finish, or None when no
    limit applies (no router of the deployment in this process yet, no deadline, the door off)."""
    if deadline is None or not 0 < _call_door.per_slot() < math.inf:
        return None
    classified = _handle_throttle.class_for(handle, meta, now, ticket)
    if classified is None:
        return None
    key, router, qos = classified
    entered = await _call_door.enter(key, router, qos, deadline)
    if entered is not None and entered.waited:  # the router's room may be gone after the wait: ask again
        early = _handle_throttle.recheck(handle, meta, time.time(), ticket)
        if early is not None:
            entered.done(False)
            raise early
    return entered


async def _within(work: Any, deadline: float | None, slack_s: float) -> Any:
    """``await work``, but past ``deadline + slack_s`` cancel it and raise ``BudgetExhausted``
    (``deadline_exceeded``); no bound when ``deadline`` is None or ``slack_s`` infinite."""
    if deadline is None or not math.isfinite(slack_s):
        return await work
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline + slack_s - time.time()))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()  # ``_call`` cancels Serve's work for it
    raise BudgetExhausted(f"no answer {slack_s * 1000:.0f} ms after the call's deadline: cancelled",
                          reason="deadline_exceeded")  # fmt: skip


async def _call(handle: Any, args: tuple, hedge_after_ms: float | None, kwargs: dict[str, Any],
                meta: dict[str, Any]) -> Any:  # fmt: skip
    first = handle.remote(*args, **{META_KWARG: meta}, **kwargs)
    if hedge_after_ms is None:
        try:
            return await first
        except asyncio.CancelledError:  # past its deadline, or the caller went away: so does Serve's work
            with contextlib.suppress(Exception):
                first.cancel()
            raise
    first_task = asyncio.ensure_future(_answer(first))
    try:
        done, _ = await asyncio.wait({first_task}, timeout=hedge_after_ms / 1000.0)
        deadline = meta.get("deadline")
        if done or (deadline is not None and time.time() >= deadline):
            return await first_task
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            first.cancel()
        first_task.cancel()
        raise
    hedge_meta = {**meta, CALL_ID: new_call_id(), HEDGE_OF: meta[CALL_ID]}
    second = handle.remote(*args, **{META_KWARG: hedge_meta}, **kwargs)
    second_task = asyncio.ensure_future(_answer(second))
    responses = {first_task: first, second_task: second}
    pending: set[asyncio.Future] = {first_task, second_task}
    errors: dict[asyncio.Future, BaseException] = {}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is None:
                    return task.result()
                errors[task] = error  # a refused hedge (AdmissionError) just leaves the first copy
        raise errors.get(first_task) or errors[second_task]
    finally:
        for task in pending:
            with contextlib.suppress(Exception):
                responses[task].cancel()
            task.cancel()
