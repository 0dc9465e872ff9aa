"""The public SDK surface without a cluster: lazy names, the callable budget module, early bad input."""

from __future__ import annotations

import pytest

import agentic_ray


def test_public_names():
    from agentic_ray import sdk

    for name in ("init", "shutdown", "task", "apply_policy", "rollback_policy", "status"):
        assert name in agentic_ray.__all__
        assert getattr(agentic_ray, name) is getattr(sdk, name)
    with pytest.raises(AttributeError):
        agentic_ray.no_such_name  # noqa: B018


def test_budget_is_a_scope_and_the_deadline_values_are_exported():
    from agentic_ray._budget import Deadline, current_deadline

    assert agentic_ray.Deadline is Deadline and agentic_ray.current_deadline is current_deadline
    assert current_deadline() is None
    with agentic_ray.budget(200) as outer:
        assert current_deadline() == outer.deadline
        with agentic_ray.budget(10_000) as inner:  # nested scopes never exceed the parent
            assert inner.deadline == outer.deadline
    assert current_deadline() is None
    with pytest.raises(ValueError, match="budget_ms"), agentic_ray.budget(0):
        pass


def test_bad_task_arguments_fail_at_decoration():
    def f():
        return 1

    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="budget_ms"):
            agentic_ray.task(budget_ms=bad)(f)
    with pytest.raises(ValueError, match="scheduling_strategy"):
        agentic_ray.task(scheduling_strategy="SPREAD")(f)
    with pytest.raises(TypeError):
        agentic_ray.task(qos="standard")(int.__class__)
    t = agentic_ray.task(qos="standard", num_cpus=0)(f)
    with pytest.raises(TypeError, match="remote"):
        t()
    with pytest.raises(ValueError, match="budget_ms"):
        t.options(budget_ms=-3)
