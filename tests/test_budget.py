"""Deadlines, budgets, stage splits and their propagation (pure; no clock, no sleeps)."""

from __future__ import annotations

import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_ray._budget import (
    Budget,
    Deadline,
    StagePlan,
    StageSpec,
    budget_scope,
    current_deadline,
    deadline_scope,
)

ms_values = st.floats(min_value=0.001, max_value=1e7, allow_nan=False, allow_infinity=False)
instants = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)


def test_deadline_arithmetic():
    d = Deadline.after(100.0, 250)
    assert d.at == pytest.approx(100.25)
    assert d.remaining_ms(100.05) == pytest.approx(200)
    assert not d.expired(100.2499)
    assert d.expired(100.25)
    assert d.remaining_ms(101.0) < 0
    assert Deadline.never().remaining_ms(1e12) == math.inf
    assert d.earliest(None) is d
    assert d.earliest(Deadline(100.1)).at == 100.1


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "10", True, None])
def test_bad_budget_is_value_error(bad):
    with pytest.raises(ValueError, match="budget_ms"):
        Deadline.after(0.0, bad)
    with pytest.raises(ValueError), budget_scope(bad, now=0.0):
        pass


def test_budget_child_is_clipped_to_parent():
    parent = Budget.begin(10.0, 100)
    child = parent.child(10.05, 500)
    assert child.deadline == parent.deadline
    assert child.total_ms == pytest.approx(50)
    assert parent.child(10.05, 20).deadline.at == pytest.approx(10.07)
    assert parent.child(10.05).deadline == parent.deadline
    assert parent.spent_ms(10.04) == pytest.approx(40)
    assert parent.exhausted(10.1)


@given(now=instants, outer=ms_values, inner=ms_values, step=st.floats(min_value=0, max_value=1e4))
def test_nested_scopes_never_exceed_the_parent(now, outer, inner, step):
    with budget_scope(outer, now=now) as b_outer:
        assert current_deadline() == b_outer.deadline
        with budget_scope(inner, now=now + step) as b_inner:
            assert b_inner.deadline.at <= b_outer.deadline.at
            assert current_deadline() == b_inner.deadline
            assert b_inner.deadline.at == min(b_outer.deadline.at, now + step + inner / 1000.0)
        assert current_deadline() == b_outer.deadline
    assert current_deadline() is None


@given(parent=instants, incoming=instants)
def test_deadline_scope_adopts_the_earlier(parent, incoming):
    with deadline_scope(Deadline(parent)):
        with deadline_scope(Deadline(incoming)) as eff:
            assert eff.at == min(parent, incoming)
        with deadline_scope(None) as eff:
            assert eff.at == parent


def test_context_is_per_thread_and_copyable():
    with budget_scope(100, now=0.0) as b:
        ctx = copy_context()
        with ThreadPoolExecutor(1) as pool:
            # A fresh thread has its own context: no deadline leaks into it...
            assert pool.submit(current_deadline).result() is None
            # ...unless the caller's context is carried explicitly.
            assert pool.submit(ctx.run, current_deadline).result() == b.deadline


def test_stage_split_fixed_and_shares():
    plan = StagePlan.split(
        150, [StageSpec("features", share=0.2), StageSpec("score", fixed_ms=60), StageSpec("explain", share=0.4)]
    )
    assert plan.nominal_ms == pytest.approx((30, 60, 60))
    wf = Budget.begin(0.0, 150)
    assert plan.budget_for("features", wf, 0.0).total_ms == pytest.approx(30)


def test_stage_split_rejects_overflow_and_bad_specs():
    with pytest.raises(ValueError, match="more than"):
        StagePlan.split(100, [StageSpec("a", share=0.7), StageSpec("b", fixed_ms=40)])
    with pytest.raises(ValueError, match="exactly one"):
        StageSpec("a")
    with pytest.raises(ValueError, match="exactly one"):
        StageSpec("a", share=0.5, fixed_ms=10)
    with pytest.raises(ValueError, match="share"):
        StageSpec("a", share=1.5)
    with pytest.raises(ValueError, match="duplicate"):
        StagePlan.split(100, [StageSpec("a", share=0.1), StageSpec("a", share=0.1)])
    plan = StagePlan.split(100, [StageSpec("a", share=0.5), StageSpec("b", share=0.5)])
    with pytest.raises(ValueError, match="unknown stage"):
        plan.index("c")


