"""PolicyRollout: versions, acknowledgements per node, rollback history."""

from __future__ import annotations

import pytest

from agentic_ray.control import PolicyEntry, PolicyRollout
from agentic_ray.control._rollout import HISTORY_LIMIT
from tests.control._fixtures import fraud_policy, minimal_policy


def test_apply_appends_a_revision_and_resets_acknowledgements():
    fraud, minimal = fraud_policy(), minimal_policy()
    r = PolicyRollout.first(fraud, "<default policy>", now=1.0)
    assert r.info() == {
        "name": "fraud",
        "version": fraud.version,
        "sha256": fraud.sha256,
        "revision": 1,
        "source": "<default policy>",
    }
    assert r.acknowledge("n1", fraud.sha256) and not r.acknowledge("n2", "other")
    assert r.acks(["n1", "n2"]) == (["n1"], ["n2"])
    assert r.apply(fraud, "again.yaml", now=2.0) is None, "the active policy again changes nothing"
    entry = r.apply(minimal, "minimal.yaml", now=3.0)
    assert entry is not None and entry.revision == 2 and entry.applied_at == 3.0 and entry.source == "minimal.yaml"
    assert r.policy is minimal and r.active is entry and r.acked == {}
    assert not r.acknowledge("n1", fraud.sha256), "an acknowledgement of the old version does not count"


def test_rollback_returns_to_the_previous_version_compiled_from_its_text():
    fraud, minimal = fraud_policy(), minimal_policy()
    r = PolicyRollout.first(fraud, "fraud.yaml", now=0.0)
    r.apply(minimal, "minimal.yaml", now=1.0)
    r.acknowledge("n1", minimal.sha256)
    back = r.rollback()
    assert back.revision == 1 and r.policy.sha256 == fraud.sha256 and r.acked == {}
    with pytest.raises(ValueError, match="no previous policy version"):
        r.rollback()


def test_needs_push_acknowledges_agents_that_report_the_active_policy():
    fraud = fraud_policy()
    r = PolicyRollout.first(fraud, "fraud.yaml", now=0.0)
    todo = r.needs_push({"n1": fraud.sha256, "n2": None, "n3": "stale"})
    assert todo == ["n2", "n3"] and r.acked == {"n1": fraud.sha256}
    r.forget("n1")
    assert r.acks(["n2"]) == ([], ["n2"])


def test_history_is_bounded_and_round_trips_through_the_checkpoint_json():
    fraud, minimal = fraud_policy(), minimal_policy()
    r = PolicyRollout.first(fraud, "fraud.yaml", now=0.0)
    for i in range(HISTORY_LIMIT + 5):
        r.apply(minimal if i % 2 == 0 else fraud, None, now=float(i))
    assert len(r.history) == HISTORY_LIMIT and r.active.revision == HISTORY_LIMIT + 6
    restored = PolicyRollout([PolicyEntry.from_dict(e.to_dict()) for e in r.history])
    assert restored.history == r.history and restored.policy.sha256 == r.policy.sha256
    with pytest.raises(ValueError, match="history"):
        PolicyRollout([])


def test_signed_versions_keep_their_signers_and_the_highest_sequence_survives_rollback_and_restart():
    from agentic_ray.control import GlobalState
    from agentic_ray.control._drift import DriftDetector

    a, b = fraud_policy(), minimal_policy()
    rollout = PolicyRollout.first(a, "a.yaml", 0.0)
    assert rollout.highest_sequence is None
    entry = rollout.apply(b, "b.bundle", 1.0, ("k1", "k2"), 40)
    assert entry is not None and entry.signed_by == ("k1", "k2") and entry.sequence == 40
    assert rollout.highest_sequence == 40
    rollout.rollback()
    assert rollout.highest_sequence == 40  # a rollback does not lower the bar for replays
    assert rollout.apply(a, "a.bundle", 2.0, ("k1",), 30) is None  # already active: nothing applied
    assert rollout.highest_sequence == 40  # and a lower sequence never lowers the bar
    state = GlobalState(rollout, DriftDetector(), started_at=0.0)
    restored = GlobalState.restore(state.checkpoint({}), a, DriftDetector().config, 5.0)
    assert restored.rollout.highest_sequence == 40
    assert PolicyEntry.from_dict(entry.to_dict()) == entry
    old = {k: v for k, v in PolicyEntry.of(a, 1, "x", 0.0).to_dict().items() if k not in ("signed_by", "sequence")}
    assert PolicyEntry.from_dict(old).signed_by == () and PolicyEntry.from_dict(old).sequence is None
