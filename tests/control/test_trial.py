"""Canary and shadow trials, pure: deterministic choice that keeps a baseline in every zone and
deployment, residency changes refused, the judge's verdicts on hand-made windows."""

from __future__ import annotations

import pytest

from agentic_ray.control._replica_window import WindowStats
from agentic_ray.control._summary import LatencyHistogram
from agentic_ray.control._trial import (
    CanarySettings,
    ShadowCounts,
    canary_nodes,
    canary_replicas,
    check_fraction,
    judge,
    placement_changes,
)
from tests.control._fixtures import fraud_policy


def stats(count: int, bad: int, latency_ms: float = 20.0) -> WindowStats:
    hist = LatencyHistogram()
    hist.record(latency_ms, max(1, count - bad))
    return WindowStats(count=count, bad=bad, latency=hist)


def test_canary_nodes_are_deterministic_and_every_zone_keeps_a_baseline_node():
    nodes = {"a": "eu", "b": "eu", "c": "eu", "d": "eu", "e": "us"}
    picked = canary_nodes(nodes, 0.5, "sha1")
    assert picked == canary_nodes(dict(reversed(list(nodes.items()))), 0.5, "sha1")
    assert len(picked) == 2 and "e" not in picked  # us has one node: it stays on the baseline
    assert canary_nodes(nodes, 0.99, "sha1") != () and len(canary_nodes(nodes, 0.99, "sha1")) == 3
    assert canary_nodes({"a": "eu", "b": "us"}, 0.5, "x") == ()


def test_canary_replicas_per_deployment_and_zone_never_all_of_a_group():
    reps = {f"r{i}": ("app/M", "eu", f"n{i % 2}") for i in range(4)} | {"u0": ("app/M", "us", "n9")}
    picked = canary_replicas(reps, "sha", 0.2)
    assert len(picked) == 1 and picked[0].startswith("r")  # round(0.8) = 1 of eu's 4, none of us's 1
    on_node = canary_replicas(reps, "sha", None, nodes=["n0", "n9"])
    assert set(on_node) == {"r0", "r2"}  # u0 is its group's last replica
    on_all = canary_replicas(reps, "sha", None, nodes=["n0", "n1"])
    assert len(on_all) == 3


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, "0.2", True, float("nan")])
def test_a_fraction_outside_0_1_is_a_value_error(bad):
    with pytest.raises(ValueError, match="canary: must be a fraction in \\(0, 1\\)"):
        check_fraction(bad)


def test_a_canary_may_not_change_residency():
    old = fraud_policy()
    assert placement_changes(old, old) == []
    from agentic_ray.policies import parse_policy

    moved = parse_policy(old.to_yaml().replace("zone_prefix:\n    - eu-", "zone_prefix:\n    - us-"))
    assert "rules" in placement_changes(old, moved)


def test_judge_rolls_back_on_burn_promotes_when_no_worse_and_waits_otherwise():
    s = CanarySettings(window_s=10, margin=1.0, min_samples=20)
    assert judge(s, stats(10, 5), stats(100, 0), 0.0, 1.0) is None  # too few samples
    v = judge(s, stats(100, 5), stats(100, 1), 0.0, 1.0)
    assert v is not None and v.action == "rollback"
    assert v.reason.startswith("canary burn rate 5.00 over 100 requests, baseline 1.00 over 100")
    assert judge(s, stats(100, 1), stats(100, 1), 0.0, 5.0) is None  # no worse, window not over
    v = judge(s, stats(100, 1), stats(100, 1), 0.0, 10.0)
    assert v is not None and v.action == "promote" and "no worse after 10 s" in v.reason
    v = judge(s, stats(100, 1, 60.0), stats(100, 1, 20.0), 0.0, 10.0)
    assert v is not None and v.action == "rollback" and "p99 over 1.2x" in v.reason
    with pytest.raises(ValueError, match="canary_window_s"):
        CanarySettings(window_s=0)


def test_shadow_counts_sum():
    c = ShadowCounts()
    c.add({"evaluated": 3, "would_refuse": 1})
    c.add({"evaluated": 2, "would_shed": 2, "would_place_elsewhere": 1})
    assert c.to_dict() == {"evaluated": 5, "would_refuse": 1, "would_place_elsewhere": 1, "would_shed": 2}
