"""``agentic-ray policy check|explain|diff|schema``: validate, explain, compare and describe policies.

- ``check FILE...``: exit 0 when every file is valid; otherwise every problem of every file is printed
  as ``FILE:LINE: field.path: reason`` on stderr and the exit code is 2. A valid policy whose regulated
  data classes (``requires_residency``) leave request shapes without a residency rule gets a warning line
  per (data class, tenant): those requests will be refused.
- ``explain FILE --request key=value ... [--node zone=..,accelerator=..,label.k=v] [--alert kind=..,class=..]
  [--json]``: the class, budget, stage budgets, placement constraints, the entitlement decision and the
  rule ids that produced them; a request its caller is not entitled to prints the refusal and the rule
  behind it (exit 1). The policy's ``actions`` rules, and per ``--alert`` the rules that answer it.
- ``diff OLD NEW [--json]``: the changes in meaning (classes, budgets, rules), not a text diff.
- ``schema``: the JSON Schema of the policy format.
- ``keygen``, ``sign``, ``verify``: signed policy bundles (``policy_signing``).
- ``apply`` (``--canary F`` / ``--shadow``), ``promote``, ``rollback``, ``history``: rollout on a running
  cluster (``policy_rollout_cmd``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agentic_ray.errors import Problem

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``policy`` and its sub-commands to the ``agentic-ray`` parser."""
    policy = subparsers.add_parser("policy", help="validate, explain and compare policy files")
    sub = policy.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    policy.set_defaults(func=lambda args: _no_subcommand(policy))

    check = sub.add_parser("check", help="validate policy files; exit 2 listing every problem")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=_check)

    explain = sub.add_parser("explain", help="classify one request and say which rules decided what")
    explain.add_argument("file", metavar="FILE")
    explain.add_argument(
        "--request",
        "-r",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="request attributes: qos, budget_ms, tenant, data_class, model, workflow, stage",
    )
    explain.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="zone=..,accelerator=..,label.KEY=..",
        help="say whether this node is allowed, and by which rules (repeatable)",
    )
    explain.add_argument(
        "--alert",
        action="append",
        default=[],
        metavar="kind=..,class=..,workflow=..,deployment=..",
        help="say which actions rules answer this alert (kind burn_rate or p99_over_budget; repeatable)",
    )
    explain.add_argument("--now", type=float, default=0.0, help="clock reading for the deadline (default 0)")
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.set_defaults(func=_explain)

    diff = sub.add_parser("diff", help="changes in meaning between two policies")
    diff.add_argument("old", metavar="OLD")
    diff.add_argument("new", metavar="NEW")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.set_defaults(func=_diff)

    schema = sub.add_parser("schema", help="print the JSON Schema of the policy format")
    schema.set_defaults(func=_schema)

    from agentic_ray.cli.policy_rollout_cmd import register_rollout
    from agentic_ray.cli.policy_signing import register_signing

    register_signing(sub)
    register_rollout(sub)


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    from agentic_ray.errors import PolicyValidationError
    from agentic_ray.policies import load_policy

    failed = False
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyValidationError as exc:
            failed = True
            for problem in exc.problems:
                print(problem.format(), file=sys.stderr)
            continue
        except OSError as exc:
            failed = True
            print(Problem("", exc.strerror or str(exc), None, path).format(), file=sys.stderr)
            continue
        print(f"{path}: ok ({policy.name} {policy.version}, {len(policy.rules)} rules, sha256 {policy.sha256[:12]})")
        for line in _uncovered_report(policy) + _unplaceable_report(policy):
            print(f"{path}: warning: {line}")
    return 2 if failed else 0


def _unplaceable_report(policy: Any) -> list[str]:
    """One line per set of rules that some request shapes match together and no node can satisfy."""
    by_rules: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for shape in policy.unplaceable_shapes():
        by_rules.setdefault(tuple(shape["rule_ids"]), []).append(shape)
    lines = []
    for rule_ids, shapes in by_rules.items():
        first = shapes[0]
        who = ", ".join(f"{k} {first[k]}" for k in ("tenant", "data_class") if first[k] is not None)
        lines.append(
            f"rules {', '.join(rule_ids)} cannot all hold on any node ({first['conflict']}): requests of "
            f"{who or 'any caller'} that match them ({len(shapes)} class/workflow shape(s)) are never placed"
        )
    return lines


