"""Decision log: chain format, checkpoints, crash recovery, concurrency and random tampering."""

from __future__ import annotations

import json
import random
import threading

import pytest

from agentic_ray.telemetry.audit import GENESIS, DecisionLog, canonical_json, open_decision_log, record_hash
from agentic_ray.telemetry.audit_verify import find_records, verify_log


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        self.t += 0.001
        return self.t


def write_log(path, n, checkpoint_every=10):
    log = DecisionLog(path, checkpoint_every=checkpoint_every, clock=FakeClock())
    for k in range(n):
        log.log_decision(
            request_id=f"req-{k}",
            action="route" if k % 5 else "shed",
            qos=("critical", "standard", "batch")[k % 3],
            policy_version="v1-abc",
            policy_sha256="ab" * 32,
            rule_ids=[f"r{k % 4}"],
            inputs={"remaining_ms": 100.0 - k, "candidates": 3},
            predicted={"predicted_ms": float("nan") if k % 7 == 0 else 12.5 + k, "replica_id": f"rep{k % 3}"},
            outcome="routed" if k % 5 else "shed:deadline_passed",
        )
        if k % 2:
            log.log_completion(request_id=f"req-{k}", qos="critical", ok=True, latency_ms=10.0, budget_left_ms=90.0)
    head = log.head
    log.close()
    return head


def test_records_are_canonical_and_chained(tmp_path):
    path = tmp_path / "d.jsonl"
    head = write_log(path, 25, checkpoint_every=10)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    recs = [json.loads(x) for x in lines[:-1]]
    assert recs[0]["kind"] == "open" and recs[0]["prev"] == GENESIS
    for k, rec in enumerate(recs):
        assert rec["i"] == k
        assert rec["hash"] == record_hash(rec)
        assert lines[k].decode() == canonical_json(rec)
        if k:
            assert rec["prev"] == recs[k - 1]["hash"]
    checkpoints = [r for r in recs if r["kind"] == "checkpoint"]
    assert len(checkpoints) == (len(recs) - len(checkpoints)) // 10
    assert all(c["body"] == {"count": c["i"], "running_hash": c["prev"]} for c in checkpoints)
    assert head.count == len(recs) and head.hash == recs[-1]["hash"]
    nan_rec = next(r for r in recs if r["kind"] == "decision" and r["body"]["request_id"] == "req-0")
    assert nan_rec["body"]["predicted"]["predicted_ms"] is None
    report = verify_log(path, expect_head=head.hash)
    assert report.ok and report.records == len(recs) and report.head == head
    assert report.anchor_index == len(recs) - 1


def test_on_checkpoint_receives_anchor(tmp_path):
    anchors = []
    log = DecisionLog(tmp_path / "a.jsonl", checkpoint_every=3, on_checkpoint=anchors.append)
    for k in range(7):
        log.append("decision", {"request_id": str(k)})
    log.close()
    assert [a.count for a in anchors] == [5, 9]  # open, 3 decisions, the checkpoint; 3 more, checkpoint
    for a in anchors:
        assert verify_log(tmp_path / "a.jsonl", expect_head=a.hash).ok


def test_reopen_continues_the_chain_and_recovers_a_torn_tail(tmp_path):
    path = tmp_path / "t.jsonl"
    write_log(path, 5)
    with open(path, "ab") as f:
        f.write(b'{"body":{"request_id":"half')  # a crash mid-write
    report = verify_log(path)
    assert not report.ok and report.first_problem.kind == "torn_tail"
    assert report.first_problem.line == len(path.read_bytes().split(b"\n"))
    log = DecisionLog(path)
    log.append("decision", {"request_id": "after"})
    log.close()
    recs = [json.loads(x) for x in path.read_bytes().splitlines()]
    assert [r["kind"] for r in recs[-3:]] == ["recovery", "open", "decision"]
    assert recs[-3]["body"]["discarded_bytes"] == len(b'{"body":{"request_id":"half')
    assert verify_log(path).ok


