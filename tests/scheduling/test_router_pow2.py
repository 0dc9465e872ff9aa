from __future__ import annotations

import random
from collections import Counter

from agentic_ray.scheduling import ReplicaView, Route, Wait, create_router

from .conftest import req


def test_never_exceeds_max_ongoing_and_waits_when_full():
    r = create_router("pow2", random.Random(3))
    views = [ReplicaView(f"r{i}", max_ongoing=2) for i in range(4)]
    routed = 0
    for _ in range(20):
        d = r.choose(req(), views, 0.0)
        if isinstance(d, Wait):
            break
        view = next(v for v in views if v.replica_id == d.replica_id)
        assert view.ongoing < view.max_ongoing
        view.ongoing += 1
        routed += 1
    assert routed == 8
    assert all(v.ongoing == 2 for v in views)
    assert isinstance(r.choose(req(), views, 0.0), Wait)


def test_picks_shorter_of_two():
    r = create_router("pow2", random.Random(1))
    views = [ReplicaView("busy", ongoing=5), ReplicaView("idle", ongoing=0)]
    assert all(r.choose(req(), views, 0.0).replica_id == "idle" for _ in range(20))


def test_samples_spread_and_ignore_deadlines_and_placement():
    r = create_router("pow2", random.Random(7))
    views = [ReplicaView(f"r{i}") for i in range(8)]
    nowhere = req(allows=lambda a: False, deadline=-1.0)
    counts = Counter(r.choose(nowhere, views, 0.0).replica_id for _ in range(800))
    assert set(counts) == {v.replica_id for v in views}
    placed = create_router("pow2", random.Random(7), respect_placement=True)
    d = placed.choose(req(allows=lambda a: False), views, 0.0)
    assert d.reason == "no_eligible_replica"


def test_same_seed_same_choices():
    views = [ReplicaView(f"r{i}", ongoing=i % 3) for i in range(10)]
    a = create_router("pow2", random.Random(11))
    b = create_router("pow2", random.Random(11))
    assert [a.choose(req(), views, 0.0) for _ in range(50)] == [b.choose(req(), views, 0.0) for _ in range(50)]
    assert isinstance(a.choose(req(), views, 0.0), Route)
    assert a.replica_discipline == "fifo"
