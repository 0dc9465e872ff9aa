"""The replica's admission wrapper and the control plane, without Ray: per-class counts for the agent,
the caller's request id in decision records, completion records, a policy switch between requests."""

from __future__ import annotations

import asyncio

import pytest

from agentic_ray.control._serve_tally import ServeTally
from agentic_ray.errors import Overloaded
from agentic_ray.policies import parse_policy
from agentic_ray.scheduling.admission import replica_gate
from agentic_ray.scheduling.types import Request
from agentic_ray.serve._replica_gate import ReplicaAdmission
from agentic_ray.telemetry.hotpath import TelemetryHook

POLICY = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {{name: gate-plane, version: "{version}"}}
default_class: standard
classes:
  critical: {{priority: 0, budget_ms: 1000, shedding: never}}
  standard: {{priority: 1, budget_ms: {standard}, shedding: when_overloaded}}
entitlements: {{anonymous: {{allowed_classes: [critical, standard]}}}}
"""


class _Log:
    def __init__(self) -> None:
        self.decisions: list[dict] = []
        self.completions: list[dict] = []

    def log_decision(self, **kw) -> None:
        self.decisions.append(kw)

    def log_completion(self, **kw) -> None:
        self.completions.append(kw)


def _request(policy, rid, qos="standard"):
    import time

    from agentic_ray.policies.types import RequestMeta

    return Request.from_classification(policy.classify(RequestMeta(qos=qos), time.time()), rid, time.time())


def test_counts_ids_completions_caps_and_a_switch():
    policy = parse_policy(POLICY.format(version="v0", standard=5000))
    log = _Log()
    hook = TelemetryHook(None, decision_log=log, flush_interval_s=0)
    tally = ServeTally("app/Model")
    admission = ReplicaAdmission(replica_gate(1, policy.classes), hook=hook, policy_version="v0",
                                 policy_sha=policy.sha256, tally=tally)  # fmt: skip
    admission.replica_id = "replica-1"

    async def scenario():
        async with admission.admitted(_request(policy, admission.request_id("req-1"))):
            await asyncio.sleep(0)
        # The same caller id again while nothing holds it: the same id; while it is held: a suffix.
        assert admission.request_id("req-1") == "req-1"
        admission.gate.set_class_caps({"standard": 0})
        with pytest.raises(Overloaded) as info:
            async with admission.admitted(_request(policy, admission.request_id("req-2"))):
                pass
        assert info.value.reason == "class_cap"
        async with admission.admitted(_request(policy, admission.request_id("req-3"), "critical")):
            pass
        admission.gate.set_class_caps({})
        new = parse_policy(POLICY.format(version="v1", standard=2000))
        admission.switch_policy(new)
        async with admission.admitted(_request(new, admission.request_id("req-4"))):
            pass

    asyncio.run(scenario())
    hook.flush()
    classes, summaries = tally.take()
    assert classes["standard"].offered == 3 and classes["standard"].shed == {"class_cap": 1}
    assert classes["standard"].completed == 2 and classes["critical"].completed == 1
    assert sum(s.count for s in summaries.values()) == 4
    by_id = {d["request_id"]: d for d in log.decisions}
    assert set(by_id) == {"req-1", "req-2", "req-3", "req-4"}
    assert by_id["req-2"]["outcome"] == "reject:class_cap"
    assert by_id["req-1"]["policy_version"] == "v0" and by_id["req-4"]["policy_version"] == "v1"
    assert by_id["req-4"]["policy_sha256"] == parse_policy(POLICY.format(version="v1", standard=2000)).sha256
    assert [c["request_id"] for c in log.completions] == ["req-1", "req-3", "req-4"]
    assert all(c["replica_id"] == "replica-1" and c["ok"] for c in log.completions)
    assert admission.gate.classes["standard"].budget_ms == 2000


def test_a_caller_id_already_in_the_gate_gets_a_suffix():
    policy = parse_policy(POLICY.format(version="v0", standard=5000))
    admission = ReplicaAdmission(replica_gate(1, policy.classes))

    async def scenario():
        async with admission.admitted(_request(policy, admission.request_id("dup"))):
            second = admission.request_id("dup")
            assert second.startswith("dup~")
        assert admission.request_id(None).startswith("q")

    asyncio.run(scenario())