def _uncovered_report(policy: Any) -> list[str]:
    """One line per (data class, tenant) whose requests a residency-requiring data class refuses."""
    by: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for shape in policy.uncovered_shapes():
        by.setdefault((shape["data_class"], shape["tenant"]), []).append(shape)
    total = len(policy.classes) * (len(policy.workflows) + 1)
    lines = []
    for (data_class, tenant), shapes in by.items():
        who = f"tenant {tenant}" if tenant is not None else "requests without a tenant"
        if len(shapes) == total:
            scope = "whatever their class or workflow"
        else:
            scope = (
                "for "
                + ", ".join(
                    f"class {s['class']}" + (f"/workflow {s['workflow']}" if s["workflow"] else "") for s in shapes[:6]
                )
                + (f" and {len(shapes) - 6} more" if len(shapes) > 6 else "")
            )
        lines.append(
            f"data class {data_class!r} requires residency and no rule keeps it in a zone for {who} "
            f"({scope}): such requests are refused"
        )
    return lines


def _parse_pairs(items: list[str], what: str) -> dict[str, str]:
    from agentic_ray.cli import UsageError

    out: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            if not pair.strip():
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--{what}: expected KEY=VALUE, got {pair!r}")
            out[key.strip()] = value.strip()
    return out


def _node(spec: str):
    from agentic_ray.cli import UsageError
    from agentic_ray.policies import NodeAttrs

    values = _parse_pairs([spec], "node")
    fields: dict[str, Any] = {"labels": {}}
    for key, value in values.items():
        if key.startswith(("label.", "labels.")):
            fields["labels"][key.split(".", 1)[1]] = value
        elif key in ("zone", "accelerator", "node_id"):
            fields[key] = value
        else:
            raise UsageError(f"--node: unknown attribute {key!r}; use zone, accelerator, node_id or label.KEY")
    return NodeAttrs(**fields)


def _explain(args: argparse.Namespace) -> int:
    from agentic_ray.cli import UsageError
    from agentic_ray.errors import EntitlementError, PolicyError
    from agentic_ray.policies import RequestMeta, load_policy

    policy = load_policy(args.file)
    request = RequestMeta.from_mapping(_parse_pairs(args.request, "request"))
    nodes = [_node(spec) for spec in args.node]
    try:
        decision = policy.classify(request, now=args.now)
    except EntitlementError as exc:
        return _refused(policy, exc, args.json)
    except PolicyError as exc:
        raise UsageError(f"--request: {exc}") from None
    report = decision.explain()
    if nodes:
        report["nodes"] = [
            {
                "node": {"zone": n.zone, "accelerator": n.accelerator, "labels": dict(n.labels)},
                "allowed": decision.allows(n),
                "refused_by": list(decision.refusing_rules(n)),
                "preference_score": decision.prefers(n),
            }
            for n in nodes
        ]
    report.update(_actions_report(policy, args.alert))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(f"policy     {policy.name} {policy.version} (sha256 {policy.sha256[:12]})")
    print(f"class      {decision.qos.name} (priority {decision.qos.priority}, from {decision.class_source})")
    print(f"shedding   {decision.qos.shedding.value}")
    print(f"budget     {decision.budget_ms:g} ms (from {decision.budget_source})")
    for stage in decision.stages:
        print(f"  stage    {stage.name}: {stage.budget_ms:g} ms")
    if "stream" in report:
        parts = [f"{k[:4]} {v:g} ms" for k, v in report["stream"].items() if v is not None]
        print(f"streams    {', '.join(parts)} (time to first token; per output token after the first)")
    print(f"rules      {', '.join(decision.rule_ids) or '(none matched)'}")
    for rule in report["rules"]:
        parts = []
        if rule["require"]:
            parts.append("require " + json.dumps(rule["require"], sort_keys=True))
        if rule["prefer"]:
            parts.append("prefer " + json.dumps(rule["prefer"], sort_keys=True))
        print(f"  {rule['id']}: {'; '.join(parts) or 'no placement constraint'}")
    print(f"requires   {json.dumps(report['constraints']['require'], sort_keys=True)}")
    ent = report.get("entitlement")
    if ent is not None:
        clamped = f", clamped: {', '.join(ent['clamped'])}" if ent["clamped"] else ""
        print(f"entitled   {ent['holder']}: {ent['verdict']}{clamped} (by {'; '.join(ent['rules'])})")
    for entry in report.get("nodes", []):
        verdict = "allowed" if entry["allowed"] else "refused by " + ", ".join(entry["refused_by"])
        node = entry["node"]
        print(
            f"node       zone={node['zone']} accelerator={node['accelerator']} labels={node['labels']}: "
            f"{verdict} (preference {entry['preference_score']})"
        )
    _print_actions(policy, report)
    return 0


