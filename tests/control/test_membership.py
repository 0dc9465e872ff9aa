"""Membership: alive nodes from Ray's node table, agents to start and to drop."""

from __future__ import annotations

from agentic_ray.control import NodeInfo, alive_nodes, plan_membership


def test_alive_nodes_reads_zone_and_accelerator_from_labels_and_resources():
    table = [
        {"NodeID": "a", "Alive": True, "Labels": {"zone": "eu-west"}, "Resources": {"CPU": 4.0, "GPU": 1.0}},
        {"NodeID": "b", "Alive": False, "Labels": {"zone": "eu-west"}, "Resources": {"CPU": 4.0}},
        {"NodeID": "c", "Alive": True, "Labels": {"ray.io/availability-zone": "us-east", "accelerator": "a100"}},
        {"NodeID": "d", "Alive": True},
    ]
    nodes = alive_nodes(table)
    assert list(nodes) == ["a", "c", "d"]
    assert nodes["a"] == NodeInfo("a", "eu-west", "gpu", {"zone": "eu-west"}, {"CPU": 4.0, "GPU": 1.0})
    assert (nodes["c"].zone, nodes["c"].accelerator, nodes["c"].cpus) == ("us-east", "a100", 1.0)
    assert (nodes["d"].zone, nodes["d"].accelerator) == ("default", "cpu")
    assert nodes["a"].agent_attrs() == {"zone": "eu-west", "accelerator": "gpu", "labels": {"zone": "eu-west"}}


def test_plan_starts_agents_on_new_nodes_and_drops_those_of_gone_ones():
    alive = alive_nodes([{"NodeID": n, "Alive": True} for n in ("a", "b", "c")])
    change = plan_membership(alive, ["b", "x", "y"])
    assert [i.node_id for i in change.start] == ["a", "c"]
    assert change.drop == ("x", "y")
    assert plan_membership(alive, ["a", "b", "c"]).start == () == plan_membership(alive, alive).drop
