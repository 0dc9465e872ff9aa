"""A control plane with trusted keys (issue: who may change policy), on the real test cluster: only
signed bundles change its policy; unsigned, tampered, unknown-key, older and single-signed risky bundles
are refused with the old policy still governing; every change records its signers."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from agentic_ray.errors import PolicySignatureError
from agentic_ray.policies import parse_policy
from agentic_ray.policies.signing import generate_keypair, key_id, sign_bundle
from tests.integration._control_plane import FRAUD_POLICY, short_config

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def _key():
    from cryptography.hazmat.primitives import serialization

    private_pem, public_pem = generate_keypair()
    return serialization.load_pem_private_key(private_pem, None), public_pem.decode()


@pytest.fixture(scope="module")
def keys():
    return {name: _key() for name in ("alice", "bob", "mallory")}


@pytest.fixture(scope="module")
def signed_plane(ray_cluster, keys):
    from agentic_ray import sdk

    first = sign_bundle(sign_bundle(parse_policy(FRAUD_POLICY.read_text()), keys["alice"][0], sequence=1),
                        keys["bob"][0])  # a plane with trusted keys starts from a signed policy too  # fmt: skip
    sdk.init(policy=first, config=short_config(), wait_s=60, trusted_keys=[keys["alice"][1], keys["bob"][1]])
    yield sdk
    sdk.shutdown(stop_control_plane=True)


def _variant(change) -> object:
    doc = yaml.safe_load(FRAUD_POLICY.read_text())
    change(doc)
    return parse_policy(yaml.safe_dump(doc), source="variant.yaml")


def _active(sdk) -> str:
    return sdk.status()["policy"]["sha256"]


def _refused(sdk, bundle_or_policy, reason: str) -> None:
    before = _active(sdk)
    with pytest.raises(PolicySignatureError) as err:
        sdk.apply_policy(bundle_or_policy)
    assert reason in str(err.value)
    assert _active(sdk) == before  # the old policy still governs


def test_only_trusted_signed_bundles_change_the_policy(signed_plane, keys, tmp_path):
    sdk = signed_plane
    alice, bob, mallory = (keys[k][0] for k in ("alice", "bob", "mallory"))
    tighter = _variant(lambda d: d["classes"]["standard"].update(budget_ms=d["classes"]["standard"]["budget_ms"] - 1))
    _refused(sdk, tighter, "unsigned")
    _refused(sdk, sign_bundle(tighter, mallory, sequence=100), "untrusted_key")
    good = sign_bundle(tighter, alice, sequence=100)
    tampered = dataclasses.replace(good, policy_yaml=good.policy_yaml.replace("EU zones", "any zone"))
    _refused(sdk, tampered, "bad_signature")
    path = tmp_path / "tighter.bundle.json"
    path.write_text(good.to_json())
    info = sdk.apply_policy(str(path))  # a bundle file, as the CLI passes it
    assert info["sha256"] == tighter.sha256 == _active(sdk)
    assert info["signed_by"] == [key_id(alice.public_key())] and info["sequence"] == 100
    history = sdk.status()["history"]
    assert history[-1]["signed_by"] == [key_id(alice.public_key())] and history[-1]["sequence"] == 100

    # An older bundle cannot be replayed; a risky change needs two signers.
    looser = _variant(lambda d: d["classes"]["critical"].update(budget_ms=d["classes"]["critical"]["budget_ms"] * 3))
    _refused(sdk, sign_bundle(looser, alice, sequence=50), "older_version")
    single = sign_bundle(looser, alice, sequence=101)
    _refused(sdk, single, "needs_two_signatures")
    info = sdk.apply_policy(sign_bundle(single, bob))
    assert info["sha256"] == looser.sha256 and sorted(info["signed_by"]) == sorted(
        key_id(k.public_key()) for k in (alice, bob)
    )
    assert info["risks"]

    # Rollback: never unsigned; a signed rollback of an older version is accepted.
    with pytest.raises(PolicySignatureError, match="unsigned"):
        sdk.rollback_policy()
    original = parse_policy(FRAUD_POLICY.read_text())
    back = sign_bundle(sign_bundle(original, alice, sequence=7, rollback=True), bob)
    assert sdk.apply_policy(back)["sha256"] == original.sha256 == _active(sdk)


def test_trusted_keys_are_not_replaced_at_run_time(signed_plane, keys):
    with pytest.raises(PolicySignatureError, match="bad_key"):
        signed_plane.init(trusted_keys=[keys["mallory"][1]], wait_s=5)
    signed_plane.init(trusted_keys=[keys["alice"][1], keys["bob"][1]], wait_s=5)
