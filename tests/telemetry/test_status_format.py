"""The text form of ``agentic-ray status`` (pure: a status dict in, lines out)."""

from __future__ import annotations

from agentic_ray.cli.status_cmd import format_status

STATUS = {
    "policy": {"name": "fraud", "version": "v3", "sha256": "ab" * 32, "revision": 4, "acked": ["n1", "n2"],
               "missing": ["n3"]},
    "zones": {
        "eu-west": [{"node_id": "n1" * 10, "accelerator": "cpu", "inflight_by_class": {"critical": 2},
                     "report_age_s": 0.4, "accelerator_state": {"util": 0.5}}],
        "us-east": [{"node_id": "n3", "accelerator": "gpu", "inflight_by_class": {}, "report_age_s": None}],
    },
    "classes": {
        "critical|fraud": {"qos": "critical", "budget_ms": 150.0, "p99_ms": 180.5, "samples": 40,
                           "burn_60s": 3.0, "burn_10s": 4.0},
        "standard|-": {"qos": "standard", "budget_ms": 500.0, "p99_ms": None, "samples": 0},
    },
    "alerts": [{"id": "p99_over_budget:critical|fraud:60s", "kind": "p99_over_budget", "value": 180.5,
                "threshold": 150.0}],
}  # fmt: skip


def test_format_status_shows_policy_agents_budgets_and_alerts():
    text = format_status(STATUS)
    lines = text.splitlines()
    assert lines[0].startswith("policy  fraud  version v3  sha256 abababababab  revision 4  agents acked 2/3")
    assert "eu-west: 1 agent(s)" in text and "us-east: 1 agent(s)" in text
    assert "inflight critical=2" in text and "accelerator: util=0.5" in text and "report never" in text
    crit = next(x for x in lines if x.strip().startswith("critical|fraud"))
    assert "150 ms" in crit and "180.5 ms" in crit and "OVER" in crit and "burn_60s=3" in crit
    std = next(x for x in lines if x.strip().startswith("standard|-"))
    assert std.split()[-1] == "-"  # no p99 yet: no verdict
    assert "alerts  1" in text and "p99_over_budget:critical|fraud:60s" in text


def test_format_status_of_an_empty_dict():
    text = format_status({})
    assert "zones   0" in text and "alerts  none" in text
