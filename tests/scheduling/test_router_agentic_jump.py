"""The agentic router's jumping-ahead term: more urgent work sent to a replica stretches a queued wait.

Scenario of ``benchmarks/results/serve_live_agreement.yaml`` in miniature: a cheap single-slot CPU
replica (120 ms) kept busy by standard work, and a 2-slot GPU replica (20 ms). Manual clock, no sleeps.
"""

from __future__ import annotations

import math
import random

import pytest

from agentic_ray.policies.types import NodeAttrs
from agentic_ray.scheduling import ReplicaView, Route, Shed, create_router

from .conftest import CLASSES, req

CPU = NodeAttrs(node_id="n1", zone="eu", accelerator="cpu")
GPU = NodeAttrs(node_id="n2", zone="us", accelerator="gpu")
CPU_ONLY = lambda attrs: attrs.accelerator == "cpu"  # noqa: E731


def views(cpu_ongoing: int, cpu_queued: dict[int, int] | None = None) -> list[ReplicaView]:
    return [
        ReplicaView("cpu", CPU, slots=1, max_ongoing=42, ongoing=cpu_ongoing, service_ms={"default": 120.0}, cost=1.0),
        ReplicaView("gpu", GPU, slots=2, max_ongoing=42, ongoing=0, service_ms={"default": 20.0}, cost=2.0),
    ]


def router(**kw):
    kw.setdefault("residual", False)
    return create_router("agentic", random.Random(0), classes=CLASSES, **kw)


def send(r, qos: str, replica_id: str, rate_per_s: float, seconds: float, start: float = 0.0) -> float:
    """Dispatch ``qos`` requests to ``replica_id`` every 1/rate s for ``seconds``, each answered at once
    in 120 ms (the pending count stays 0, the mean stays 120 ms). Returns the time of the last one."""
    n = round(rate_per_s * seconds)
    t = start
    for i in range(n):
        t = start + i / rate_per_s
        q = req(qos, now=t)
        r.on_dispatch(q, replica_id, t)
        r.observe(q, replica_id, 120.0, 122.0, True, t)
    return t


def decayed_rate(rate_per_s: float, seconds: float, tau: float = 1.0) -> float:
    n = round(rate_per_s * seconds)
    return sum(math.exp(-(j / rate_per_s) / tau) for j in range(n)) / tau


def test_sheddable_leaves_a_cpu_replica_that_standard_work_keeps_busy():
    # 8 standard requests/s to the CPU (rho_h ~ 0.88): a sheddable request behind 4 there would wait
    # 480 ms by the queue of the moment but ~4 s once later standard requests jump ahead of it.
    for window in (None, 1.0):
        r = router(deviation_k=0.0, arrival_window_s=window)
        now = send(r, "standard", "cpu", 8.0, 2.0)
        d = r.choose(req("sheddable", now=now, budget_ms=2000), views(cpu_ongoing=4), now)
        assert isinstance(d, Route) and d.reason == "meets_budget"
        assert d.replica_id == ("cpu" if window is None else "gpu")


def test_cpu_prediction_is_the_busy_period_of_the_present_queue():
    r = router(deviation_k=0.0)
    now = send(r, "standard", "cpu", 8.0, 2.0)
    rho = decayed_rate(8.0, 2.0) * 120.0 / 1000.0
    assert r.urgent_load("cpu", 2, 120.0, 1, now) == pytest.approx(rho)
    # 500 ms: the present queue (600 ms) misses too, so it is shed with the stretched prediction
    d = r.choose(req("sheddable", now=now, budget_ms=500, allows=CPU_ONLY), views(cpu_ongoing=4), now)
    assert isinstance(d, Shed) and d.reason == "cannot_meet_deadline"
    assert d.predicted_ms == pytest.approx(4 * 120.0 / (1.0 - rho) + 120.0)


def test_routed_on_the_present_queue_when_nothing_meets_with_overtaking():
    # A burst of urgent work may end while the request waits: it is shed only when even the queue of
    # the moment misses, and then goes to the cheapest replica that meets with that queue.
    r = router(deviation_k=0.0)
    now = send(r, "standard", "cpu", 8.0, 2.0)
    now = send(r, "standard", "gpu", 80.0, 2.0, start=now - 2.0)  # rho_h ~ 0.7 per GPU slot
    gpu_busy = views(cpu_ongoing=4)
    gpu_busy[1] = ReplicaView("gpu", GPU, slots=2, max_ongoing=42, ongoing=40, service_ms={"default": 20.0}, cost=2.0)
    d = r.choose(req("sheddable", now=now, budget_ms=1000), gpu_busy, now)
    assert isinstance(d, Route) and d.reason == "meets_present_queue"
    assert d.replica_id == "cpu" and d.predicted_ms == pytest.approx(5 * 120.0)


def test_deviation_k_adds_room_for_a_long_busy_period():
    now = 0.0
    preds = []
    for k in (0.0, 2.0):
        r = router(deviation_k=k)
        now = send(r, "standard", "cpu", 3.0, 2.0)
        d = r.choose(req("sheddable", now=now, budget_ms=60_000, allows=CPU_ONLY), views(cpu_ongoing=2), now)
        preds.append(d.predicted_ms)
    rho = decayed_rate(3.0, 2.0) * 0.12
    assert preds[0] == pytest.approx(2 * 120.0 / (1 - rho) + 120.0)
    assert preds[1] > preds[0]


