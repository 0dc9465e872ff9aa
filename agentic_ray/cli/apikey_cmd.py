"""``agentic-ray apikey create --tenant T [--keys-file F]``: a new API key for an HTTP entry.

Prints the key once (it is not stored anywhere) and appends its hashed line to the keys file that a
deployment's ``api_keys=`` names (``serve._http_auth``); without ``--keys-file`` prints the line to add.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apikey", help="create API keys for HTTP callers (stored hashed, one tenant each)")
    actions = p.add_subparsers(dest="apikey_command", metavar="ACTION", parser_class=type(p))
    create = actions.add_parser("create", help="make a key for a tenant and add its hash to a keys file")
    create.add_argument("--tenant", required=True, help="the tenant the key identifies (a policy tenant)")
    create.add_argument("--keys-file", help="append the key's hashed line here (created 0600 if missing)")
    create.set_defaults(func=_create)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _create(args: argparse.Namespace) -> int:
    from agentic_ray.serve._http_auth import key_line, load_api_keys, new_api_key

    key = new_api_key()
    line = key_line(key, args.tenant)  # ValueError (exit 2) for a name that cannot be a tenant
    if args.keys_file:
        if os.path.exists(args.keys_file):
            load_api_keys(args.keys_file)  # refuse to append to a file that does not parse
        fd = os.open(args.keys_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        print(f"added the key's hash for tenant {args.tenant} to {args.keys_file}", file=sys.stderr)
    else:
        print(f"add this line to the keys file:\n{line}", file=sys.stderr)
    print(key)
    return 0
