"""``agentic-ray policy check|explain|diff|schema`` through ``agentic_ray.cli.main`` and one subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agentic_ray.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
PLATFORM = str(EXAMPLES / "platform.yaml")
MINIMAL = str(EXAMPLES / "minimal.yaml")

BAD = """\
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: bad}
default_class: standard
classes:
  standard: {priority: 1, budget_ms: -1, colour: red}
"""

BAD_MEANING = """\
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: bad}
default_class: gold
classes:
  standard: {priority: 1, budget_ms: 100}
rules:
  - {id: a}
  - {id: a}
"""


def test_check_valid_files(capsys) -> None:
    assert main(["policy", "check", PLATFORM, MINIMAL]) == 0
    out = capsys.readouterr().out
    assert "platform.yaml: ok (platform 2026.11.1, 24 rules" in out and "minimal.yaml: ok" in out


def test_check_lists_every_problem_of_every_file(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    bad2 = tmp_path / "bad2.yaml"
    bad2.write_text(BAD_MEANING)
    assert main(["policy", "check", str(bad), PLATFORM, str(bad2), str(tmp_path / "missing.yaml")]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert f"{bad}:6: classes.standard.budget_ms: Input should be greater than 0 (got -1)" in err
    assert f"{bad}:6: classes.standard.colour: unknown key" in err
    assert f"{bad2}:4: default_class: undefined class 'gold'" in err
    assert f"{bad2}:9: rules[1].id: duplicate rule id 'a' (first at rules[0])" in err
    assert any(line.startswith(f"{tmp_path / 'missing.yaml'}: ") for line in err)
    assert "platform.yaml: ok" in captured.out and "Traceback" not in captured.err


def test_explain_text_and_json(capsys) -> None:
    request = ["--request", "tenant=bolt-eu", "model=llama-3-70b", "data-class=pii"]
    nodes = ["--node", "zone=eu-west-1a,accelerator=h100,label.capacity=on-demand", "--node", "zone=us-east-1a"]
    args = ["policy", "explain", PLATFORM, *request, *nodes]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "class      standard" in out and "budget     800 ms" in out
    assert "rules      eu-residency, pii-eu-strict, secret-no-spot, gpu-llama-70b" in out
    assert "allowed (preference 0)" in out and "refused by eu-residency, pii-eu-strict" in out
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rule_ids"] == ["eu-residency", "pii-eu-strict", "secret-no-spot", "gpu-llama-70b"]
    assert [n["allowed"] for n in report["nodes"]] == [True, False]
    assert report["constraints"]["require"]["zones"] == ["eu-west-1a", "eu-west-1b"]


def test_explain_workflow_stage_budgets(capsys) -> None:
    assert main(["policy", "explain", PLATFORM, "-r", "workflow=rag", "stage=generate", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # generate is the last stage: out of a run it gets what is left after the earlier stages' nominal
    # budgets (1200 - 300 - 100 = 800 ms, its nominal 720 plus the 80 ms slack); the stages list is nominal.
    assert report["budget_ms"] == 800.0 and report["stage_share"] == 1.0
    assert [(s["name"], s["budget_ms"]) for s in report["stages"]] == [("retrieve", 300.0), ("rerank", 100.0),
                                                                         ("generate", 720.0)]  # fmt: skip


def test_explain_bad_request_exits_2(capsys) -> None:
    assert main(["policy", "explain", PLATFORM, "-r", "tenant=ghost"]) == 2
    assert "unknown tenant 'ghost'" in capsys.readouterr().err
    assert main(["policy", "explain", PLATFORM, "-r", "colour=red"]) == 2
    assert main(["policy", "explain", PLATFORM, "-r", "budget_ms=-4"]) == 2
    assert main(["policy", "explain", PLATFORM, "--node", "planet=mars"]) == 2
    assert "planet" in capsys.readouterr().err


def test_diff_text_and_json(tmp_path, capsys) -> None:
    changed = tmp_path / "platform2.yaml"
    text = Path(PLATFORM).read_text().replace("budget_ms: 150", "budget_ms: 120")
    changed.write_text(text.replace("  - id: h100-405b", "  - id: h100-405b-renamed"))
    assert main(["policy", "diff", PLATFORM, str(changed)]) == 0
    out = capsys.readouterr().out
    assert "classes.critical.budget_ms: 150.0 -> 120.0" in out
    assert "rule 'h100-405b' removed" in out and "rule 'h100-405b-renamed' added" in out
    assert main(["policy", "diff", PLATFORM, str(changed), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {(c["kind"], c["path"]) for c in payload["changes"]} == {
        ("changed", "classes.critical.budget_ms"),
        ("removed", "rules.h100-405b"),
        ("added", "rules.h100-405b-renamed"),
    }


def test_schema(capsys) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"].startswith("agentic-ray Policy")


def test_console_script_check_has_no_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"apiVersion: agentic-ray/v1\nkind: Policy\nmetadata: {name: x}\n\xff\n")
    script = Path(sys.executable).with_name("agentic-ray")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "agentic_ray"]
    proc = subprocess.run([*cmd, "policy", "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{bad}:4: (document): not UTF-8: invalid byte 0xff at offset 60"
    assert "Traceback" not in proc.stderr


def test_apply_rejects_bad_canary_settings_before_connecting(capsys) -> None:
    # Exit 2 with the field named, and nothing sent: these fail before any cluster is looked for.
    assert main(["policy", "apply", MINIMAL, "--canary", "0.5", "--p99-slack", "0.5"]) == 2
    assert "p99_slack: must be >= 1" in capsys.readouterr().err
    assert main(["policy", "apply", MINIMAL, "--canary", "0.5", "--min-samples", "0"]) == 2
    assert "min_samples: must be an int >= 1" in capsys.readouterr().err