def test_only_more_urgent_work_counts():
    r = router(deviation_k=0.0)
    now = send(r, "sheddable", "cpu", 8.0, 2.0)  # less urgent than standard: never jumps ahead of it
    d = r.choose(req("standard", now=now, budget_ms=1000), views(cpu_ongoing=2, cpu_queued=None), now)
    assert isinstance(d, Route) and d.replica_id == "cpu" and d.predicted_ms == pytest.approx(3 * 120.0)
    assert r.urgent_load("cpu", 1, 120.0, 1, now) == 0.0
    assert r.urgent_load("cpu", 3, 120.0, 1, now) > 0.0


def test_a_free_replica_is_not_stretched():
    # The request starts at once (non-preemptive gate): later urgent arrivals cannot delay it.
    r = router(deviation_k=0.0)
    now = send(r, "standard", "cpu", 8.0, 2.0)
    d = r.choose(req("sheddable", now=now, budget_ms=2000), views(cpu_ongoing=0), now)
    assert isinstance(d, Route) and d.replica_id == "cpu" and d.predicted_ms == pytest.approx(120.0)


def test_saturated_by_urgent_work_never_meets_and_sheds_when_nothing_else_is_allowed():
    r = router(deviation_k=0.0)
    now = send(r, "standard", "cpu", 12.0, 3.0)  # rho_h ~ 1.4
    d = r.choose(req("sheddable", now=now, budget_ms=200, allows=CPU_ONLY), views(cpu_ongoing=1), now)
    assert isinstance(d, Shed) and d.reason == "cannot_meet_deadline" and d.predicted_ms == math.inf
    assert d.retry_after_s == 1.0  # one rate window: the urgent rate decays meanwhile
    d = r.choose(req("sheddable", now=now, budget_ms=60_000), views(cpu_ongoing=1), now)
    assert isinstance(d, Route) and d.replica_id == "gpu"  # falls through to the replica that meets it


def test_rates_decay_and_the_cheap_replica_comes_back():
    r = router(deviation_k=0.0)
    now = send(r, "standard", "cpu", 8.0, 2.0)
    later = now + 10.0  # 10 time constants without standard work: rho_h ~ 0.88 * e^-10
    assert r.urgent_load("cpu", 2, 120.0, 1, later) == pytest.approx(decayed_rate(8.0, 2.0) * 0.12 * math.exp(-10))
    d = r.choose(req("sheddable", now=later, budget_ms=2000), views(cpu_ongoing=4), later)
    assert isinstance(d, Route) and d.replica_id == "cpu"


def test_critical_work_is_not_stretched():
    r = router(deviation_k=0.0)
    now = send(r, "standard", "cpu", 8.0, 2.0)
    assert r.urgent_load("cpu", 0, 120.0, 1, now) == 0.0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_arrival_window(bad):
    with pytest.raises(ValueError, match="arrival_window_s"):
        router(arrival_window_s=bad)


def test_rates_survive_an_epoch_move_after_a_long_run():
    # Rates are kept scaled to an epoch that moves every 200 time constants: after 500 s the old burst
    # has vanished and the new one reads as if it were the only one (no overflow, same prediction).
    r = router(deviation_k=0.0)
    send(r, "standard", "cpu", 8.0, 2.0)
    now = send(r, "standard", "cpu", 8.0, 2.0, start=500.0)
    rho = decayed_rate(8.0, 2.0) * 0.12
    assert r.urgent_load("cpu", 2, 120.0, 1, now) == pytest.approx(rho)
    d = r.choose(req("sheddable", now=now, budget_ms=500, allows=CPU_ONLY), views(cpu_ongoing=4), now)
    assert isinstance(d, Shed) and d.predicted_ms == pytest.approx(4 * 120.0 / (1.0 - rho) + 120.0)


def test_a_priority_level_first_seen_later_counts_earlier_dispatches():
    # Critical work dispatched before any standard request was seen still stretches a standard wait.
    r = router(deviation_k=0.0)
    now = send(r, "critical", "cpu", 4.0, 2.0)
    rho = decayed_rate(4.0, 2.0) * 0.12
    d = r.choose(req("standard", now=now, budget_ms=250, allows=CPU_ONLY), views(cpu_ongoing=1), now)
    assert isinstance(d, Shed) and d.predicted_ms == pytest.approx(120.0 / (1.0 - rho) + 120.0)
    # a new level (sheddable) first seen at dispatch, then more standard work: the cached sums stay right
    send(r, "sheddable", "cpu", 4.0, 1.0, start=now)
    later = send(r, "standard", "cpu", 4.0, 1.0, start=now + 1.0)
    assert r.urgent_load("cpu", 2, 120.0, 1, later) > r.urgent_load("cpu", 1, 120.0, 1, later) > 0.0
    for qos, prio in (("standard", 1), ("sheddable", 2)):
        d = r.choose(req(qos, now=later, budget_ms=250, allows=CPU_ONLY), views(cpu_ongoing=1), later)
        rho = r.urgent_load("cpu", prio, 120.0, 1, later)
        assert isinstance(d, Shed) and d.predicted_ms == pytest.approx(120.0 / (1.0 - rho) + 120.0)
