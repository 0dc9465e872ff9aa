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


def test_format_status_shows_serve_deployments_members_classes_and_refusals():
    serve = {
        "control_plane": True,
        "deployments": {
            "app/Model": {
                "policy_version": "v1",
                "policy_source": "control plane",
                "acked": False,
                "missing": ["r2"],
                "refusal": {"version": "v2", "reason": "the policy drops classes its callers use: sheddable"},
                "routers": [{"router_id": "proxy:abcd:12:1", "policy_version": "v1"}],
                "replicas": [
                    {
                        "replica_id": "r1",
                        "policy_version": "v1",
                        "zone": "eu-west",
                        "accelerator": "cpu",
                        "node_id": "n" * 20,
                        "classes": {
                            "critical": {
                                "offered_rps": 12.5,
                                "admitted": 25,
                                "shed": 0,
                                "p99_ms": 180.0,
                                "budget_ms": 150.0,
                            }
                        },
                    }
                ],
            }
        },
    }
    alert = {
        "id": "p99_over_budget:critical|serve:app/Model:60s",
        "kind": "p99_over_budget",
        "value": 180.0,
        "threshold": 150.0,
        "deployment": "app/Model",
    }
    text = format_status({"serve": serve, "alerts": [alert]})
    assert "deployment app/Model" in text
    assert "serve   1 deployment(s)" in text and "app/Model  policy v1 (control plane)  waiting for 1" in text
    assert "refused v2: the policy drops classes its callers use: sheddable" in text
    assert "router  proxy:abcd:12:1" in text and "replica r1" in text and "eu-west/cpu" in text
    row = next(x for x in text.splitlines() if x.strip().startswith("critical "))
    assert "12.5/s" in row and "180 ms" in row and "150 ms" in row


def test_format_status_says_when_there_is_no_control_plane():
    from agentic_ray.sdk._admin import NO_CONTROL_PLANE, _no_control_plane

    status = _no_control_plane()
    assert status["control_plane"] is False and status["serve"]["control_plane"] is False
    assert "deploy-time policies" in NO_CONTROL_PLANE
    assert "deploy-time policies" in format_status(status)


def test_format_status_warns_of_a_control_plane_at_a_niceness_above_0():
    """A GlobalCoordinator started without ``RAY_worker_niceness=0`` (a job on a cluster of Ray's defaults
    before ``init`` put it in the job's runtime_env) says so; at 0, or with no figure, nothing is said."""
    warned = format_status({**STATUS, "process": {"niceness": 15, "proxy": False}})
    assert "warning: the GlobalCoordinator runs at niceness 15" in warned
    assert "warning" not in format_status({**STATUS, "process": {"niceness": 0, "proxy": False}})
    assert "warning" not in format_status(STATUS)


def test_format_status_warns_of_agents_at_a_niceness_above_0():
    """Agents a control plane started without ``RAY_worker_niceness=0`` created run at Ray's 15: one warning
    per zone and niceness, naming the nodes; an agent at 0 or without a figure (wire version 3) is not named."""
    zones = {
        "eu-west": [{"node_id": "a" * 20, "process": {"niceness": 15, "proxy": False}},
                    {"node_id": "b1", "process": {"niceness": 0, "proxy": False}},
                    {"node_id": "c1", "process": {"niceness": 15, "proxy": False}}],
        "us-east": [{"node_id": "d1", "process": {}}, {"node_id": "e1"}],
    }  # fmt: skip
    text = format_status({**STATUS, "zones": zones})
    warned = [line.strip() for line in text.splitlines() if "warning" in line]
    assert warned == [
        "warning: 2 agent(s) run at niceness 15 (aaaaaaaaaaaa, c1): started without RAY_worker_niceness=0 "
        "(README: Labelled clusters)"
    ]
    assert "warning" not in format_status(STATUS)
