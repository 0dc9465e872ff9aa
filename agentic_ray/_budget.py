"""Latency budgets: deadlines, budgets, stage splits and their propagation through nested work.

A **deadline** is an absolute instant (seconds on the caller's clock; across processes and nodes that
clock is wall time, ``time.time()``). A **budget** is a deadline plus where it started. Budgets nest:
a child scope gets ``min(parent deadline, now + its own budget)`` so child work can never outlive the
work that asked for it: the deadline-propagation rule of gRPC and of Google's "The Tail at Scale"
(Dean & Barroso, CACM 2013), where a request's remaining time travels with every sub-request.

Workflow stages split an end-to-end budget. Each stage has a nominal share (a fraction of the total)
or a fixed number of milliseconds. At run time the budget of stage *i* is recomputed from what is
actually left, in proportion to the nominal budgets of the stages not yet run::

    budget_i(now) = remaining(now) * nominal_i / sum(nominal_j for j >= i)

so slack left by fast early stages is passed on to later ones, an overrun is absorbed by all later
stages in proportion, and the last stage gets everything that is left. No stage ever runs past the
workflow's deadline. This is the one stage-budget rule: the policy compiler computes the nominal
budgets with ``StagePlan.split``, a stage's deadline is ``stage_deadline(workflow deadline, share, now)``
when it starts (tasks on their worker, Serve requests at their router), and drift judges a stage against
its nominal budget. A run of a workflow is a ``workflow_scope(name, deadline)``; a stage met outside one
takes the workflow to have begun with the earlier stages using exactly their nominal budgets
(``StagePlan.remaining_at``).

The current deadline lives in a ``contextvars.ContextVar`` (``current_deadline()``), so it follows
threads' and coroutines' own contexts; ``budget_scope`` narrows it for a block.

This module is pure: it reads no clock. Every function that needs the time takes ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "Budget",
    "Deadline",
    "StagePlan",
    "StageSpec",
    "WorkflowScope",
    "budget_scope",
    "current_deadline",
    "current_workflow",
    "deadline_after",
    "deadline_scope",
    "stage_deadline",
    "workflow_scope",
]


def _check_ms(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, order=True)
class Deadline:
    """An absolute instant, in seconds on the caller's clock. ``Deadline.never()`` is +infinity."""

    at: float

    @classmethod
    def after(cls, now: float, ms: float) -> Deadline:
        """The deadline ``ms`` milliseconds after ``now`` (``ms`` must be > 0)."""
        return cls(now + _check_ms("budget_ms", ms) / 1000.0)

    @classmethod
    def never(cls) -> Deadline:
        """A deadline that never passes."""
        return cls(math.inf)

    def remaining_ms(self, now: float) -> float:
        """Milliseconds left at ``now``; negative once passed, ``inf`` for ``never()``."""
        return (self.at - now) * 1000.0

    def expired(self, now: float) -> bool:
        """True when ``now`` is at or past the deadline."""
        return now >= self.at

    def earliest(self, other: Deadline | None) -> Deadline:
        """The earlier of two deadlines (``None`` counts as never)."""
        if other is None or self.at <= other.at:
            return self
        return other


