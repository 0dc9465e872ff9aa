"""``agentic-ray trace verify|show|head``: check and read a decision log (``agentic_ray.telemetry.audit``).

- ``verify FILE [--expect-head HASH] [--json]``: walk the hash chain. Exit 0 when intact, 1 when the log
  was changed (each problem printed as ``FILE:LINE: record N: kind: message``; the first one is where
  it was first changed), 2 when the file is missing or unreadable. Dropping records from the *end*
  leaves a valid shorter chain: only ``--expect-head`` with a hash published earlier (a checkpoint's
  ``running_hash``, ``trace head``'s output, ``DecisionLog.head``) detects it.
- ``show --request ID FILE... [--json]``: the records of one request (decisions, completion), from one
  log or several (one per process, in time order); exit 1 when
  there are none.
- ``head FILE``: record count and last hash, to keep as an anchor.
- ``export FILE... --csv OUT``: the recorded arrivals (time, class, tenant, workflow, stage, model, data
  class, observed service time, outcome; ``telemetry.arrivals``) for ``agentic-ray sim SCENARIO --replay
  OUT --policy NEW.yaml``; exit 1 when the logs hold no request.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``trace`` and its sub-commands to the ``agentic-ray`` parser."""
    trace = subparsers.add_parser("trace", help="verify and read the tamper-evident decision log")
    sub = trace.add_subparsers(dest="trace_command", metavar="SUBCOMMAND")
    trace.set_defaults(func=lambda args: _no_subcommand(trace))

    verify = sub.add_parser(
        "verify",
        help="check the hash chain; exit 1 and say where when it was changed",
        description="Check the hash chain of a decision log: exit 0 intact, 1 changed (line and record of each "
        "problem), 2 missing/unreadable. Records dropped from the END leave a valid shorter chain: detect that "
        "with --expect-head and a hash kept elsewhere (a checkpoint's running_hash, 'agentic-ray trace head').",
    )
    verify.add_argument("file", metavar="FILE")
    verify.add_argument(
        "--expect-head",
        metavar="HASH",
        help="a record hash published earlier that must still be in the log (detects truncation)",
    )
    verify.add_argument(
        "--key",
        metavar="FILE|env:NAME",
        help="check a keyed log's HMAC chain with this key: a file holding it, or env:NAME for a variable",
    )
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=_verify)

    show = sub.add_parser("show", help="print the records of one request")
    show.add_argument("--request", "-r", required=True, metavar="ID", help="request id")
    show.add_argument("file", metavar="FILE", nargs="+", help="decision logs (one per process: give them all to "
                      "follow a request across the ingress, routers and replicas)")  # fmt: skip
    show.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    show.set_defaults(func=_show)

    export = sub.add_parser("export", help="write the recorded arrivals as CSV, for 'agentic-ray sim --replay'")
    export.add_argument("file", metavar="FILE", nargs="+", help="decision logs (one per process: give them all)")
    export.add_argument("--csv", required=True, metavar="OUT", help="the CSV file to write")
    export.set_defaults(func=_export)

    head = sub.add_parser("head", help="print the record count and last hash (an anchor for --expect-head)")
    head.add_argument("file", metavar="FILE")
    head.set_defaults(func=_head)


def _export(args: argparse.Namespace) -> int:
    from agentic_ray.telemetry.arrivals import export_arrivals, write_csv

    try:
        rows = export_arrivals(args.file)
    except OSError as exc:
        raise _read_error(getattr(exc, "filename", None) or args.file[0], exc) from None
    if not rows:
        print(f"agentic-ray trace export: no request in {', '.join(args.file)}", file=sys.stderr)
        return 1
    write_csv(rows, args.csv)
    served = sum(1 for r in rows if r["service_ms"] != "")
    print(f"{args.csv}: {len(rows)} arrivals over {rows[-1]['at_s']:.1f} s ({served} with an observed service time)")
    return 0


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _read_error(path: str, exc: OSError) -> Exception:
    from agentic_ray.cli import UsageError

    reason = exc.strerror or type(exc).__name__
    return UsageError(f"{path}: cannot read the decision log: {reason}")


