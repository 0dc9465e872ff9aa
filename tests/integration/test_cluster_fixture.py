"""The shared test cluster has the labelled nodes the other tests rely on."""

import ray


def test_cluster(ray_cluster):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) >= 3
    zones = sorted(n["Labels"].get("zone") for n in nodes)[:3]
    assert zones == ["eu-west", "eu-west", "us-east"]

    @ray.remote(num_cpus=0)
    def where():
        return ray.get_runtime_context().get_node_labels()["zone"]

    assert ray.get(where.options(label_selector={"zone": "us-east"}).remote(), timeout=60) == "us-east"
