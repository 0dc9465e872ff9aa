"""Invariants of the AdmissionGate under random operation sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.admission import AdmissionGate, Enqueued, Reject, Start
from agentic_ray.scheduling.types import Request

CLASSES = {
    "critical": QosClass("critical", 0, 300, shedding=Shedding.NEVER, queue_bound=3),
    "standard": QosClass("standard", 1, 600, queue_bound=4),
    "sheddable": QosClass("sheddable", 2, 900, shedding=Shedding.FIRST, queue_bound=5),
}

op = st.one_of(
    st.tuples(st.just("offer"), st.sampled_from(sorted(CLASSES)), st.integers(10, 1000)),
    st.tuples(st.just("finish"), st.integers(0, 50), st.integers(1, 200)),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("tick"), st.integers(0, 300), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(slots=st.integers(1, 3), ops=st.lists(op, max_size=80))
def test_every_request_ends_once_and_order_holds(slots, ops):
    gate = AdmissionGate(slots, CLASSES)
    now = 0.0
    next_id = 0
    requests: dict[int, Request] = {}
    outcome: dict[int, str] = {}  # id -> started | queued | rejected | dropped | evicted | cancelled

    def settle(dropped=(), evicted=(), started=()):
        for d in dropped:
            assert outcome[d.request_id] == "queued"
            outcome[d.request_id] = "dropped"
        for d in evicted:
            assert outcome[d.request_id] == "queued"
            outcome[d.request_id] = "evicted"
        for s in started:
            assert outcome[s.request_id] == "queued"
            outcome[s.request_id] = "started"

    for kind, a, b in ops:
        if kind == "offer":
            r = Request(next_id, a, CLASSES[a].priority, now, now + b / 1000.0, shedding=CLASSES[a].shedding)
            next_id += 1
            requests[r.id] = r
            outcome[r.id] = "queued"
            res = gate.offer(r, now)
            settle(res.dropped, getattr(res, "evicted", ()))
            if isinstance(res, Start):
                outcome[r.id] = "started"
            elif isinstance(res, Reject):
                outcome[r.id] = "rejected"
            else:
                assert isinstance(res, Enqueued)
        elif kind == "finish":
            executing = [i for i, o in outcome.items() if o == "started"]
            if executing:
                rid = executing[a % len(executing)]
                res = gate.finish(rid, now, service_ms=float(b))
                outcome[rid] = "finished"
                settle(res.dropped, (), res.started)
                # started work is the most urgent of what was waiting: nothing more urgent is still queued
                waiting = [requests[i] for i, o in outcome.items() if o == "queued"]
                for s in res.started:
                    assert gate.is_executing(s.request_id)
                    started = requests[s.request_id]
                    key = (started.priority, started.deadline)
                    assert all((w.priority, w.deadline) >= key for w in waiting)
                assert gate.finish(rid, now).started == ()
        elif kind == "cancel":
            queued = [i for i, o in outcome.items() if o == "queued"]
            if queued:
                rid = queued[a % len(queued)]
                assert gate.cancel(rid)
                outcome[rid] = "cancelled"
        else:
            now += a / 1000.0
            settle(gate.expire(now))
        snap = gate.snapshot()
        assert snap.executing == sum(o == "started" for o in outcome.values()) <= slots
        assert snap.queued == sum(o == "queued" for o in outcome.values())
        if snap.queued:
            assert snap.executing == slots  # work never waits beside a free slot
        for name, n in snap.queued_by_class.items():
            extra = snap.evicted_total if name == "critical" else 0  # never-shed may displace sheddable
            assert n <= CLASSES[name].queue_bound + extra
