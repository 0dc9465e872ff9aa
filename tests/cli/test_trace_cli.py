"""``agentic-ray trace verify|show|head`` on real decision logs."""

from __future__ import annotations

import json

import pytest

from agentic_ray.cli import main
from agentic_ray.telemetry.audit import DecisionLog


@pytest.fixture
def log_path(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, checkpoint_every=5)
    for k in range(12):
        log.log_decision(request_id=f"req-{k}", action="route", qos="critical", policy_version="v1",
                         policy_sha256="cd" * 32, rule_ids=["r1"], inputs={"remaining_ms": 90.0},
                         predicted={"predicted_ms": 10.0 + k, "replica_id": "rep-a"}, outcome="routed")  # fmt: skip
    log.log_completion(request_id="req-3", qos="critical", ok=True, latency_ms=11.0, budget_left_ms=79.0)
    log.close()
    return path


def test_verify_intact(log_path, capsys):
    assert main(["trace", "verify", str(log_path)]) == 0
    out = capsys.readouterr().out
    assert "intact" in out and "records" in out


def test_verify_reports_the_edited_line(log_path, capsys):
    lines = log_path.read_text().splitlines(keepends=True)
    assert '"kind":"decision"' in lines[7]
    lines[7] = lines[7].replace('"predicted_ms":', '"predicted_ms":1')  # line 8: an edited figure
    log_path.write_text("".join(lines))
    assert main(["trace", "verify", str(log_path)]) == 1
    err = capsys.readouterr().err
    assert "TAMPERED" in err and "first at line 8 (record 7)" in err
    assert f"{log_path}:8: record 7:" in err


def test_verify_json_and_deleted_line(log_path, capsys):
    lines = log_path.read_text().splitlines(keepends=True)
    del lines[3]
    log_path.write_text("".join(lines))
    assert main(["trace", "verify", "--json", str(log_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["problems"][0]["line"] == 4 and report["problems"][0]["kind"] == "index_mismatch"


def test_truncation_needs_an_anchor(log_path, capsys):
    assert main(["trace", "head", str(log_path)]) == 0
    count, head = capsys.readouterr().out.split()
    lines = log_path.read_text().splitlines(keepends=True)
    log_path.write_text("".join(lines[:-2]))
    assert main(["trace", "verify", str(log_path)]) == 0  # a shorter valid chain looks intact...
    capsys.readouterr()
    assert main(["trace", "verify", "--expect-head", head, str(log_path)]) == 1  # ...but not against the anchor
    err = capsys.readouterr().err
    assert "anchor_missing" in err and f":{len(lines) - 1}:" in err
    assert int(count) == len(lines)


def test_torn_last_line_is_named(log_path, capsys):
    with open(log_path, "ab") as f:
        f.write(b'{"body":')
    assert main(["trace", "verify", str(log_path)]) == 1
    assert "torn_tail" in capsys.readouterr().err


def test_missing_file_and_bad_anchor_are_usage_errors(tmp_path, log_path, capsys):
    assert main(["trace", "verify", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read the decision log" in capsys.readouterr().err
    assert main(["trace", "verify", str(tmp_path)]) == 2  # a directory
    capsys.readouterr()
    assert main(["trace", "verify", "--expect-head", "xyz", str(log_path)]) == 2
    assert "--expect-head" in capsys.readouterr().err
    assert main(["trace", "show", "--request", "r", str(tmp_path / "nope.jsonl")]) == 2


def test_show_request(log_path, capsys):
    assert main(["trace", "show", "--request", "req-3", str(log_path)]) == 0
    out = capsys.readouterr().out
    assert "decision" in out and "completion" in out and "predicted" in out
    assert main(["trace", "show", "--request", "req-3", "--json", str(log_path)]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in recs] == ["decision", "completion"]
    assert all(r["body"]["request_id"] == "req-3" for r in recs) and all("line" in r for r in recs)
    assert main(["trace", "show", "--request", "nobody", str(log_path)]) == 1


def test_no_subcommand_prints_help(capsys):
    assert main(["trace"]) == 2


def test_show_follows_one_request_across_the_logs_of_several_processes(tmp_path, capsys):
    router, replica = tmp_path / "router.jsonl", tmp_path / "replica.jsonl"
    with DecisionLog(router) as log:
        log.log_decision(request_id="r-1", action="route", qos="standard", policy_version="v1",
                         policy_sha256="ab", inputs={"where": "router"}, ts=1.0)  # fmt: skip
    with DecisionLog(replica) as log:
        log.log_decision(request_id="r-1", action="start", qos="standard", policy_version="v1",
                         policy_sha256="ab", inputs={"where": "gate"}, ts=2.0)  # fmt: skip
        log.log_completion(request_id="r-1", qos="standard", ok=True, latency_ms=3.0, budget_left_ms=10.0, ts=3.0)
    assert main(["trace", "show", "--json", "--request", "r-1", str(replica), str(router)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["file"]) for r in rows] == [
        ("decision", str(router)),
        ("decision", str(replica)),
        ("completion", str(replica)),
    ]