def _actions_report(policy: Any, alerts: list[str]) -> dict[str, Any]:
    """The ``actions`` rules (and, per ``--alert``, the rules that answer it) for ``explain``."""
    from agentic_ray.cli import UsageError
    from agentic_ray.policies.schema import ALERT_KINDS

    out: dict[str, Any] = {}
    if policy.actions.rules:
        out["actions"] = {"dry_run": policy.actions.dry_run, "rules": [r.to_dict() for r in policy.actions.rules]}
    answers = []
    for spec in alerts:
        values = _parse_pairs([spec], "alert")
        unknown = set(values) - {"kind", "class", "workflow", "stage", "deployment"}
        if unknown:
            raise UsageError(f"--alert: unknown key(s) {', '.join(sorted(unknown))}; use kind, class, workflow, "
                             "stage, deployment")  # fmt: skip
        kind = values.get("kind", "")
        if kind not in ALERT_KINDS:
            raise UsageError(f"--alert: kind must be one of {', '.join(ALERT_KINDS)}, got {kind!r}")
        workflow = values.get("workflow")
        if values.get("stage"):
            workflow = f"{workflow or ''}/{values['stage']}"
        if values.get("deployment"):
            workflow = f"serve:{values['deployment']}"
        rules = policy.actions.matching(kind, values.get("class", ""), workflow)
        answers.append({"alert": values, "rules": [r.id for r in rules]})
    if alerts:
        out["alerts"] = answers
    return out


def _print_actions(policy: Any, report: dict[str, Any]) -> None:
    actions = report.get("actions")
    if actions is not None:
        dry = " (dry run: logged, not done)" if actions["dry_run"] else ""
        print(f"actions    {len(policy.actions.rules)} rule(s){dry}")
        for rule in policy.actions.rules:
            print(f"  {rule.id}: {rule.describe()}")
    for answer in report.get("alerts", []):
        alert = ", ".join(f"{k}={v}" for k, v in answer["alert"].items())
        print(f"alert      {alert}: {', '.join(answer['rules']) or 'no actions rule answers it'}")


def _refused(policy: Any, exc: Any, as_json: bool) -> int:
    """``explain`` of a request its caller is not entitled to: the refusal and the rule behind it (exit 1)."""
    if as_json:
        body = {"policy": {"name": policy.name, "version": policy.version, "sha256": policy.sha256},
                "verdict": "refused", **exc.to_dict()}  # fmt: skip
        print(json.dumps(body, indent=2, sort_keys=True, default=str))
    else:
        print(f"policy     {policy.name} {policy.version} (sha256 {policy.sha256[:12]})")
        print(f"refused    {exc.holder} is not entitled to {exc.entitlement} {exc.requested!r}")
        print(f"allowed    {exc.allowed!r}")
        print(f"rule       {exc.rule}")
    return 1


def _diff(args: argparse.Namespace) -> int:
    from agentic_ray.policies import diff_policies, load_policy

    old, new = load_policy(args.old), load_policy(args.new)
    changes = diff_policies(old, new)
    if args.json:
        payload = {
            "old": {"name": old.name, "version": old.version, "sha256": old.sha256},
            "new": {"name": new.name, "version": new.version, "sha256": new.sha256},
            "changes": [c.to_dict() for c in changes],
        }
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
        return 0
    print(f"{old.name} {old.version} -> {new.name} {new.version}: {len(changes)} change(s)")
    symbol = {"added": "+", "removed": "-", "changed": "~", "reordered": "~"}
    for change in changes:
        print(f"  {symbol.get(change.kind, '?')} {change.summary}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from agentic_ray.policies import policy_json_schema

    print(json.dumps(policy_json_schema(), indent=2, sort_keys=True))
    return 0
