"""Probing stale replicas (``AgenticRouter``'s ``probe_after_s``) and time-weighted estimates
(``ServiceTable``'s ``tau_s``), on a manual clock with hand-checked figures."""

from __future__ import annotations

import math
import random

import pytest

from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling import ReplicaView, Route, create_router
from agentic_ray.scheduling.service_table import ServiceTable

from .conftest import CLASSES, req

CPU = NodeAttrs(node_id="n1", zone="eu", accelerator="cpu")


def _views(a_ongoing: int = 0, b_ongoing: int = 0, b_cost: float = 1.0) -> list[ReplicaView]:
    return [ReplicaView("A", CPU, slots=1, ongoing=a_ongoing, cost=1.0),
            ReplicaView("B", CPU, slots=1, ongoing=b_ongoing, cost=b_cost)]  # fmt: skip


def _router(**kw):
    # predictions are the mean alone (no deviation term, no head-of-line ages, no overtaking)
    kw = {"deviation_k": 0.0, "residual": False, "arrival_window_s": None, "probe_after_s": 5.0} | kw
    r = create_router("agentic", random.Random(0), classes=CLASSES, **kw)
    for i in range(11):
        r.observe_service("A", "default", 20.0, i / 10)  # A: 20 ms, answering all along
    r.observe_service("B", "default", 300.0, 0.0)  # B: one slow first answer (a cold start), then silence
    return r


def _decide(r, now: float, qos: str = "sheddable", **views) -> Route:
    d = r.choose(req(qos, now=now), _views(**views), now)
    assert isinstance(d, Route), d
    if d.replica_id == "A":
        r.observe_service("A", "default", 20.0, now)  # A keeps answering
    return d


def test_without_probing_a_replica_with_one_slow_first_answer_never_gets_work_again():
    r = _router(probe_after_s=None)
    for t in range(60):  # idle or busy, A (20 ms, or 40 behind one) always beats B (300 ms)
        assert _decide(r, t + 0.5, a_ongoing=t % 2).replica_id == "A"
    assert r.service_ms(_views()[1], "default") == 300.0


def test_a_silent_idle_replica_is_probed_and_one_answer_re_measures_it():
    r = _router()  # probe_after_s 5 (opt-in): time constant 2.5 s
    picks = [_decide(r, t + 0.5) for t in range(5)]  # 0.5 .. 4.5: B silent for less than 5 s
    assert [d.replica_id for d in picks] == ["A"] * 5
    probe = _decide(r, 5.5)
    assert probe.replica_id == "B" and probe.reason == "probe_stale" and probe.predicted_ms == 300.0
    assert _decide(r, 6.5).replica_id == "A"  # one probe at a time: B has not answered it yet
    r.observe_service("B", "default", 20.0, 6.5)  # its answer weighs 1 - exp(-6.5 / 2.5) = 0.926
    m1 = 300.0 - (1 - math.exp(-2.6)) * 280.0
    assert r.service_ms(_views()[1], "default") == pytest.approx(m1)
    # B is now ~40.8 ms: still behind an idle A; B is probed again 5 s after its answer, then measured
    assert [_decide(r, t + 0.5).replica_id for t in range(7, 11)] == ["A"] * 4
    assert _decide(r, 11.6).reason == "probe_stale"
    r.observe_service("B", "default", 20.0, 11.6)  # 40.8 -> 22.7 (weight 1 - exp(-5.1 / 2.5) = 0.87)
    assert r.service_ms(_views()[1], "default") == pytest.approx(m1 - (1 - math.exp(-5.1 / 2.5)) * (m1 - 20.0))
    assert _decide(r, 12.5, a_ongoing=1).replica_id == "B"  # a busy A (40 ms) now loses to an idle B


@pytest.mark.parametrize(
    ("qos", "budget_ms", "views", "why"),
    [("critical", None, {}, "urgent work is never a probe"),
     ("sheddable", None, {"b_ongoing": 1}, "a busy replica is not probed"),
     ("sheddable", None, {"b_cost": 10.0}, "a dearer replica is not probed"),
     ("sheddable", 250.0, {}, "a probe must meet the request's budget (B predicts 300 ms)")],
)  # fmt: skip
def test_what_is_never_probed(qos, budget_ms, views, why):
    r = _router()
    d = r.choose(req(qos, now=8.0, budget_ms=budget_ms), _views(**views), 8.0)
    assert isinstance(d, Route) and d.replica_id == "A" and d.reason != "probe_stale", why


def test_probing_is_off_by_default():
    r = create_router("agentic", random.Random(0), classes=CLASSES)
    assert r.probe_after_s is None and r.table.tau_s is None


def test_probe_after_s_is_checked():
    with pytest.raises(ValueError, match="probe_after_s"):
        create_router("agentic", random.Random(0), classes=CLASSES, probe_after_s=0)
    with pytest.raises(ValueError, match="tau_s"):
        ServiceTable(tau_s=math.inf)


def test_a_sample_after_a_gap_weighs_by_the_gap_and_is_not_clipped():
    table = ServiceTable(alpha=0.05, beta=0.25, k=2.0, tau_s=2.5)
    table.observe("r", "m", 100.0, 0.0)
    table.observe("r", "m", 120.0, 0.01)  # a 10 ms gap: 1 - exp(-0.004) < alpha, so alpha: 100 + 1
    assert table.mean("r", "m") == pytest.approx(101.0)
    table.observe("r", "m", 141.0, 4.0)  # 4 s: under 2 x tau_s, so alpha still (samples come in batches)
    assert table.mean("r", "m") == pytest.approx(103.0)
    table.observe("r", "m", 20.0, 14.0)  # 10 s: weight 1 - exp(-4) = 0.9817
    assert table.mean("r", "m") == pytest.approx(103.0 - (1 - math.exp(-4.0)) * 83.0)
    table.observe("r", "m", 1000.0, 44.0)  # not clipped at 8x the mean after a long gap
    assert table.mean("r", "m") > 900.0
    plain = ServiceTable(alpha=0.05, beta=0.25, k=2.0)  # without tau_s: alpha always, outliers clipped
    plain.observe("r", "m", 100.0, 0.0)
    plain.observe("r", "m", 20.0, 10.0)
    assert plain.mean("r", "m") == pytest.approx(96.0)
    plain.observe("r", "m", 10_000.0, 40.0)
    assert plain.mean("r", "m") == pytest.approx(96.0 + 0.05 * (8 * 96.0 - 96.0))
