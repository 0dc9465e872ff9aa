"""``agentic-ray status [--address ADDR] [--json]``: what the control plane of a running cluster sees.

Connects to the cluster at ``--address`` (else ``RAY_ADDRESS``, else the local one, ``auto``), finds the
GlobalCoordinator (named actor ``agentic-global`` in namespace ``agentic``) and prints its ``status()``:
the active policy version, the node agents per zone with their accelerator state, per class (and
workflow) the budget against the observed p99 and the burn rates, and the active alerts.

``RAY_AUTH_MODE`` must match the cluster's: a cluster started with token auth (Ray's default for a
new local ``ray.init()``) needs ``RAY_AUTH_MODE=token`` and the token (``~/.ray/auth_token`` or
``RAY_AUTH_TOKEN``); one started with ``RAY_AUTH_MODE=disabled`` needs ``disabled``. A mismatch is
reported as an authentication error. No cluster, no coordinator, or no answer within ``--timeout``:
a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
from typing import Any

__all__ = ["format_status", "register"]

_GLOBAL_NAME = "agentic-global"
_NAMESPACE = "agentic"


def register(subparsers: Any) -> None:
    """Add ``status`` to the ``agentic-ray`` parser."""
    status = subparsers.add_parser(
        "status",
        help="policy, agents, budgets vs p99 and alerts of a running cluster",
        description="Show what the GlobalCoordinator of a running cluster sees. RAY_AUTH_MODE must match the "
        "cluster's: 'token' (with ~/.ray/auth_token or RAY_AUTH_TOKEN) for a token-auth cluster, 'disabled' "
        "for one started with RAY_AUTH_MODE=disabled. Exit 2 when no cluster or no coordinator is found.",
    )
    status.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else the local cluster)")
    status.add_argument("--namespace", default=_NAMESPACE, help="namespace of the control plane (default: agentic)")
    status.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the coordinator")
    status.add_argument("--json", action="store_true", help="print the coordinator's status as JSON")
    status.set_defaults(func=_status)


def _gcs_reachable(address: str, timeout_s: float) -> bool:
    """True unless ``address`` is a plain ``host:port`` with nothing listening (checked in ~timeout_s)."""
    if "://" in address or ":" not in address:
        return True
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _status(args: argparse.Namespace) -> int:
    from agentic_ray.cli import UsageError

    if not args.timeout > 0:
        raise UsageError(f"--timeout: must be > 0, got {args.timeout!r}")
    address = args.address or os.environ.get("RAY_ADDRESS") or "auto"
    if address != "auto" and not _gcs_reachable(address, min(args.timeout, 3.0)):
        return _fail(f"no Ray cluster at {address} (nothing listens there); check --address / RAY_ADDRESS")

    import logging

    import ray

    try:
        ray.init(address=address, namespace=args.namespace, log_to_driver=False, logging_level=logging.ERROR)
    except ConnectionError as exc:
        return _fail(f"no Ray cluster found at {address}: {_first_line(exc)}")
    except Exception as exc:
        hint = ""
        if "auth" in str(exc).lower() or "token" in str(exc).lower():
            hint = " (RAY_AUTH_MODE must match the cluster's: 'token' with its token, or 'disabled')"
        return _fail(f"cannot connect to the Ray cluster at {address}: {_first_line(exc)}{hint}")
    try:
        where = address if address != "auto" else "the local cluster"
        try:
            coordinator = ray.get_actor(_GLOBAL_NAME, namespace=args.namespace)
        except ValueError:
            return _fail(
                f"connected to {where}, but there is no GlobalCoordinator ({_GLOBAL_NAME!r} in namespace "
                f"{args.namespace!r}); start the control plane with agentic_ray.init(). Serve deployments "
                "run on their deploy-time policies"
            )
        try:
            status = ray.get(coordinator.status.remote(), timeout=args.timeout)
        except ray.exceptions.GetTimeoutError:
            return _fail(f"the GlobalCoordinator did not answer within {args.timeout:g} s")
        except ray.exceptions.RayError as exc:
            return _fail(f"the GlobalCoordinator failed to report its status: {_first_line(exc)}")
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True, default=str))
    else:
        print(format_status(status))
    return 0


def _fail(message: str) -> int:
    print(f"agentic-ray status: {message}", file=sys.stderr)
    return 2


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _num(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}{unit}"
    return f"{value}{unit}"


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={_compact(v)}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, (list, tuple)):
        return ",".join(_compact(v) for v in value) or "-"
    return _num(value)


def format_status(status: dict[str, Any]) -> str:
    """The text form of ``GlobalCoordinator.status()`` (unknown fields are skipped, missing ones shown '-')."""
    out: list[str] = []
    pol = status.get("policy") or {}
    acked, missing = pol.get("acked") or [], pol.get("missing") or []
    out.append(
        f"policy  {pol.get('name', '-')}  version {pol.get('version', '-')}  sha256 {str(pol.get('sha256', '-'))[:12]}"
        f"  revision {pol.get('revision', '-')}  agents acked {len(acked)}/{len(acked) + len(missing)}"
    )
    if missing:
        out.append(f"  not yet acked: {', '.join(str(m)[:12] for m in missing)}")
    from agentic_ray.control._serve_state import niced

    niceness = niced(status.get("process"))
    if niceness is not None:
        out.append(f"  warning: the GlobalCoordinator runs at niceness {niceness}: the control plane was started "
                   "without RAY_worker_niceness=0 (README: Labelled clusters)")  # fmt: skip
    zones = status.get("zones") or {}
    out.append(f"zones   {len(zones)}")
    for zone in sorted(zones):
        agents = zones[zone]
        out.append(f"  {zone}: {len(agents)} agent(s)")
        for a in agents:
            age = a.get("report_age_s")
            out.append(
                f"    {str(a.get('node_id', '-'))[:12]}  {a.get('accelerator', '-'):<4} "
                f"inflight {_compact(a.get('inflight_by_class') or {})}  "
                f"report {_num(age, ' s') + ' ago' if age is not None else 'never'}"
            )
            state = a.get("accelerator_state")
            if state:
                out.append(f"      accelerator: {_compact(state)}")
        by_niceness: dict[int, list[str]] = {}
        for a in agents:
            agent_niceness = niced(a.get("process"))
            if agent_niceness is not None:
                by_niceness.setdefault(agent_niceness, []).append(str(a.get("node_id", "-"))[:12])
        for agent_niceness, nodes in sorted(by_niceness.items()):
            names = ", ".join(sorted(nodes))
            out.append(f"    warning: {len(nodes)} agent(s) run at niceness {agent_niceness} ({names}): "
                       "started without RAY_worker_niceness=0 (README: Labelled clusters)")  # fmt: skip
    classes = status.get("classes") or {}
    out.append(f"classes {len(classes)}")
    for key in sorted(classes):
        fig = classes[key]
        budget, p99 = fig.get("budget_ms"), fig.get("p99_ms")
        verdict = "-" if p99 is None or budget is None else ("OVER" if p99 > budget else "ok")
        burns = "  ".join(f"{k}={_num(v)}" for k, v in sorted(fig.items()) if k.startswith("burn_"))
        out.append(
            f"  {key:<24} budget {_num(budget, ' ms'):>10}  p99 {_num(p99, ' ms'):>10}  "
            f"n={fig.get('samples', '-')}  {verdict}  {burns}".rstrip()
        )
    unsatisfiable = status.get("unsatisfiable_rules") or []
    if unsatisfiable:
        out.append(f"rules no node satisfies  {len(unsatisfiable)} (their requests are refused: NoEligibleNode)")
        for r in unsatisfiable:
            out.append(f"  {r.get('rule_id')}  require {_compact(r.get('require') or {})}  -> {r.get('hint')}")
    alerts = status.get("alerts") or []
    out.append(f"alerts  {len(alerts) or 'none'}")
    for a in alerts:
        where = f"  deployment {a['deployment']}" if a.get("deployment") else ""
        out.append(
            f"  {a.get('id', a.get('kind'))}  value {_num(a.get('value'))}  threshold {_num(a.get('threshold'))}"
            + where
        )
    out.extend(format_actions(status.get("actions"), status.get("trial")))
    out.extend(format_serve(status.get("serve") or {}))
    return "\n".join(out)


def format_actions(actions: dict[str, Any] | None, trial: dict[str, Any] | None) -> list[str]:
    """The actions in force and their last records, and a running canary or shadow policy."""
    out: list[str] = []
    if actions and actions.get("rules"):
        active = actions.get("active") or []
        dry = " (dry run)" if actions.get("dry_run") else ""
        out.append(f"actions {len(actions['rules'])} rule(s){dry}, {len(active) or 'none'} active")
        for a in active:
            state = "restoring" if a.get("restoring") else "in force"
            out.append(
                f"  {a.get('rule')}  {a.get('action')} on {a.get('target')}  {state}  level {_num(a.get('level'))}"
            )
        for r in (actions.get("log") or [])[-5:]:
            out.append(f"  log {r.get('event'):<8} {r.get('rule')}  {r.get('action')} {r.get('target') or ''}  "
                       f"{r.get('alert') or ''}".rstrip())  # fmt: skip
    if trial:
        where = ""
        if trial.get("kind") == "canary":
            where = f"  nodes {len(trial.get('nodes') or [])}, replicas {len(trial.get('replicas') or [])}"
        else:
            where = "  " + _compact(trial.get("shadow") or {})
        out.append(f"trial   {trial.get('kind')} {trial.get('version')} for {_num(trial.get('age_s'), ' s')}{where}")
    return out


def format_serve(serve: dict[str, Any]) -> list[str]:
    """The ``serve`` section as table lines: per deployment its policy (and a refusal), its routers and
    replicas with the version each runs, and per replica and class offered rate, admitted, shed, p99 and
    budget; then a warning for each process started without agentic-ray's environment."""
    if not serve:
        return []
    if serve.get("control_plane") is False:
        return [f"serve   {serve.get('detail') or 'no control plane'}"]
    deployments = serve.get("deployments") or {}
    out = [f"serve   {len(deployments) or 'no'} deployment(s)"]
    for name in sorted(deployments):
        d = deployments[name]
        state = "acked" if d.get("acked") else f"waiting for {len(d.get('missing') or [])}"
        out.append(f"  {name}  policy {d.get('policy_version', '-')} ({d.get('policy_source', '-')})  {state}")
        refusal = d.get("refusal")
        if refusal:
            out.append(f"    refused {refusal.get('version', '-')}: {refusal.get('reason', '-')}")
        for r in d.get("routers") or []:
            out.append(f"    router  {r.get('router_id', '-')!s:<36} policy {r.get('policy_version', '-')}")
        for rep in d.get("replicas") or []:
            out.append(
                f"    replica {rep.get('replica_id', '-')!s:<36} policy {rep.get('policy_version', '-')}  "
                f"{rep.get('zone') or '-'}/{rep.get('accelerator') or '-'}  node {str(rep.get('node_id') or '-')[:12]}"
            )
            for qos, c in sorted((rep.get("classes") or {}).items()):
                out.append(
                    f"      {qos:<12} offered {_num(c.get('offered_rps'), '/s'):>9}"
                    f"  admitted {_num(c.get('admitted')):>5}  shed {_num(c.get('shed')):>5}"
                    f"  p99 {_num(c.get('p99_ms'), ' ms'):>10}  budget {_num(c.get('budget_ms'), ' ms'):>10}"
                )
    for line in serve.get("environment") or []:
        out.append(f"  warning: {line} (README: Labelled clusters)")
    return out
