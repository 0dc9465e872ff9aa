"""ZoneState: registrations, exact merging of deltas, stale nodes, forwarding."""

from __future__ import annotations

import pytest

from agentic_ray.control import AgentReport, ZoneState
from tests.control._fixtures import snapshot, summary


def test_reports_register_agents_and_merge_deltas_exactly():
    zone = ZoneState("eu-west", stale_after_s=5.0)
    a = summary("critical", "fraud", [5.0] * 3)
    b = summary("critical", "fraud", [50.0] * 2, late=1)
    assert zone.on_report(AgentReport(snapshot("n1", incarnation="i1"), {a.key: a}), now=1.0)
    assert zone.on_report(AgentReport(snapshot("n2", incarnation="j1"), {b.key: b}), now=1.1)
    assert not zone.on_report(AgentReport(snapshot("n1", incarnation="i1")), now=1.2)  # same incarnation
    assert zone.on_report(AgentReport(snapshot("n1", incarnation="i2")), now=1.3)  # restarted agent
    merged = zone.delta[a.key]
    assert (merged.count, merged.missed, merged.latency.count) == (6, 1, 6)
    assert (a.count, a.latency.count) == (3, 3), "the sender's summary is not merged into"
    out = zone.take_forward(now=2.0)
    assert set(out.nodes) == {"n1", "n2"} and out.nodes["n1"].incarnation == "i2"
    assert out.registrations == {"n1": ("i1", "i2"), "n2": ("j1",)}
    assert out.summaries[a.key].count == 6
    assert zone.take_forward(now=2.1).summaries == {}, "the delta starts again after a forward"


def test_stale_and_forgotten_nodes_leave_the_forward():
    zone = ZoneState("eu-west", stale_after_s=5.0)
    zone.on_report(AgentReport(snapshot("n1")), now=0.0)
    zone.on_report(AgentReport(snapshot("n2")), now=4.0)
    assert set(zone.take_forward(now=5.0).nodes) == {"n1", "n2"}
    assert set(zone.take_forward(now=5.5).nodes) == {"n2"}  # n1 silent for more than 5 s
    assert zone.agents(now=6.0) == {"n2": {"age_s": 2.0, "incarnation": "inc-n2", "registrations": 1, "inflight": 0}}
    zone.forget("n2")
    assert zone.take_forward(now=6.0).nodes == {}
    assert zone.registrations["n2"] == ["inc-n2"], "registrations are history"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="stale_after_s"):
        ZoneState("z", stale_after_s=0)