def _read_key(spec: str) -> bytes:
    """The key named by ``--key``: ``env:NAME`` (the variable's UTF-8 bytes) or a file (its bytes,
    trailing whitespace stripped), as the writer reads ``AGENTIC_DECISION_LOG_KEY[_FILE]``."""
    import os

    from agentic_ray.cli import UsageError

    if spec.startswith("env:"):
        value = os.environ.get(spec[4:])
        if not value:
            raise UsageError(f"--key: environment variable {spec[4:]!r} is not set or empty")
        return value.encode("utf-8")
    try:
        with open(spec, "rb") as fh:
            key = fh.read().rstrip()
    except OSError as exc:
        raise UsageError(f"--key: cannot read {spec}: {exc.strerror or exc}") from None
    if not key:
        raise UsageError(f"--key: {spec} is empty")
    return key


def _verify(args: argparse.Namespace) -> int:
    from agentic_ray.cli import UsageError
    from agentic_ray.telemetry.audit_verify import verify_log

    expect = args.expect_head
    if expect is not None and (len(expect) != 64 or any(c not in "0123456789abcdef" for c in expect)):
        raise UsageError(f"--expect-head: expected a 64-character lower-case hex sha256, got {expect!r}")
    key = _read_key(args.key) if args.key else None
    try:
        report = verify_log(args.file, expect_head=expect, key=key)
    except OSError as exc:
        raise _read_error(args.file, exc) from None
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    if report.ok:
        anchor = f"; anchor found at record {report.anchor_index}" if expect else ""
        print(f"{args.file}: intact: {report.head.count} records, head {report.head.hash}{anchor}")
        return 0
    first = report.first_problem
    print(
        f"{args.file}: TAMPERED or damaged: {len(report.problems)} problem(s); first at line {first.line} "
        f"(record {first.index})",
        file=sys.stderr,
    )
    for p in report.problems[:50]:
        print(f"{args.file}:{p.line}: record {p.index}: {p.kind}: {p.message}", file=sys.stderr)
    if len(report.problems) > 50:
        print(f"... and {len(report.problems) - 50} more", file=sys.stderr)
    return 1


def _show(args: argparse.Namespace) -> int:
    from agentic_ray.telemetry.audit_verify import find_records

    files = args.file if isinstance(args.file, list) else [args.file]
    found = []
    for path in files:
        try:
            found.extend((path, line, rec) for line, rec in find_records(path, args.request))
        except OSError as exc:
            raise _read_error(path, exc) from None
    if not found:
        print(f"{', '.join(files)}: no records for request {args.request!r}", file=sys.stderr)
        return 1
    if len(files) > 1:  # records of several processes: in time order
        found.sort(key=lambda f: (f[2].get("ts") or 0.0, f[1]))
    for path, line, rec in found:
        if args.json:
            print(json.dumps({"line": line, **({"file": path} if len(files) > 1 else {}), **rec}, sort_keys=True))
            continue
        body = rec.get("body", {})
        where = f"{path}:" if len(files) > 1 else ""
        print(f"{where}line {line}  record {rec.get('i')}  {rec.get('kind')}  ts={rec.get('ts')}")
        for key in sorted(body):
            if key != "request_id":
                print(f"    {key}: {json.dumps(body[key], sort_keys=True)}")
    return 0


def _head(args: argparse.Namespace) -> int:
    from agentic_ray.telemetry.audit_verify import verify_log

    try:
        report = verify_log(args.file)
    except OSError as exc:
        raise _read_error(args.file, exc) from None
    print(f"{report.head.count} {report.head.hash}")
    if not report.ok:
        print(f"{args.file}: warning: the log does not verify (run 'agentic-ray trace verify')", file=sys.stderr)
        return 1
    return 0