def test_concurrent_writers_in_one_process_keep_one_chain(tmp_path):
    path = tmp_path / "c.jsonl"
    log = open_decision_log(path, checkpoint_every=50)
    assert open_decision_log(path) is log

    def work(t):
        for k in range(200):
            log.append("decision", {"request_id": f"{t}-{k}"})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    log.close()
    report = verify_log(path)
    assert report.ok
    assert report.records == 1 + 800 + 800 // 50


def test_find_records(tmp_path):
    path = tmp_path / "f.jsonl"
    write_log(path, 6)
    found = find_records(path, "req-3")
    assert [r["kind"] for _, r in found] == ["decision", "completion"]
    assert all(r["body"]["request_id"] == "req-3" for _, r in found)
    assert find_records(path, "nope") == []


def test_bad_kind_and_closed_log(tmp_path):
    log = DecisionLog(tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="kind"):
        log.append("bogus", {})
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append("decision", {})


def test_refuses_to_append_to_a_foreign_file(tmp_path):
    path = tmp_path / "foreign.txt"
    path.write_text("hello world\n")
    with pytest.raises(ValueError, match="not a decision-log record"):
        DecisionLog(path)


# --- random tampering -------------------------------------------------------------------------------


def _first_changed_line(original: bytes, mutated: bytes) -> int:
    """1-based number of the first line that differs (a copy inserted next to its twin counts from where
    the two files really part); ``len + 1`` when one file is a prefix of the other."""
    a, b = original.splitlines(keepends=True), mutated.splitlines(keepends=True)
    for n, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return n
    return min(len(a), len(b)) + 1


def _mutate(data: bytes, rng: random.Random) -> tuple[bytes, int, str]:
    """One random mutation; returns the new bytes, the 1-based first line it touched, and its kind."""
    lines = data.split(b"\n")[:-1]
    n = len(lines)
    kind = rng.choice(["flip", "delete", "insert_copy", "insert_garbage", "swap", "truncate", "edit_field"])
    k = rng.randrange(n)
    if kind == "flip":
        pos = rng.randrange(len(data))
        old = data[pos]
        new = rng.choice([b for b in range(256) if b != old])
        line = data[:pos].count(b"\n") + 1
        return data[:pos] + bytes([new]) + data[pos + 1 :], line, kind
    if kind == "delete":
        out = lines[:k] + lines[k + 1 :]
    elif kind == "insert_copy":
        out = [*lines[:k], lines[rng.randrange(n)], *lines[k:]]
    elif kind == "insert_garbage":
        out = [*lines[:k], rng.choice([b"", b"{}", b"garbage", b'{"i":0}']), *lines[k:]]
    elif kind == "swap":
        j = rng.randrange(n)
        while j == k:
            j = rng.randrange(n)
        k, j = min(k, j), max(k, j)
        out = list(lines)
        out[k], out[j] = out[j], out[k]
    elif kind == "truncate":
        pos = rng.randrange(len(data))  # cut anywhere, even on a line boundary (needs the anchor)
        return data[:pos], data[:pos].count(b"\n") + 1, kind
    else:  # edit_field: a plausible edit that keeps the line canonical JSON
        rec = json.loads(lines[k])
        rec["ts"] = rec["ts"] + 1.0
        out = list(lines)
        out[k] = canonical_json(rec).encode()
    return b"\n".join(out) + b"\n", k + 1, kind


def test_thousands_of_random_mutations_are_detected_and_located(tmp_path):
    path = tmp_path / "orig.jsonl"
    head = write_log(path, 60, checkpoint_every=7)
    original = path.read_bytes()
    assert verify_log(path, expect_head=head.hash).ok
    rng = random.Random(20261125)
    target = tmp_path / "mut.jsonl"
    kinds_seen: dict[str, int] = {}
    for trial in range(3000):
        mutated, line, kind = _mutate(original, rng)
        if mutated == original:
            continue
        target.write_bytes(mutated)
        report = verify_log(target, expect_head=head.hash)
        assert not report.ok, (trial, kind, line)
        line = max(line, _first_changed_line(original, mutated))
        first = min(p.line for p in report.problems)
        assert first <= line, (trial, kind, line, report.problems[:3])
        kinds_seen[kind] = kinds_seen.get(kind, 0) + 1
    assert set(kinds_seen) == {"flip", "delete", "insert_copy", "insert_garbage", "swap", "truncate", "edit_field"}


