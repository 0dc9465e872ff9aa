"""Deadline-aware results: ``agentic_ray.get`` and ``agentic_ray.get_async``, a ``ray.get`` that gives up
at the task's deadline with a typed error.

A task's deadline travels with it, and the worker refuses to start one that is past it; but a caller
waiting on the ``ObjectRef`` of a task that waits for a worker (its node was lost and Ray re-places it,
a node's workers are still starting) hears of it only when the task finally starts, seconds after the
deadline (the chaos suite's ``remove_node``: refusals 5.2-7.2 s after submission for a 5 s budget).
``get(ref)`` waits at most until the ref's deadline plus ``grace_s`` and then raises
``BudgetExhausted(reason="deadline_passed")`` naming the task; a result that is ready is returned even
after the deadline. The task is not cancelled (Ray's cancel interrupts a running function; a queued one
is refused by its worker when it starts); its late result is taken when it comes (``ref.future()``), so
a refusal the caller was already told of is not logged again by Ray as an "Unhandled error" when the ref
is dropped. ``get`` of a list waits for each in turn, each until its own
deadline, and raises for the first that misses it.

Refs this process did not submit through ``@agentic_ray.task`` (no deadline known here) are waited for
as ``ray.get`` would, up to ``timeout`` (None: for ever). ``timeout`` also caps the wait for a ref with a
deadline (``ray``'s ``GetTimeoutError`` then, as with ``ray.get``). The deadlines of the last
``MAX_TRACKED`` submissions of this process are remembered, by ref id (the refs themselves are not
held, so their objects are freed as usual).
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import Any

from agentic_ray.errors import BudgetExhausted

__all__ = ["MAX_TRACKED", "deadline_of", "get", "get_async"]

MAX_TRACKED = 100_000
_DEADLINES: OrderedDict[bytes, tuple[float, str]] = OrderedDict()


def remember(ref: Any, deadline_at: float, name: str) -> None:
    """Record the deadline of a task this process submitted (``AgenticRemoteFunction._submit``)."""
    binary = getattr(ref, "binary", None)
    if binary is None:  # not a single ObjectRef (num_returns > 1, generators)
        return
    deadlines = _DEADLINES
    deadlines[binary()] = (deadline_at, name)
    if len(deadlines) > MAX_TRACKED:
        deadlines.popitem(last=False)


def _entry(ref: Any) -> tuple[float, str] | None:
    binary = getattr(ref, "binary", None)
    return _DEADLINES.get(binary()) if binary is not None else None


def deadline_of(ref: Any) -> float | None:
    """The deadline (wall-clock seconds) of a task this process submitted, None when unknown."""
    entry = _entry(ref)
    return entry[0] if entry is not None else None


def _wait_s(
    ref: Any, grace_s: float, timeout: float | None, now: float
) -> tuple[float | None, tuple[float, str] | None]:
    if grace_s < 0:
        raise ValueError(f"grace_s: must be >= 0, got {grace_s!r}")
    entry = _entry(ref)
    if entry is None:
        return timeout, None
    wait = max(0.0, entry[0] + grace_s - now)
    return (wait if timeout is None else min(wait, timeout)), entry


def _late(entry: tuple[float, str] | None, grace_s: float, timeout: float | None) -> BudgetExhausted | None:
    """The typed error for a wait that ended at the task's deadline; None when it ended for ``timeout``
    first or the task's deadline is unknown (the caller re-raises Ray's timeout then)."""
    now = time.time()
    if entry is None or (timeout is not None and now < entry[0] + grace_s):
        return None
    deadline_at, name = entry
    return BudgetExhausted(
        f"task {name}: no result by its deadline ({(now - deadline_at) * 1000.0:.0f} ms ago); it may still run, "
        "and its worker refuses it if it has not started",
        reason="deadline_passed",
    )


def _abandon(ref: Any) -> None:
    """Take ``ref``'s late result when it comes and drop it: the caller already has its typed error, and
    Ray logs an error object nobody fetched as "Unhandled error" when its last ref goes."""
    with contextlib.suppress(Exception):  # not a Ray ObjectRef, or Ray shut down: nothing to take
        ref.future()


def get(refs: Any, *, grace_s: float = 0.0, timeout: float | None = None) -> Any:
    """``ray.get(refs)``, but each ref of an ``@agentic_ray.task`` is waited for at most until its
    deadline plus ``grace_s``: ``BudgetExhausted(reason="deadline_passed")`` then (module docstring)."""
    import ray
    from ray.exceptions import GetTimeoutError

    if isinstance(refs, (list, tuple)):
        return [get(r, grace_s=grace_s, timeout=timeout) for r in refs]
    wait, entry = _wait_s(refs, grace_s, timeout, time.time())
    try:
        return ray.get(refs, timeout=wait)
    except GetTimeoutError:
        late = _late(entry, grace_s, timeout)
        if late is None:
            raise
        _abandon(refs)
        raise late from None


async def get_async(ref: Any, *, grace_s: float = 0.0, timeout: float | None = None) -> Any:
    """``await ref``, but an ``@agentic_ray.task``'s ref is waited for at most until its deadline plus
    ``grace_s``: ``BudgetExhausted(reason="deadline_passed")`` then (module docstring)."""
    import asyncio

    import ray

    wait, entry = _wait_s(ref, grace_s, timeout, time.time())
    try:
        return await asyncio.wait_for(asyncio.wrap_future(ref.future()), wait)
    except asyncio.TimeoutError:
        ready, _ = ray.wait([ref], timeout=0)
        if ready:  # it arrived as the wait ended
            return ray.get(ref, timeout=0)
        late = _late(entry, grace_s, timeout)
        if late is None:
            raise
        _abandon(ref)
        raise late from None
