"""Signed policy bundles: who may change the policy, checked before it governs anything.

A bundle is a JSON document carrying one policy and the Ed25519 signatures (RFC 8032, through the
``cryptography`` package) of the people who approved it::

    {"apiVersion": "agentic-ray/v1", "kind": "PolicyBundle",
     "policy": "<the policy's canonical YAML>",
     "statement": {"policy_sha256": ..., "policy_version": ..., "sequence": N, "rollback": false},
     "signatures": [{"key_id": "<16 hex>", "signature": "<base64>"}, ...]}

Each signature is over the canonical JSON of ``statement`` (sorted keys, no spaces), which names the
policy by the sha256 of its canonical form, so editing the policy text, the statement or a signature
breaks verification. ``sequence`` is an integer the signer chooses, increasing from one change to the
next (``agentic-ray policy sign`` defaults to the current Unix time): a control plane that has applied
sequence ``S`` refuses a bundle below ``S`` unless its statement says ``rollback: true`` (an explicit,
signed rollback), so an old, once-valid bundle cannot be replayed to undo a fix.

``verify_bundle`` refuses (``PolicySignatureError`` with a machine-readable ``reason``) a bundle that is
malformed, unsigned, carries a bad signature, is signed by no trusted key, is older than what was
applied, or makes a risky change (``diff.classify_risk``: removing or loosening a residency rule,
widening an entitlement, raising a class budget by more than ``budget_raise_fraction``) with fewer than
two signatures from distinct trusted keys. Key ids are the first 16 hex digits of the sha256 of the raw
public key. Nothing here reads a clock or imports Ray.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentic_ray.errors import PolicySignatureError, PolicyValidationError
from agentic_ray.policies.compiler import Policy
from agentic_ray.policies.diff import classify_risk, diff_policies
from agentic_ray.policies.loader import parse_policy

__all__ = [
    "BUNDLE_KIND",
    "PolicyBundle",
    "VerifiedBundle",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_keys",
    "public_keys_from_pem",
    "sign_bundle",
    "verify_bundle",
]

BUNDLE_KIND = "PolicyBundle"
_API = "agentic-ray/v1"


def _ed25519() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def key_id(public_key: Any) -> str:
    """The first 16 hex digits of the sha256 of the raw Ed25519 public key."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as ``(private PEM (PKCS#8, unencrypted), public PEM)``."""
    from cryptography.hazmat.primitives import serialization

    private = _ed25519().Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def load_private_key(path: str | Path) -> Any:
    """An Ed25519 private key from a PEM file (``PolicySignatureError`` when it is not one)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise PolicySignatureError("bad_key", f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, _ed25519().Ed25519PrivateKey):
        raise PolicySignatureError("bad_key", f"{path}: not an Ed25519 key")
    return key


def load_public_keys(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Trusted Ed25519 public keys from PEM files, by key id."""
    keys: dict[str, Any] = {}
    for path in paths:
        keys.update(public_keys_from_pem([Path(path).read_bytes()], str(path)))
    return keys


def public_keys_from_pem(pems: Iterable[str | bytes], where: str = "trusted_keys") -> dict[str, Any]:
    """Trusted Ed25519 public keys from PEM texts, by key id (``PolicySignatureError("bad_key")``)."""
    from cryptography.hazmat.primitives import serialization

    keys: dict[str, Any] = {}
    for i, pem in enumerate(pems):
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise PolicySignatureError("bad_key", f"{where}[{i}]: not a PEM public key ({exc})") from None
        if not isinstance(key, _ed25519().Ed25519PublicKey):
            raise PolicySignatureError("bad_key", f"{where}[{i}]: not an Ed25519 public key")
        keys[key_id(key)] = key
    return keys


