"""Signed policy bundles: every refusal reason, risky changes needing two signatures, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentic_ray.cli import main
from agentic_ray.errors import PolicySignatureError
from agentic_ray.policies import load_policy, parse_policy
from agentic_ray.policies.diff import classify_risk, diff_policies
from agentic_ray.policies.signing import (
    PolicyBundle,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_keys,
    sign_bundle,
    verify_bundle,
)

PLATFORM = Path(__file__).resolve().parents[2] / "examples" / "policies" / "platform.yaml"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("alice", "bob", "mallory"):
        private, public = generate_keypair()
        (d / f"{name}.key").write_bytes(private)
        (d / f"{name}.pub").write_bytes(public)
        out[name] = (load_private_key(d / f"{name}.key"), d / f"{name}.pub")
    return out


@pytest.fixture(scope="module")
def platform():
    return load_policy(PLATFORM)


def trusted(keys, *names):
    return load_public_keys([keys[n][1] for n in names])


def edited(policy, old: str, new: str):
    text = PLATFORM.read_text()
    assert old in text
    return parse_policy(text.replace(old, new, 1))


def test_a_signed_bundle_verifies_and_round_trips(keys, platform):
    bundle = sign_bundle(platform, keys["alice"][0], sequence=5)
    again = PolicyBundle.from_json(bundle.to_json())
    verified = verify_bundle(again, trusted(keys, "alice", "bob"))
    assert verified.policy.sha256 == platform.sha256 and verified.sequence == 5
    assert verified.key_ids == (key_id(keys["alice"][0].public_key()),)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(policy=d["policy"].replace("budget_ms: 150", "budget_ms: 151")), "bad_signature"),
        (lambda d: d["statement"].update(sequence=6), "bad_signature"),
        (lambda d: d["statement"].update(rollback=True), "bad_signature"),
        (lambda d: d["signatures"][0].update(signature=d["signatures"][0]["signature"][::-1]), "bad_signature"),
        (lambda d: d.update(signatures=[]), "unsigned"),
        (lambda d: d.update(kind="Policy"), "malformed"),
        (lambda d: d["statement"].update(sequence="5"), "malformed"),
    ],
)
def test_tampered_or_unsigned_bundles_are_refused(keys, platform, mutate, reason):
    data = json.loads(sign_bundle(platform, keys["alice"][0], sequence=5).to_json())
    mutate(data)
    with pytest.raises(PolicySignatureError) as info:
        verify_bundle(PolicyBundle.from_json(json.dumps(data)), trusted(keys, "alice"))
    assert info.value.reason == reason


def test_unknown_keys_and_older_versions_are_refused(keys, platform):
    bundle = sign_bundle(platform, keys["mallory"][0], sequence=9)
    with pytest.raises(PolicySignatureError, match="untrusted_key"):
        verify_bundle(bundle, trusted(keys, "alice", "bob"))
    old = sign_bundle(platform, keys["alice"][0], sequence=3)
    with pytest.raises(PolicySignatureError, match="older_version"):
        verify_bundle(old, trusted(keys, "alice"), highest_sequence=4)
    rollback = sign_bundle(platform, keys["alice"][0], sequence=3, rollback=True)
    assert verify_bundle(rollback, trusted(keys, "alice"), highest_sequence=4).rollback


def test_risky_changes_need_two_distinct_signatures(keys, platform):
    loosened = edited(platform, "require: {zone_prefix: eu-west}", "require: {zone_prefix: [eu-west, us-east]}")
    single = sign_bundle(loosened, keys["alice"][0], sequence=7)
    with pytest.raises(PolicySignatureError) as info:
        verify_bundle(single, trusted(keys, "alice", "bob"), previous=platform)
    assert info.value.reason == "needs_two_signatures" and "eu-residency" in str(info.value)
    with pytest.raises(ValueError, match="already signed"):
        sign_bundle(single, keys["alice"][0])
    # A second signature from an untrusted key does not count.
    with pytest.raises(PolicySignatureError, match="needs_two"):
        verify_bundle(sign_bundle(single, keys["mallory"][0]), trusted(keys, "alice", "bob"), previous=platform)
    double = sign_bundle(single, keys["bob"][0])
    verified = verify_bundle(double, trusted(keys, "alice", "bob"), previous=platform)
    assert len(verified.key_ids) == 2 and verified.risks
    # A change that is not risky needs one signature.
    calmer = edited(platform, "budget_ms: 150", "budget_ms: 140")
    assert verify_bundle(sign_bundle(calmer, keys["alice"][0], sequence=8), trusted(keys, "alice"), previous=platform)


@pytest.mark.parametrize(
    ("old", "new", "word"),
    [
        ("  - id: us-residency\n", "  - id: us-residency-x\n", "us-residency"),  # removed (renamed)
        (
            "data_classes:\n  pii: {requires_residency: true}",
            "data_classes:\n  pii: {requires_residency: false}",
            "pii",
        ),
        (
            "delta-us:   {region: us-east, share: 0.10, class: sheddable}",
            "delta-us:   {region: us-east, share: 0.10, class: standard}",
            "delta-us",
        ),
        (
            "delta-us:   {region: us-east, share: 0.10, class: sheddable}",
            "delta-us:   {region: us-east, share: 0.10, class: sheddable}\n"
            "  zed-us: {region: us-east, class: critical}",
            "zed-us",
        ),
    ],
)
def test_classify_risk_names_what_loosened(platform, old, new, word):
    after = edited(platform, old, new)
    risks = classify_risk(diff_policies(platform, after), platform, after)
    assert risks and any(word in r for r in risks), risks


def test_tightening_and_small_budget_raises_are_not_risky(platform):
    tighter = edited(platform, "require: {zones: [eu-west-1a, eu-west-1b]}", "require: {zones: [eu-west-1a]}")
    assert classify_risk(diff_policies(platform, tighter), platform, tighter) == []
    raised = edited(platform, "budget_ms: 150", "budget_ms: 200")  # +33 %
    assert classify_risk(diff_policies(platform, raised), platform, raised) == []
    assert classify_risk(diff_policies(platform, raised), platform, raised, budget_raise_fraction=0.2)


def test_cli_keygen_sign_verify(tmp_path, capsys):
    assert main(["policy", "keygen", str(tmp_path), "--name", "k1"]) == 0
    assert main(["policy", "keygen", str(tmp_path), "--name", "k2"]) == 0
    assert main(["policy", "keygen", str(tmp_path), "--name", "k1"]) == 2  # never overwrites
    assert oct((tmp_path / "k1.key").stat().st_mode & 0o777) == "0o600"
    bundle = tmp_path / "b.json"
    assert main(["policy", "sign", str(PLATFORM), "--key", str(tmp_path / "k1.key"), "-o", str(bundle),
                 "--sequence", "3"]) == 0  # fmt: skip
    assert main(["policy", "verify", str(bundle), "--trusted", str(tmp_path / "k1.pub")]) == 0
    assert main(["policy", "verify", str(bundle), "--trusted", str(tmp_path / "k2.pub")]) == 2
    assert main(["policy", "verify", str(bundle), "--trusted", str(tmp_path / "k1.pub"), "--min-sequence", "4"]) == 2
    err = capsys.readouterr().err
    assert "untrusted_key" in err and "older_version" in err
    # co-sign, then JSON output
    assert main(["policy", "sign", str(bundle), "--key", str(tmp_path / "k2.key"), "-o", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["policy", "verify", str(bundle), "--trusted", str(tmp_path / "k1.pub"), str(tmp_path / "k2.pub"),
                 "--json"]) == 0  # fmt: skip
    assert len(json.loads(capsys.readouterr().out)["key_ids"]) == 2
    (tmp_path / "garbage.json").write_text("{not json")
    assert main(["policy", "verify", str(tmp_path / "garbage.json"), "--trusted", str(tmp_path / "k1.pub")]) == 2
