"""``agentic-ray policy keygen|sign|verify``: Ed25519 key pairs, signed policy bundles, their check.

- ``keygen DIR [--name NAME]``: writes ``DIR/NAME.key`` (private, PEM, mode 0600) and ``DIR/NAME.pub``
  and prints the key id; never overwrites (exit 2 when a file exists).
- ``sign FILE --key KEY -o BUNDLE [--sequence N] [--rollback]``: FILE is a policy (a new bundle; the
  sequence defaults to the current Unix time) or a bundle (adds this key's signature to it).
- ``verify BUNDLE --trusted PUB... [--previous POLICY_OR_BUNDLE] [--min-sequence N] [--json]``: exit 0
  and a summary when the bundle is valid; exit 2 and the reason otherwise (unsigned, bad signature,
  untrusted key, older than ``--min-sequence`` without being a signed rollback, a risky change against
  ``--previous`` with fewer than two signatures). See ``agentic_ray.policies.signing``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["register_signing"]


def register_signing(sub: Any) -> None:
    """Add ``keygen``, ``sign`` and ``verify`` to the ``policy`` sub-command parser ``sub``."""
    keygen = sub.add_parser("keygen", help="create an Ed25519 key pair for signing policies")
    keygen.add_argument("dir", metavar="DIR")
    keygen.add_argument("--name", default="policy-signing", help="file name stem (default policy-signing)")
    keygen.set_defaults(func=_keygen)

    sign = sub.add_parser("sign", help="sign a policy (or co-sign a bundle) into a bundle")
    sign.add_argument("file", metavar="POLICY_OR_BUNDLE")
    sign.add_argument("--key", required=True, metavar="KEY", help="private key (PEM) from 'policy keygen'")
    sign.add_argument("-o", "--out", required=True, metavar="BUNDLE")
    sign.add_argument("--sequence", type=int, help="increasing change number (default: current Unix time)")
    sign.add_argument("--rollback", action="store_true", help="sign as an explicit rollback to this policy")
    sign.set_defaults(func=_sign)

    verify = sub.add_parser("verify", help="check a signed bundle; exit 0 valid, 2 refused")
    verify.add_argument("bundle", metavar="BUNDLE")
    verify.add_argument("--trusted", nargs="+", required=True, metavar="PUB", help="trusted public keys (PEM)")
    verify.add_argument("--previous", metavar="POLICY_OR_BUNDLE", help="the policy in force (risk check)")
    verify.add_argument("--min-sequence", type=int, help="the highest sequence applied so far")
    verify.add_argument("--budget-raise-fraction", type=float, default=0.5, help="risky budget raise (0.5)")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=_verify)


def _keygen(args: argparse.Namespace) -> int:
    from agentic_ray.cli import UsageError
    from agentic_ray.policies.signing import generate_keypair, key_id, load_private_key

    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{args.name}.key", directory / f"{args.name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path}: exists; not overwritten")
    private_pem, public_pem = generate_keypair()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    public_path.write_bytes(public_pem)
    kid = key_id(load_private_key(private_path).public_key())
    print(f"key id {kid}: private {private_path} (keep it secret), public {public_path}")
    return 0


def _read_policy_or_bundle(path: str) -> Any:
    """A ``PolicyBundle`` when the file is one, else the ``Policy`` it holds."""
    from agentic_ray.policies import load_policy
    from agentic_ray.policies.signing import BUNDLE_KIND, PolicyBundle

    text = Path(path).read_text()
    if text.lstrip().startswith("{") and BUNDLE_KIND in text:
        return PolicyBundle.from_json(text)
    return load_policy(path)


def _sign(args: argparse.Namespace) -> int:
    from agentic_ray.cli import UsageError
    from agentic_ray.policies.signing import PolicyBundle, load_private_key, sign_bundle

    source = _read_policy_or_bundle(args.file)
    key = load_private_key(args.key)
    try:
        if isinstance(source, PolicyBundle):
            if args.sequence is not None or args.rollback:
                raise UsageError("--sequence/--rollback: a co-signature signs the bundle's statement as it is")
            bundle = sign_bundle(source, key)
        else:
            sequence = args.sequence if args.sequence is not None else int(time.time())
            bundle = sign_bundle(source, key, sequence=sequence, rollback=args.rollback)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    Path(args.out).write_text(bundle.to_json() + "\n")
    statement = bundle.statement
    print(f"{args.out}: {statement['policy_version']} sequence {statement['sequence']}"
          f"{' (rollback)' if statement.get('rollback') else ''}, {len(bundle.signatures)} signature(s)")  # fmt: skip
    return 0


def _verify(args: argparse.Namespace) -> int:
    from agentic_ray.errors import PolicySignatureError
    from agentic_ray.policies.signing import PolicyBundle, load_public_keys, verify_bundle

    try:
        bundle = PolicyBundle.from_json(Path(args.bundle).read_text())
        trusted = load_public_keys(args.trusted)
        previous = None
        if args.previous:
            prev = _read_policy_or_bundle(args.previous)
            if isinstance(prev, PolicyBundle):
                from agentic_ray.policies import parse_policy

                prev = parse_policy(prev.policy_yaml, source=args.previous)
            previous = prev
        verified = verify_bundle(bundle, trusted, highest_sequence=args.min_sequence, previous=previous,
                                 budget_raise_fraction=args.budget_raise_fraction)  # fmt: skip
    except PolicySignatureError as exc:
        if args.json:
            print(json.dumps({"valid": False, "reason": exc.reason, "detail": exc.detail}, indent=2))
        print(f"agentic-ray: refused: {exc}", file=sys.stderr)
        return 2
    summary = {"valid": True, "policy": verified.policy.name, "version": verified.policy.version,
               "sha256": verified.policy.sha256, "sequence": verified.sequence, "rollback": verified.rollback,
               "key_ids": list(verified.key_ids), "risks": list(verified.risks)}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"valid: {summary['policy']} {summary['version']} (sha256 {summary['sha256'][:12]}), sequence "
              f"{summary['sequence']}{' rollback' if summary['rollback'] else ''}, signed by "
              f"{', '.join(summary['key_ids'])}")  # fmt: skip
        for risk in summary["risks"]:
            print(f"  risky (two signatures present): {risk}")
    return 0