def _canonical(statement: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(statement), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class PolicyBundle:
    """A policy with the statement its signers approved and their signatures (``to_json``/``from_json``)."""

    policy_yaml: str
    statement: Mapping[str, Any]
    signatures: tuple[tuple[str, str], ...]  # (key id, base64 signature)

    def to_json(self) -> str:
        return json.dumps(
            {"apiVersion": _API, "kind": BUNDLE_KIND, "policy": self.policy_yaml, "statement": dict(self.statement),
             "signatures": [{"key_id": k, "signature": s} for k, s in self.signatures]},
            indent=2, sort_keys=True,
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str | bytes) -> PolicyBundle:
        """Parse a bundle (``PolicySignatureError("malformed")`` naming what is wrong)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PolicySignatureError("malformed", f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("kind") != BUNDLE_KIND or data.get("apiVersion") != _API:
            raise PolicySignatureError("malformed", f"not an {_API} {BUNDLE_KIND}")
        policy, statement, sigs = data.get("policy"), data.get("statement"), data.get("signatures", [])
        if not isinstance(policy, str) or not isinstance(statement, dict) or not isinstance(sigs, list):
            raise PolicySignatureError("malformed", "policy (text), statement (object), signatures (list) required")
        pairs = []
        for i, sig in enumerate(sigs):
            if (
                not isinstance(sig, dict)
                or not isinstance(sig.get("key_id"), str)
                or not isinstance(sig.get("signature"), str)
            ):
                raise PolicySignatureError("malformed", f"signatures[{i}]: key_id and signature (strings) required")
            pairs.append((sig["key_id"], sig["signature"]))
        return cls(policy, statement, tuple(pairs))


def sign_bundle(
    policy_or_bundle: Policy | PolicyBundle, private_key: Any, *, sequence: int | None = None, rollback: bool = False
) -> PolicyBundle:
    """Sign a policy (a new bundle with ``sequence``, required) or add a signature to a bundle (its
    statement unchanged; ``sequence``/``rollback`` must not be given). One signature per key."""
    if isinstance(policy_or_bundle, PolicyBundle):
        if sequence is not None or rollback:
            raise ValueError("sequence/rollback: a co-signature signs the bundle's statement as it is")
        bundle = policy_or_bundle
    else:
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
            raise ValueError(f"sequence: an integer >= 0 is required to sign a policy, got {sequence!r}")
        policy = policy_or_bundle
        statement = {"policy_sha256": policy.sha256, "policy_version": policy.version, "sequence": sequence,
                     "rollback": bool(rollback)}  # fmt: skip
        bundle = PolicyBundle(policy.to_yaml(), statement, ())
    kid = key_id(private_key.public_key())
    if any(k == kid for k, _ in bundle.signatures):
        raise ValueError(f"key {kid} already signed this bundle")
    signature = base64.b64encode(private_key.sign(_canonical(bundle.statement))).decode()
    return PolicyBundle(bundle.policy_yaml, bundle.statement, (*bundle.signatures, (kid, signature)))


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle that passed ``verify_bundle``: the policy, its sequence, whether it is a rollback, the
    trusted key ids that signed it and the risky changes it makes (empty when not checked or none)."""

    policy: Policy
    sequence: int
    rollback: bool
    key_ids: tuple[str, ...]
    risks: tuple[str, ...]


def verify_bundle(
    bundle: PolicyBundle,
    trusted: Mapping[str, Any],
    *,
    highest_sequence: int | None = None,
    previous: Policy | None = None,
    budget_raise_fraction: float = 0.5,
) -> VerifiedBundle:
    """Check ``bundle`` (see the module docstring); ``PolicySignatureError`` when it must be refused.

    ``trusted``: key id -> Ed25519 public key. ``highest_sequence``: the highest sequence applied so far
    (``None``: nothing applied under signatures yet). ``previous``: the policy in force, to classify the
    change's risk (``None``: not classified, one signature suffices)."""
    statement = bundle.statement
    sequence, rollback = statement.get("sequence"), statement.get("rollback", False)
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not isinstance(rollback, bool):
        raise PolicySignatureError("malformed", "statement.sequence (integer) and rollback (boolean) required")
    try:
        policy = parse_policy(bundle.policy_yaml, source="<bundle>")
    except PolicyValidationError as exc:
        raise PolicySignatureError("malformed", f"the bundled policy is invalid: {exc}") from None
    if statement.get("policy_sha256") != policy.sha256:
        raise PolicySignatureError(
            "bad_signature", "the statement names another policy than the one bundled (sha256 differs)"
        )
    if not bundle.signatures:
        raise PolicySignatureError("unsigned", "the bundle carries no signature")
    message = _canonical(statement)
    valid: list[str] = []
    for kid, signature in bundle.signatures:
        key = trusted.get(kid)
        if key is None:
            continue
        try:
            key.verify(base64.b64decode(signature, validate=True), message)
        except Exception:
            raise PolicySignatureError("bad_signature", f"the signature of key {kid} does not verify") from None
        if kid not in valid:
            valid.append(kid)
    if not valid:
        seen = ", ".join(k for k, _ in bundle.signatures)
        raise PolicySignatureError("untrusted_key", f"signed only by keys not trusted here ({seen})")
    if highest_sequence is not None and sequence < highest_sequence and not rollback:
        raise PolicySignatureError(
            "older_version",
            f"sequence {sequence} is below the highest applied ({highest_sequence}); sign it as a rollback",
        )
    risks: tuple[str, ...] = ()
    if previous is not None:
        risks = tuple(classify_risk(diff_policies(previous, policy), previous, policy, budget_raise_fraction))
        if risks and len(valid) < 2:
            raise PolicySignatureError(
                "needs_two_signatures",
                f"a risky change needs two distinct trusted signatures, it has {len(valid)}: " + "; ".join(risks),
            )
    return VerifiedBundle(policy, sequence, rollback, tuple(valid), risks)
