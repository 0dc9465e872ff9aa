"""Which nodes and replicas a stream may use: its zone, narrowed by the policy's class and workflow rules."""

from __future__ import annotations

from agentic_ray.control import Eligibility, NodeInfo
from agentic_ray.policies import load_policy
from tests.control._fixtures import REPO


def cluster() -> dict[str, NodeInfo]:
    layout = {
        "a1": ("eu-west-1a", {"capacity": "on-demand", "pool": "batch"}),
        "a2": ("eu-west-1a", {"capacity": "spot", "pool": "batch"}),
        "a3": ("eu-west-1a", {"capacity": "on-demand", "pool": "warm"}),
        "u1": ("us-east-1a", {"capacity": "on-demand", "pool": "general"}),
    }
    return {n: NodeInfo(n, z, "cpu", {"zone": z, **labels}, {"CPU": 4.0}) for n, (z, labels) in layout.items()}


def test_a_stream_may_use_its_zone_s_nodes_that_its_class_and_workflow_rules_allow():
    e = Eligibility(load_policy(REPO / "examples" / "policies" / "platform.yaml"), cluster())
    assert e.node_ids("standard", "eu-west-1a") == {"a1", "a2", "a3"}
    assert e.node_ids("critical", "eu-west-1a") == {"a1", "a3"}  # critical-on-demand: no spot
    assert e.node_ids("sheddable", "eu-west-1a", "batch-summarize/summarize") == {"a1", "a2"}  # batch-pool
    assert e.node_ids("standard", None) == {"a1", "a2", "a3", "u1"}  # observed nowhere in particular
    assert e.node_ids("standard", "ap-south-1") == frozenset()  # a zone with no node left
    # a workflow the policy does not know (a Serve drift key, a renamed workflow): the class's rules only
    assert e.node_ids("critical", "eu-west-1a", "serve:app/llm") == {"a1", "a3"}
    assert e.node_ids("nope", "eu-west-1a") == frozenset() and e.requirement("nope") is None
    # replicas: the rules are tested on the node each runs on; one on a node not in the view uses its own zone
    places = [("r1", "a1", "eu-west-1a", "cpu"), ("r2", "a2", "eu-west-1a", "cpu"), ("r9", "gone", "eu-west-1a", "cpu")]
    assert e.replica_ids("critical", "eu-west-1a", places) == {"r1"}  # r9's node has no on-demand label known
    assert e.replica_ids("standard", "eu-west-1a", places) == {"r1", "r2", "r9"}
    assert e.replica_ids("standard", "us-east-1a", places) == frozenset()
