"""RoutingState avoidance (the control plane's avoid_replica / avoid_node actions), on a manual clock:
weight 0 keeps the replica out, a weight lets it in that share of decisions, and placement wins."""

from __future__ import annotations

import random

import pytest

from agentic_ray.scheduling.registry import create_router
from agentic_ray.scheduling.reports import ReplicaMetadata, RoutingStats
from agentic_ray.scheduling.routing_state import ReplicaReport, RoutingState
from agentic_ray.scheduling.types import Route
from tests.scheduling.conftest import CLASSES, req


def fleet(*nodes: str) -> RoutingState:
    st = RoutingState(create_router("agentic", random.Random(0), classes=CLASSES))
    reports = [
        ReplicaReport(
            f"r{i}",
            ReplicaMetadata(
                zone="eu-west" if i else "us-east", slots=4, service_ms={"default": 5.0 if i == 0 else 10.0}
            ),
            RoutingStats(),
            64,
            node,
        )
        for i, node in enumerate(nodes)
    ]
    st.update_replicas(reports, 0.0)
    return st


def routes(st: RoutingState, n: int, **kw) -> list[str]:
    out = []
    for k in range(n):
        key = ("k", k, kw.get("qos", "critical"))
        assert st.admit(key, req(kw.pop("qos", "critical"), now=0.0, **kw), 0.0) is None
        d = st.decide(key, 0.0)
        assert isinstance(d, Route)
        out.append(d.replica_id)
        st.completed(key, 0.0)
    return out


def test_weight_zero_keeps_the_replica_out_and_lifting_it_brings_it_back():
    st = fleet("a", "b", "c")
    assert set(routes(st, 6)) == {"r0"}  # the fastest replica takes critical work
    st.set_avoid({"r0": 0.0}, {})
    assert st.avoiding and "r0" not in routes(st, 6)
    st.set_avoid({}, {})
    assert set(routes(st, 6)) == {"r0"}


def test_a_weight_lets_the_replica_in_that_share_of_decisions():
    st = fleet("a", "b", "c")
    st.set_avoid({"r0": 0.25}, {})
    assert routes(st, 8).count("r0") == 2


def test_avoid_node_avoids_its_replicas():
    st = fleet("a", "b", "c")
    st.set_avoid({}, {"a": 0.0})
    assert "r0" not in routes(st, 6)


def test_placement_wins_over_avoidance():
    st = fleet("a", "b", "c")
    st.set_avoid({"r0": 0.0}, {})
    us_only = lambda attrs: attrs.zone == "us-east"  # noqa: E731  (r0 is the only us-east replica)
    assert routes(st, 3, allows=us_only) == ["r0", "r0", "r0"]


def test_a_bad_weight_is_refused():
    with pytest.raises(ValueError, match=r"avoid replicas\['r0'\]: weight must be in \[0, 1\)"):
        fleet("a").set_avoid({"r0": 1.5}, {})
