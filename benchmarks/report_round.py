"""Cost of one control-plane report round, without Ray actors: build, serialise, merge.

The node agents report every 0.1-0.5 s, so this path must stay cheap. One zone of ``--agents`` node
agents (``NodeAgentImpl``), each with ``--keys`` (class, workflow) summary keys holding 40 latencies per
round. Per agent and round, timed separately (median over ``--rounds``, microseconds):

- **full report**: ``next_report`` builds it (``build``), it crosses a process (``wire``: Ray's argument
  path, msgpack with what msgpack cannot hold pickled by cloudpickle, protocol 5, and back), the zone
  merges it (``ZoneState.on_report``, ``merge``);
- **snapshot-only report** (between full ones, when placement facts changed): the same three steps;

and per zone and round: ``ZoneState.take_forward`` (``zone_build``), the wire, and
``GlobalState.ingest`` (``global_merge``: snapshots, offered load, drift observation); then the same
three for a forward of snapshots alone (``zone_snap_forward``, what a snapshot-only report wakes). Prints a table;
writes nothing. Usage::

    python benchmarks/report_round.py [--agents 8] [--keys 6] [--rounds 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

ROOT_KEYS = [
    ("critical", "fraud"),
    ("critical", "fraud/score"),
    ("standard", None),
    ("standard", "etl"),
    ("sheddable", None),
    ("critical", None),
]


def wire_roundtrip() -> Any:
    """``wire(obj) -> (copy, bytes)`` through Ray's serialisation of actor-call arguments."""
    from ray import cloudpickle
    from ray._private.worker import global_worker
    from ray._raylet import MessagePackSerializer

    ctx = global_worker.get_serialization_context()

    def wire(obj: Any) -> tuple[Any, int]:
        objs: list[Any] = []

        def ser(o: Any) -> int:
            objs.append(o)
            return len(objs) - 1

        ctx.set_in_band_serialization()
        packed = MessagePackSerializer.dumps(obj, ser)
        pickled = cloudpickle.dumps(objs, protocol=5) if objs else None
        ctx.set_out_of_band_serialization()
        back = cloudpickle.loads(pickled) if pickled else []
        return MessagePackSerializer.loads(packed, lambda i: back[i]), len(packed) + len(pickled or b"")

    return wire


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--keys", type=int, default=6, choices=range(1, len(ROOT_KEYS) + 1))
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()

    from agentic_ray.actors._node_agent import NodeAgentImpl
    from agentic_ray.control import DriftDetector, GlobalState, NodeInfo, PolicyRollout, ZoneState
    from agentic_ray.policies import load_policy
    from agentic_ray.scheduling.estimators import Ewma

    wire = wire_roundtrip()
    keys = ROOT_KEYS[: args.keys]
    policy = load_policy("examples/policies/fraud.yaml")
    rng = random.Random(1)
    agents = [NodeAgentImpl(f"{i:02d}" + "n" * 54, {"zone": "eu-west"}) for i in range(args.agents)]
    for a in agents:
        a.caps = {"critical": 8, "standard": 16, "sheddable": 32}
        a.inflight = {"critical": 3, "standard": 5, "sheddable": 1}
        for q, w in keys:
            a.ewma.setdefault(f"{q}|{w or '-'}", Ewma(alpha=0.2)).observe(12.0, 0.0)
    zone = ZoneState("eu-west", stale_after_s=1e9)
    glob = GlobalState(PolicyRollout.first(policy, "bench", 0.0), DriftDetector(), 0.0)
    for a in agents:  # the coordinator started these agents
        glob.agent_started(NodeInfo(a.node_id, "eu-west", "cpu"), "agent-" + a.node_id, 0.0)

    steps = ("build", "wire", "merge", "snap_build", "snap_wire", "snap_merge", "zone_build", "zone_wire")
    t: dict[str, list[float]] = {k: [] for k in (*steps, "global_merge", "zone_snap_forward")}
    size: dict[str, int] = {}
    pc = time.perf_counter
    for _ in range(args.rounds):
        for a in agents:
            for q, w in keys:
                s = a._summary(q, w)
                for _ in range(40):
                    s.record(rng.lognormvariate(3, 0.6), True, rng.random() < 0.97)
        now = time.time()
        for a in agents:
            t0 = pc()
            rep, _, _ = a.next_report(1e9, -1e9, None)
            t1 = pc()
            got, size["agent_full"] = wire(rep)
            t2 = pc()
            zone.on_report(got, now)
            t3 = pc()
            t["build"].append(t1 - t0), t["wire"].append(t2 - t1), t["merge"].append(t3 - t2)
            a.inflight["critical"] += 1  # a placement fact changed: a snapshot-only report follows
            t0 = pc()
            rep, _, _ = a.next_report(1e9, 1e9, None)
            t1 = pc()
            got, size["agent_snapshot"] = wire(rep)
            t2 = pc()
            zone.on_report(got, now)
            t3 = pc()
            t["snap_build"].append(t1 - t0), t["snap_wire"].append(t2 - t1), t["snap_merge"].append(t3 - t2)
        t0 = pc()
        forward = zone.take_forward(now)
        t1 = pc()
        got, size["zone"] = wire(forward)
        t2 = pc()
        glob.ingest(got, now)
        t3 = pc()
        t["zone_build"].append(t1 - t0), t["zone_wire"].append(t2 - t1), t["global_merge"].append(t3 - t2)
        t0 = pc()  # the forward a snapshot-only report wakes: snapshots, no summaries
        got, size["zone_snapshots"] = wire(zone.take_forward(now))
        glob.ingest(got, now)
        t["zone_snap_forward"].append(pc() - t0)

    med = {k: statistics.median(v) * 1e6 for k, v in t.items()}
    print(f"{args.agents} agents x {len(keys)} keys, {args.rounds} rounds; median microseconds")
    for k, v in med.items():
        print(f"  {k:13s} {v:8.1f}")
    full = med["build"] + med["wire"] + med["merge"]
    snap = med["snap_build"] + med["snap_wire"] + med["snap_merge"]
    fwd = med["zone_build"] + med["zone_wire"] + med["global_merge"]
    print(
        f"  per agent: full report {full:.1f} us, snapshot-only {snap:.1f} us; per zone forward {fwd:.1f} us,"
        f" of snapshots alone {med['zone_snap_forward']:.1f} us"
    )
    print(f"  bytes: {size}")


if __name__ == "__main__":
    main()