def test_mutations_before_the_tail_are_detected_without_an_anchor(tmp_path):
    path = tmp_path / "orig.jsonl"
    write_log(path, 40)
    original = path.read_bytes()
    n = original.count(b"\n")
    rng = random.Random(7)
    target = tmp_path / "mut.jsonl"
    for _ in range(1000):
        mutated, line, kind = _mutate(original, rng)
        if kind in ("truncate", "delete") and line >= n:
            continue  # dropping whole tail records leaves a valid shorter chain: only an anchor shows it
        if kind == "truncate" and mutated.endswith(b"\n"):
            continue
        target.write_bytes(mutated)
        report = verify_log(target)
        assert not report.ok, (kind, line)
        line = max(line, _first_changed_line(original, mutated))
        assert report.first_problem.line <= line


# --- keyed logs: a writer without the key cannot recompute a chain that verifies ------------------------

KEY = b"9f2c1e-operator-held-secret"


def _recompute(lines: list[dict], key: bytes | None) -> bytes:
    """Re-chain ``lines`` from genesis as an attacker would after editing them (hashes recomputed)."""
    from agentic_ray.telemetry.audit import GENESIS, record_hash

    prev = GENESIS
    out = []
    for i, rec in enumerate(lines):
        rec = {**rec, "i": i, "prev": prev}
        if rec["kind"] == "checkpoint":
            rec["body"] = {"count": i, "running_hash": prev}
        rec.pop("hash", None)
        rec["hash"] = prev = record_hash(rec, key)
        out.append(canonical_json(rec))
    return ("\n".join(out) + "\n").encode()


def _recomputing_mutation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Edit, delete, insert or reorder whole records, then recompute every hash (with no key or a guess)."""
    recs = [json.loads(x) for x in data.split(b"\n")[:-1]]
    kind = rng.choice(["edit_body", "delete", "insert", "swap", "drop_mac"])
    k = rng.randrange(1, len(recs))
    if kind == "edit_body":
        recs[k]["body"] = {**recs[k]["body"], "outcome": "forged"} if isinstance(recs[k]["body"], dict) else {}
    elif kind == "delete":
        del recs[k]
    elif kind == "insert":
        recs.insert(k, {**recs[rng.randrange(len(recs))], "ts": 1.0})
    elif kind == "swap":
        j = rng.randrange(1, len(recs))
        recs[k], recs[j] = recs[j], recs[k]
    else:  # present the log as an unkeyed one
        recs[0]["body"] = {k: v for k, v in recs[0]["body"].items() if k != "mac"}
    guess = rng.choice([None, b"guessed-key", KEY[:-1]])
    return _recompute(recs, guess), kind


def test_keyed_chain_verifies_with_its_key_only(tmp_path):
    path = tmp_path / "keyed.jsonl"
    with DecisionLog(path, key=KEY, checkpoint_every=5) as log:
        for k in range(12):
            log.log_decision(request_id=f"r{k}", action="route", qos="critical", policy_version="1",
                             policy_sha256="0" * 64)  # fmt: skip
    assert verify_log(path, key=KEY).ok
    no_key = verify_log(path)
    assert [p.kind for p in no_key.problems] == ["key_required"]
    wrong = verify_log(path, key=b"another key")
    assert {p.kind for p in wrong.problems} >= {"wrong_key", "hash_mismatch"}


def test_recomputed_chains_pass_without_a_key_and_fail_with_it(tmp_path):
    """The mutants recompute every hash, so the chain links themselves are consistent: an unkeyed log
    cannot detect them (the construction's stated limit), a keyed log always does."""
    path = tmp_path / "keyed.jsonl"
    with DecisionLog(path, key=KEY) as log:
        for k in range(30):
            log.log_decision(request_id=f"r{k}", action="route", qos="critical", policy_version="1",
                             policy_sha256="0" * 64, outcome="routed")  # fmt: skip
    original = path.read_bytes()
    rng = random.Random(11)
    target = tmp_path / "forged.jsonl"
    kinds: dict[str, int] = {}
    for _ in range(400):
        forged, kind = _recomputing_mutation(original, rng)
        target.write_bytes(forged)
        assert not verify_log(target, key=KEY).ok, kind
        kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) == {"edit_body", "delete", "insert", "swap", "drop_mac"}
    # The same forgeries of an unkeyed log go unnoticed without an anchor: why logs should be keyed.
    plain = tmp_path / "plain.jsonl"
    write_log(plain, 30)
    recs = [json.loads(x) for x in plain.read_bytes().split(b"\n")[:-1]]
    recs[5]["body"] = {"forged": True}
    target.write_bytes(_recompute(recs, None))
    assert verify_log(target).ok