def test_slack_is_passed_on_to_later_stages():
    plan = StagePlan.split(
        150, [StageSpec("features", share=0.2), StageSpec("score", share=0.4), StageSpec("explain", share=0.4)]
    )
    wf = Budget.begin(0.0, 150)
    # features finished after 10 ms instead of 30: score gets half of the 140 ms left, not 60.
    score = plan.budget_for("score", wf, 0.010)
    assert score.total_ms == pytest.approx(70)
    # score overran to t=110 ms: explain (the last stage) gets all 40 ms left.
    assert plan.budget_for("explain", wf, 0.110).total_ms == pytest.approx(40)
    # after the workflow deadline every stage is exhausted.
    assert plan.budget_for("score", wf, 0.2).exhausted(0.2)


@settings(max_examples=300)
@given(
    total=st.floats(min_value=1, max_value=1e5),
    shares=st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=1, max_size=6),
    used=st.lists(st.floats(min_value=0, max_value=2.0), min_size=6, max_size=6),
)
def test_stage_budgets_never_pass_the_workflow_deadline(total, shares, used):
    s = sum(shares)
    specs = [StageSpec(f"s{i}", share=x / s * 0.999) for i, x in enumerate(shares)]
    plan = StagePlan.split(total, specs)
    assert sum(plan.nominal_ms) <= total * (1 + 1e-9)
    wf = Budget.begin(0.0, total)
    now = 0.0
    for i in range(len(specs)):
        b = plan.budget_for(i, wf, now)
        assert b.deadline.at <= wf.deadline.at
        # a stage that starts on time (no earlier overrun) gets at least its nominal budget
        if now * 1000 <= sum(plan.nominal_ms[:i]) + 1e-6:
            assert b.total_ms >= plan.nominal_ms[i] * (1 - 1e-9) - 1e-9
        now += plan.nominal_ms[i] * used[i] / 1000.0
    last = plan.budget_for(len(specs) - 1, wf, now)
    assert last.deadline == wf.deadline


def test_budget_module_is_pure():
    code = (
        "import sys, agentic_ray._budget, agentic_ray.policies.types; "
        "bad = {'ray', 'asyncio'} & set(sys.modules); print(sorted(bad)); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# -- the one stage-budget rule ----------------------------------------------------------------------------
def test_stage_share_and_remaining_at():
    from agentic_ray._budget import StagePlan, StageSpec

    plan = StagePlan.split(1200, [StageSpec("retrieve", share=0.25), StageSpec("rerank", fixed_ms=100),
                                  StageSpec("generate", share=0.6)])  # fmt: skip
    assert plan.nominal_ms == (300.0, 100.0, 720.0)
    assert plan.share("retrieve") == pytest.approx(300 / 1120) and plan.share("generate") == 1.0
    assert plan.remaining_at("rerank") == 900.0 and plan.remaining_at(0) == 1200.0


def test_stage_deadline_passes_slack_on_and_never_passes_the_run():
    from agentic_ray._budget import stage_deadline

    # a run with 100 ms left; a stage with share 0.5 that starts now gets 50 ms
    assert stage_deadline(10.1, 0.5, 10.0) == pytest.approx(10.05)
    # started later (earlier stages were slow): half of what is left, still inside the run
    assert stage_deadline(10.1, 0.5, 10.08) == pytest.approx(10.09)
    assert stage_deadline(10.1, 1.0, 10.0) == pytest.approx(10.1)  # the last stage: all of it
    assert stage_deadline(10.1, 0.5, 10.2) == 10.1  # run over: its deadline, already passed


def test_deadline_after_takes_the_earliest_cap():
    from agentic_ray._budget import Deadline, deadline_after

    assert deadline_after(10.0, 150) == pytest.approx(10.15)
    assert deadline_after(10.0, 150, 10.1, None) == pytest.approx(10.1)
    assert deadline_after(10.0, 150, Deadline(10.12), 10.2) == pytest.approx(10.12)


def test_workflow_scope_is_current_and_narrows_the_deadline():
    from agentic_ray._budget import current_deadline, current_workflow, workflow_scope

    assert current_workflow() is None
    with workflow_scope("fraud", 20.0) as run:
        assert current_workflow() == run and run.name == "fraud"
        assert current_deadline().at == 20.0
    assert current_workflow() is None
