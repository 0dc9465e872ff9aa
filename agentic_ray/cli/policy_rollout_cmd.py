"""``agentic-ray policy apply|promote|rollback|history``: policy rollout on a running cluster.

Each connects to the cluster (``--address``, else ``RAY_ADDRESS``, else the local one) and calls its
GlobalCoordinator (``agentic-global`` in namespace ``agentic``), as ``agentic-ray status`` does:

- ``apply FILE [--canary F | --canary-nodes ID,... | --shadow] [--window S] [--margin M]
  [--min-samples N] [--p99-slack X]``: validate the
  file here (every problem printed, exit 2, nothing sent), then make it active, or start it as a canary
  on that fraction (or those nodes) of the cluster, or in shadow. The coordinator refuses (exit 2,
  nothing changed) a canary fraction outside (0, 1), a trial while another runs, a canary that changes
  where data may go, and an ``actions`` rule naming a deployment it does not know (with the rule id);
- ``promote``: the running canary or shadow version becomes active everywhere;
- ``rollback``: the running canary or shadow version is dropped, else the previous version returns;
- ``history``: every kept version and trial with its sha256, state, when and by whom.

``promote`` / ``rollback`` with nothing to promote or roll back: a clear error, exit 2, nothing changed.
No cluster or no coordinator: one line and exit 2, as ``status``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any

__all__ = ["register_rollout"]


def register_rollout(sub: Any) -> None:
    """Add ``apply``, ``promote``, ``rollback`` and ``history`` under ``agentic-ray policy``."""
    apply = sub.add_parser("apply", help="make a policy active on a running cluster (or a canary, or a shadow)")
    apply.add_argument("file", metavar="FILE")
    mode = apply.add_mutually_exclusive_group()
    mode.add_argument("--canary", type=float, metavar="F", help="run it as a canary on this fraction, in (0, 1)")
    mode.add_argument("--canary-nodes", metavar="ID,...", help="run it as a canary on these nodes")
    mode.add_argument("--shadow", action="store_true", help="evaluate it beside the active policy, acting on nothing")
    apply.add_argument("--window", type=float, default=60.0, metavar="S", help="canary judged over S seconds")
    margin_help = "roll the canary back when its burn rate exceeds the baseline's by more than M"
    apply.add_argument("--margin", type=float, default=1.0, metavar="M", help=margin_help)
    apply.add_argument("--min-samples", type=int, default=20, metavar="N",
                       help="judge the canary once it served N requests in the window")  # fmt: skip
    apply.add_argument("--p99-slack", type=float, default=1.2, metavar="X",
                       help="roll the canary back when, at the end of the window, its p99 exceeds X times the "
                            "baseline's (default 1.2)")  # fmt: skip
    apply.add_argument("--no-wait", action="store_true", help="do not wait for the agents' acknowledgements")
    _common(apply)
    apply.set_defaults(func=_apply)
    for name, helptext in (
        ("promote", "make the running canary or shadow policy active everywhere"),
        ("rollback", "drop the running canary or shadow policy, else return to the previous version"),
        ("history", "policy versions and trials: sha256, state, when, by whom"),
    ):
        p = sub.add_parser(name, help=helptext)
        _common(p)
        p.set_defaults(func=_simple, what=name)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else the local cluster)")
    p.add_argument("--namespace", default="agentic", help="namespace of the control plane (default: agentic)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the coordinator")
    p.add_argument("--json", action="store_true", help="print JSON")


def _apply(args: argparse.Namespace) -> int:
    from agentic_ray.cli import UsageError
    from agentic_ray.control._trial import CanarySettings, check_fraction
    from agentic_ray.policies import load_policy

    if args.canary is not None:
        check_fraction(args.canary)  # ValueError: exit 2 before connecting
    CanarySettings(args.window, args.margin, args.min_samples, args.p99_slack)
    policy = load_policy(args.file)  # PolicyValidationError: every problem, exit 2
    nodes = [n.strip() for n in (args.canary_nodes or "").split(",") if n.strip()]
    if args.canary_nodes is not None and not nodes:
        raise UsageError("--canary-nodes: give at least one node id")
    trial = None
    if args.canary is not None or nodes or args.shadow:
        trial = {"canary": args.canary, "canary_nodes": nodes, "shadow": args.shadow, "window_s": args.window,
                 "margin": args.margin, "min_samples": args.min_samples, "p99_slack": args.p99_slack,
                 "by": _who()}  # fmt: skip
    return _run(args, "apply_policy", policy, os.path.abspath(args.file), not args.no_wait, trial)


def _simple(args: argparse.Namespace) -> int:
    method = {"promote": "promote_policy", "rollback": "rollback_policy", "history": "history"}[args.what]
    return _run(args, method)


def _who() -> str | None:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return None


def _run(args: argparse.Namespace, method: str, *call_args: Any) -> int:
    import logging

    import ray

    from agentic_ray.cli.status_cmd import _first_line

    address = args.address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(address=address, namespace=args.namespace, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:
        return _fail(args, f"cannot connect to the Ray cluster at {address}: {_first_line(exc)}")
    try:
        try:
            coordinator = ray.get_actor("agentic-global", namespace=args.namespace)
        except ValueError:
            return _fail(args, "no GlobalCoordinator on this cluster; start the control plane with agentic_ray.init()")
        try:
            answer = ray.get(getattr(coordinator, method).remote(*call_args), timeout=args.timeout)
        except ray.exceptions.GetTimeoutError:
            return _fail(args, f"the GlobalCoordinator did not answer within {args.timeout:g} s")
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None  # ValueError / PolicyValidationError: exit 2 with the reason
            return _fail(args, _first_line(exc))
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True, default=str))
    elif method == "history":
        print(format_history(answer))
    else:
        print(_summary(method, answer))
    return 0


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"agentic-ray policy: {message}", file=sys.stderr)
    return 2


def _summary(method: str, answer: dict[str, Any]) -> str:
    trial = answer.get("trial")
    if trial and method == "apply_policy":
        where = f" on nodes {', '.join(n[:12] for n in trial['nodes']) or '-'} and replicas {len(trial['replicas'])}" \
            if trial["kind"] == "canary" else ""  # fmt: skip
        return f"{trial['kind']} started: {trial['version']} (sha256 {trial['sha256'][:12]}){where}"
    if trial:
        return f"{trial['kind']} {trial['state'].replace('_', ' ')}: {trial['version']} ({trial['reason']})"
    lead = {"promote_policy": "promoted", "rollback_policy": "rolled back to", "apply_policy": "active"}[method]
    acked, missing = answer.get("acked") or [], answer.get("missing") or []
    return (f"{lead}: {answer.get('version')} (sha256 {str(answer.get('sha256'))[:12]}, revision "
            f"{answer.get('revision')}); agents acked {len(acked)}/{len(acked) + len(missing)}")  # fmt: skip


def format_history(rows: list[dict[str, Any]]) -> str:
    """The text table of ``policy history``."""
    head = f"{'version':<20} {'sha256':<12} {'state':<20} {'when (UTC)':<19} {'by':<12} reason"
    out = [head, "-" * len(head)]
    for r in rows:
        when = datetime.datetime.fromtimestamp(float(r["at"]), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        out.append(f"{str(r['version'])[:20]:<20} {str(r['sha256'])[:12]:<12} {r['state']:<20} {when:<19} "
                   f"{str(r.get('by') or '-')[:12]:<12} {r.get('reason') or ''}".rstrip())  # fmt: skip
    return "\n".join(out)