def test_key_from_env_and_cli_key(tmp_path, monkeypatch, capsys):
    from agentic_ray.cli import main
    from agentic_ray.telemetry.audit import key_from_env

    assert key_from_env({}) is None
    assert key_from_env({"AGENTIC_DECISION_LOG_KEY": "abc"}) == b"abc"
    key_file = tmp_path / "log.key"
    key_file.write_bytes(KEY + b"\n")
    assert key_from_env({"AGENTIC_DECISION_LOG_KEY_FILE": str(key_file)}) == KEY
    with pytest.raises(ValueError, match="empty"):
        key_from_env({"AGENTIC_DECISION_LOG_KEY": ""})
    path = tmp_path / "keyed.jsonl"
    with DecisionLog(path, key=KEY) as log:
        log.log_completion(request_id="r", qos="critical", ok=True, latency_ms=1.0, budget_left_ms=9.0)
    assert main(["trace", "verify", str(path), "--key", str(key_file)]) == 0
    monkeypatch.setenv("LOG_KEY", "wrong")
    assert main(["trace", "verify", str(path), "--key", "env:LOG_KEY"]) == 1
    assert main(["trace", "verify", str(path)]) == 1  # keyed log, no key: key_required
    assert main(["trace", "verify", str(path), "--key", "env:NOT_SET_ANYWHERE"]) == 2
    assert "key_required" in capsys.readouterr().err


def test_log_rotates_and_each_file_verifies(tmp_path):
    from agentic_ray.telemetry.audit import DecisionLog
    from agentic_ray.telemetry.audit_verify import verify_log

    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, max_bytes=4000, backups=2, checkpoint_every=0, clock=lambda: 1.0)
    for i in range(200):
        log.append("decision", {"request_id": f"r{i}", "pad": "x" * 40})
    assert log.rotations >= 3
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["d.jsonl", "d.jsonl.1", "d.jsonl.2"]  # the oldest beyond two backups is gone
    assert all(p.stat().st_size < 4000 + 400 for p in tmp_path.iterdir())
    reports = {name: verify_log(tmp_path / name) for name in files}
    assert all(r.ok for r in reports.values()), {n: r.problems for n, r in reports.items()}
    # The new file continues the chain of the one before it.
    first = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])
    assert first["kind"] == "open" and first["prev"] == reports["d.jsonl.1"].head.hash
    assert first["i"] == reports["d.jsonl.1"].head.count
    assert log.head.count == reports["d.jsonl"].head.count
    log.close()


def test_rotation_settings_from_env():
    from agentic_ray.telemetry.audit import options_from_env

    assert options_from_env({}) == {"max_bytes": 64 << 20, "backups": 3}
    assert options_from_env({"AGENTIC_DECISION_LOG_MAX_BYTES": "0"})["max_bytes"] is None
    with pytest.raises(ValueError, match="AGENTIC_DECISION_LOG_BACKUPS"):
        options_from_env({"AGENTIC_DECISION_LOG_BACKUPS": "0"})
    with pytest.raises(ValueError, match="AGENTIC_DECISION_LOG_MAX_BYTES"):
        options_from_env({"AGENTIC_DECISION_LOG_MAX_BYTES": "lots"})
