"""The SDK: ``init``/``shutdown``, ``@task``, ``@actor``/``@method``, ``budget``, ``apply_policy``/``rollback_policy``,
``status``.

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
3. sends the decision with the call as a ``TaskContext`` (deadline, class, workflow, stage, policy
   version, trace parent) in the keyword-only argument ``_agentic_ctx`` that the worker wrapper adds to
   the function's signature (``actors._worker``); the Ray task name stays the user's own
   (``options(name=...)`` or the function name);
4. on the worker, the wrapper refuses to start after the deadline (``BudgetExhausted``, the function is
   not called), runs the function inside ``deadline_scope`` (child tasks inherit the remaining budget),
   and accounts start/end with the node's agent through a batching background thread.

Workflow stages: a stage's deadline is fixed when it starts, as its share of what its workflow run has
left (``_budget.StagePlan``, ``stage_deadline``); the run is the enclosing ``agentic_ray.workflow(name)``
block or workflow task of the same workflow, else one that starts at the call. A stage task may start
until the run's deadline.

Telemetry, off the untraced hot path: when tracing is configured in the submitting process
(``telemetry.configure_tracing`` with an exporter, or ``AGENTIC_TRACE_EXPORTER`` at ``init``),
``.remote()`` runs inside ``root_span("agentic.submit")`` and, for a sampled span, the context carries
its W3C traceparent; the worker opens ``agentic.execute`` under it (``child_only``). Otherwise
``.remote()`` pays one module lookup. With ``AGENTIC_DECISION_LOG_DIR`` set, every placement is
appended to a per-process hash-chained ``DecisionLog`` (``<dir>/sdk-decisions-<pid>.jsonl``) under a
request id of its own, which the context carries to the worker (its ``agentic.execute`` span, a
refusal's message); the log's checkpoint heads go to the GlobalCoordinator and appear in
``status()["decision_logs"]``. Completion/queue/rejection metrics come from the node agents.

Every process (driver or worker) has one ``ClusterViewCache`` (``actors/_view_cache.py``) with the
policy (read from the KV by sha256) and the view. Deadlines are wall-clock seconds (``time.time()``)
because they cross processes.

Governed actors (``@agentic_ray.actor``, ``sdk._actors``): placed like tasks, their calls classified
like tasks and carrying the same context, and a bounded priority-then-deadline queue inside each actor
(``actors._actor_admission``); see that module's docstring.

A process that sends many calls: ``agentic_ray.freeze_gc()`` once after start-up keeps the garbage
collector's full collections (100-250 ms with Ray and Serve loaded) off its requests' path (``_gc``).

Results: ``agentic_ray.get(refs)`` / ``await agentic_ray.get_async(ref)`` are ``ray.get`` / ``await ref``
that give up at a task's deadline with ``BudgetExhausted`` (``_results``).

Modules: ``_tasks`` (``task``, ``AgenticRemoteFunction``, ``budget``), ``_results`` (``get``), ``_actors`` (``actor``,
``method``, ``AgenticActorClass``, ``AgenticActorHandle``), ``_admin`` (life cycle, policy
rollout, status), ``_telemetry`` (tracing and decision log from the environment), ``_state`` (this
process's ``ClusterViewCache``).
"""

from __future__ import annotations

from agentic_ray.sdk._actors import AgenticActorClass, AgenticActorHandle, actor, method
from agentic_ray.sdk._admin import (
    apply_policy,
    cluster_view,
    init,
    policy_history,
    promote_policy,
    rollback_policy,
    shutdown,
    status,
    stop_control_plane_actors,  # noqa: F401  (public as in the former sdk.py, not in __all__)
)
from agentic_ray.sdk._gc import freeze_gc
from agentic_ray.sdk._results import get, get_async
from agentic_ray.sdk._state import runtime as _runtime  # noqa: F401  (benchmarks: sdk._runtime())
from agentic_ray.sdk._tasks import AgenticRemoteFunction, budget, task, workflow

# Report each placement to the chosen node's agent (queued-not-started accounting, ``account_placed``).
# ``_tasks`` reads it here at every submission, so benchmarks switch it on the package
# (``agentic_ray.sdk.ACCOUNT_PLACEMENTS = False``). Off, agents see tasks only once they start, and
# their gates ignore work waiting in Ray's queue.
ACCOUNT_PLACEMENTS = True

__all__ = [
    "AgenticActorClass",
    "AgenticActorHandle",
    "AgenticRemoteFunction",
    "actor",
    "apply_policy",
    "budget",
    "cluster_view",
    "freeze_gc",
    "get",
    "get_async",
    "init",
    "method",
    "policy_history",
    "promote_policy",
    "rollback_policy",
    "shutdown",
    "status",
    "task",
    "workflow",
]