@dataclass(frozen=True, slots=True)
class Budget:
    """A latency budget: started at ``start``, must finish by ``deadline``.

    ``total_ms`` is what was asked for; when a parent's deadline is earlier, ``deadline`` is the parent's
    and ``total_ms`` is clipped to it.
    """

    start: float
    deadline: Deadline

    @classmethod
    def begin(cls, now: float, ms: float, parent: Deadline | None = None) -> Budget:
        """A budget of ``ms`` starting at ``now``, never later than ``parent``."""
        return cls(now, Deadline.after(now, ms).earliest(parent))

    @property
    def total_ms(self) -> float:
        """The length of the budget from its start to its deadline, in milliseconds."""
        return self.deadline.remaining_ms(self.start)

    def remaining_ms(self, now: float) -> float:
        """Milliseconds left at ``now`` (negative once exhausted)."""
        return self.deadline.remaining_ms(now)

    def spent_ms(self, now: float) -> float:
        """Milliseconds used since the start."""
        return (now - self.start) * 1000.0

    def exhausted(self, now: float) -> bool:
        """True once the deadline has passed."""
        return self.deadline.expired(now)

    def child(self, now: float, ms: float | None = None) -> Budget:
        """A nested budget starting at ``now``: ``ms`` if given, never past this budget's deadline."""
        if ms is None:
            return Budget(now, self.deadline)
        return Budget.begin(now, ms, self.deadline)


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One workflow stage: exactly one of ``share`` (0 < share <= 1 of the total) or ``fixed_ms``."""

    name: str
    share: float | None = None
    fixed_ms: float | None = None

    def __post_init__(self) -> None:
        if (self.share is None) == (self.fixed_ms is None):
            raise ValueError(f"stage {self.name!r}: give exactly one of share or fixed_ms")
        if self.share is not None and not (0 < self.share <= 1):
            raise ValueError(f"stage {self.name!r}: share must be in (0, 1], got {self.share!r}")
        if self.fixed_ms is not None:
            _check_ms(f"stage {self.name!r}: fixed_ms", self.fixed_ms)


@dataclass(frozen=True, slots=True)
class StagePlan:
    """Nominal stage budgets for an end-to-end budget, and their run-time recomputation.

    Build with ``StagePlan.split(total_ms, stages)``; the nominal budgets must fit in the total
    (``ValueError`` otherwise). Nominal budgets that add up to less than the total leave slack that
    ``budget_for`` hands out to the stages in proportion.
    """

    total_ms: float
    names: tuple[str, ...]
    nominal_ms: tuple[float, ...]

    @classmethod
    def split(cls, total_ms: float, stages: Sequence[StageSpec]) -> StagePlan:
        """Turn shares and fixed milliseconds into nominal budgets that fit inside ``total_ms``."""
        total = _check_ms("budget_ms", total_ms)
        if not stages:
            raise ValueError("stages: at least one stage is required")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages: duplicate stage names in {names}")
        nominal = tuple(s.fixed_ms if s.fixed_ms is not None else (s.share or 0.0) * total for s in stages)
        used = sum(nominal)
        if used > total * (1 + 1e-9):
            raise ValueError(f"stages: nominal budgets add up to {used:g} ms, more than the {total:g} ms budget")
        return cls(total, tuple(names), nominal)

    def index(self, stage: str) -> int:
        """The position of ``stage`` (``ValueError`` for an unknown name)."""
        try:
            return self.names.index(stage)
        except ValueError:
            raise ValueError(f"stage: unknown stage {stage!r}; stages are {', '.join(self.names)}") from None

    def share(self, stage: str | int) -> float:
        """The fraction of what is left of the workflow that ``stage`` gets when it starts:
        ``nominal_i / sum(nominal_j, j >= i)`` (1 for the last stage)."""
        i = stage if isinstance(stage, int) else self.index(stage)
        if not 0 <= i < len(self.names):
            raise ValueError(f"stage: index {i} out of range")
        later = sum(self.nominal_ms[i:])
        return 1.0 if i == len(self.names) - 1 or later <= 0 else self.nominal_ms[i] / later

    def remaining_at(self, stage: str | int) -> float:
        """What is left of the workflow when ``stage`` starts if every earlier stage used exactly its
        nominal budget (ms): the workflow deadline to assume for a stage met outside its workflow."""
        i = stage if isinstance(stage, int) else self.index(stage)
        return self.total_ms - sum(self.nominal_ms[:i])

    def budget_for(self, stage: str | int, workflow: Budget, now: float) -> Budget:
        """The budget stage ``stage`` gets if it starts at ``now`` inside ``workflow``.

        ``remaining * nominal_i / sum(nominal_j, j >= i)``; the last stage gets all that remains. The
        result never ends after the workflow's deadline; it may already be exhausted when earlier stages
        overran.
        """
        i = stage if isinstance(stage, int) else self.index(stage)
        if not 0 <= i < len(self.names):
            raise ValueError(f"stage: index {i} out of range")
        remaining = workflow.remaining_ms(now)
        later = sum(self.nominal_ms[i:])
        if i == len(self.names) - 1 or remaining <= 0 or later <= 0:
            return Budget(now, workflow.deadline)
        ms = remaining * self.nominal_ms[i] / later
        return Budget(now, Deadline(now + ms / 1000.0).earliest(workflow.deadline))


def stage_deadline(workflow_deadline: float, share: float, now: float) -> float:
    """The deadline of a stage that starts at ``now`` and gets ``share`` (``StagePlan.share``) of what is
    left of its workflow: ``now + (workflow_deadline - now) * share``, never after the workflow's deadline.
    The one rule every place that runs a stage (a task on a worker, a Serve request) uses."""
    if now >= workflow_deadline:
        return workflow_deadline
    return min(workflow_deadline, now + (workflow_deadline - now) * share)


def deadline_after(now: float, budget_ms: float, *caps: float | Deadline | None) -> float:
    """``now + budget_ms / 1000``, no later than any of ``caps`` (absolute deadlines; ``None`` ignored):
    the one way a deadline is fixed from a budget and the deadlines it must fit inside."""
    at = now + budget_ms / 1000.0
    for cap in caps:
        if cap is not None:
            cap_at = cap.at if isinstance(cap, Deadline) else float(cap)
            if cap_at < at:
                at = cap_at
    return at


@dataclass(frozen=True, slots=True)
class WorkflowScope:
    """A workflow run in progress: its name and its deadline (wall-clock seconds)."""

    name: str
    deadline: float


_CURRENT: ContextVar[Deadline | None] = ContextVar("agentic_ray_deadline", default=None)
_WORKFLOW: ContextVar[WorkflowScope | None] = ContextVar("agentic_ray_workflow", default=None)


def current_workflow() -> WorkflowScope | None:
    """The workflow run of the innermost active ``workflow_scope`` in this context, or ``None``."""
    return _WORKFLOW.get()


@contextmanager
def workflow_scope(name: str, deadline: float) -> Iterator[WorkflowScope]:
    """Make a run of workflow ``name`` with ``deadline`` current for the block: stages of that workflow
    submitted inside it take their deadlines from what is left of it (``stage_deadline``), so slack left
    by fast stages passes to later ones. The deadline scope is narrowed to it too."""
    scope = WorkflowScope(name, deadline)
    token = _WORKFLOW.set(scope)
    try:
        with deadline_scope(Deadline(deadline)):
            yield scope
    finally:
        _WORKFLOW.reset(token)


def current_deadline() -> Deadline | None:
    """The deadline of the innermost active scope in this context, or ``None`` outside any scope."""
    return _CURRENT.get()


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Make ``deadline`` current for the block, never later than the enclosing one.

    Used on the receiving side of a task or request to adopt the caller's deadline. Yields the
    effective deadline (``None`` when neither is set).
    """
    parent = _CURRENT.get()
    effective = parent if deadline is None else deadline.earliest(parent)
    token = _CURRENT.set(effective)
    try:
        yield effective
    finally:
        _CURRENT.reset(token)


@contextmanager
def budget_scope(ms: float, now: float) -> Iterator[Budget]:
    """Run a block with a budget of ``ms`` milliseconds from ``now``, inside any enclosing budget.

    The effective deadline is ``min(enclosing deadline, now + ms)``; nested work (child tasks, calls)
    inherits it through ``current_deadline()``. ``ms`` must be > 0 (``ValueError``).
    """
    budget = Budget.begin(now, ms, _CURRENT.get())
    token = _CURRENT.set(budget.deadline)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)
