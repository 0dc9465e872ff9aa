"""Small builders shared by the control-plane tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentic_ray.control import ClassSummary, NodeInfo, NodeSnapshot
from agentic_ray.policies import load_policy

REPO = Path(__file__).resolve().parents[2]


def fraud_policy():
    return load_policy(REPO / "examples" / "policies" / "fraud.yaml")


def minimal_policy():
    return load_policy(REPO / "examples" / "policies" / "minimal.yaml")


def node(node_id: str, zone: str = "eu-west", cpus: float = 2.0, accelerator: str = "cpu") -> NodeInfo:
    return NodeInfo(node_id, zone, accelerator, {"zone": zone}, {"CPU": cpus})


def snapshot(node_id: str, zone: str = "eu-west", at: float = 0.0, **fields: Any) -> NodeSnapshot:
    fields.setdefault("incarnation", "inc-" + node_id)
    return NodeSnapshot(node_id=node_id, zone=zone, at=at, **fields)


def summary(qos: str, workflow: str | None, latencies_ms: list[float], late: int = 0) -> ClassSummary:
    """A delta with ``latencies_ms`` within budget and ``late`` more over it (at 10x the largest)."""
    s = ClassSummary(qos, workflow)
    for v in latencies_ms:
        s.record(v, True, True)
    for _ in range(late):
        s.record(10 * max(latencies_ms or [1.0]), True, False)
    return s
