"""Tenant share caps in the AdmissionGate (pure, manual time)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agentic_ray.errors import Overloaded
from agentic_ray.policies.types import QosClass
from agentic_ray.scheduling.admission import AdmissionGate, Enqueued, Reject, Start

from .conftest import CLASSES, req


def _fill(gate, tenant, n, qos="standard", now=0.0):
    return [gate.offer(req(qos, tenant=tenant, now=now), now) for _ in range(n)]


def test_a_tenant_over_its_share_is_refused_while_others_wait():
    gate = AdmissionGate(1, CLASSES, tenant_shares={"acme": 0.5})
    first, *rest = _fill(gate, "acme", 5)
    assert isinstance(first, Start) and all(isinstance(r, Enqueued) for r in rest)  # alone: work-conserving
    assert isinstance(gate.offer(req("standard", tenant="bolt"), 0.0), Enqueued)
    res = gate.offer(req("standard", tenant="acme"), 0.0)  # holds 5 of 7 positions > floor(0.5 * 7)
    assert isinstance(res, Reject) and isinstance(res.error, Overloaded)
    assert res.error.reason == "tenant_share" and res.error.retry_after_s is not None
    assert isinstance(gate.offer(req("standard", tenant="bolt"), 0.0), Enqueued)  # bolt has no cap


def test_share_leaves_room_for_the_capped_tenant_up_to_its_share():
    gate = AdmissionGate(2, CLASSES, tenant_shares={"acme": 0.5, "bolt": 0.5})
    _fill(gate, "bolt", 6)  # 2 executing + 4 queued, nobody else waiting: allowed
    outcomes = [gate.offer(req("standard", tenant="acme"), 0.0) for _ in range(8)]
    # acme is admitted until it holds half of the occupied positions (6 of 12), then refused
    assert [isinstance(o, Enqueued) for o in outcomes] == [True] * 6 + [False] * 2
    # bolt now holds 6 of 12 with acme waiting: one more would pass its half
    assert isinstance(gate.offer(req("standard", tenant="bolt"), 0.0), Reject)


def test_never_shed_work_is_not_refused_for_its_tenant_share():
    gate = AdmissionGate(1, CLASSES, tenant_shares={"acme": 0.2})
    _fill(gate, "acme", 3)
    gate.offer(req("standard", tenant="bolt"), 0.0)
    assert isinstance(gate.offer(req("sheddable", tenant="acme"), 0.0), Reject)
    assert isinstance(gate.offer(req("critical", tenant="acme"), 0.0), Enqueued)


def test_no_shares_no_tenant_caps_nothing():
    gate = AdmissionGate(1, CLASSES)
    _fill(gate, "acme", 10)
    gate.offer(req("standard", tenant="bolt"), 0.0)
    assert isinstance(gate.offer(req("standard", tenant="acme"), 0.0), Enqueued)
    gate = AdmissionGate(1, CLASSES, tenant_shares={"acme": 0.1})
    _fill(gate, None, 5)
    assert isinstance(gate.offer(req("standard"), 0.0), Enqueued)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "half", True])
def test_bad_share_is_refused(bad):
    with pytest.raises(ValueError, match=r"tenant_shares\.acme"):
        AdmissionGate(1, CLASSES, tenant_shares={"acme": bad})


def test_tenant_bookkeeping_stays_exact_under_random_operations():
    rng = random.Random(11)
    classes = {k: QosClass(v.name, v.priority, v.budget_ms, v.shedding, queue_bound=4) for k, v in CLASSES.items()}
    gate = AdmissionGate(2, classes, tenant_shares={"a": 0.4, "b": 0.6})
    now = 0.0
    executing: set = set()
    tenants: dict = {}
    for _ in range(3000):
        op = rng.random()
        if op < 0.55:
            qos = rng.choice(sorted(classes))
            r = req(qos, tenant=rng.choice(["a", "b", "c", None]), now=now, budget_ms=rng.uniform(5, 400))
            tenants[r.id] = r.tenant
            res = gate.offer(r, now)
            if isinstance(res, Start):
                executing.add(r.id)
        elif op < 0.9 and executing:
            rid = rng.choice(sorted(executing))
            res = gate.finish(rid, now, service_ms=rng.uniform(1, 50))
            executing.discard(rid)
            executing.update(s.request_id for s in res.started)
        else:
            now += rng.uniform(0, 0.2)
            gate.expire(now)
        held = Counter(tenants[i] for i in list(gate._executing) + list(gate._queued))
        queued = Counter(tenants[i] for i in gate._queued)
        assert {k: v for k, v in gate._held_by_tenant.items() if v} == dict(held)
        assert {k: v for k, v in gate._queued_by_tenant.items() if v} == dict(queued)
        assert set(gate._executing) == executing
