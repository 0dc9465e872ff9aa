"""Verify a decision log's hash chain and find a request's records (see ``audit`` for the format).

For each line ``n`` (1-based) holding record index ``i`` the verifier checks, in order: the line is
complete (ends with a newline; a last line without one is a *torn tail*), it parses as JSON, it equals
the canonical serialisation of what it parses to (so any byte edit shows), its ``hash`` equals
``sha256(canonical(record - hash))``, ``i`` equals the expected index (deletions, insertions and
reorderings show here) and ``prev`` equals the previous record's hash. Checkpoint records must carry
``count == i`` and ``running_hash == prev``. After a problem it re-synchronises on the damaged record
(when it parsed) so that later, independent damage is reported too; the first problem is where the
log was first changed (the mutated line or, for a swap, the earlier of the two).

A valid chain that is merely *shorter* cannot be told from an intact one: pass the hash of a record
published earlier (a checkpoint's ``running_hash`` or ``DecisionLog.head``) as ``expect_head`` and the
verifier reports ``anchor_missing`` when no record with that hash is left.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agentic_ray.telemetry.audit import GENESIS, KINDS, LogHead, canonical_json, record_hash
from agentic_ray.telemetry.audit import key_id as audit_key_id

__all__ = ["ChainProblem", "VerifyReport", "find_records", "iter_records", "verify_log"]

_FIELDS = ("i", "kind", "ts", "prev", "body", "hash")


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One place where the log is not as written. ``line`` is 1-based; ``index`` the record index
    expected at that line. ``kind``: ``torn_tail``, ``not_json``, ``not_canonical``, ``bad_record``,
    ``hash_mismatch``, ``index_mismatch``, ``chain_broken``, ``bad_checkpoint``, ``anchor_missing``,
    ``key_required`` (a keyed log checked without its key), ``wrong_key``."""

    line: int
    index: int
    kind: str
    message: str

    def format(self) -> str:
        return f"line {self.line} (record {self.index}): {self.kind}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "index": self.index, "kind": self.kind, "message": self.message}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of ``verify_log``: ``ok`` when no problem was found; ``head`` the last good record."""

    path: str
    records: int
    head: LogHead
    problems: tuple[ChainProblem, ...] = field(default_factory=tuple)
    anchor_index: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> ChainProblem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "ok": self.ok,
            "records": self.records,
            "head": self.head.to_dict(),
            "anchor_index": self.anchor_index,
            "problems": [p.to_dict() for p in self.problems],
        }


def _continues(rec: Any) -> bool:
    """True for the first record of a rotated file: an ``open`` record naming what it continues."""
    body = rec.get("body") if isinstance(rec, dict) else None
    return (
        isinstance(body, dict)
        and rec.get("kind") == "open"
        and isinstance(body.get("continues"), dict)
        and isinstance(rec.get("i"), int)
        and isinstance(rec.get("prev"), str)
    )


def verify_log(path: str | os.PathLike[str], expect_head: str | None = None, key: bytes | None = None) -> VerifyReport:
    """Check the whole chain of the log at ``path``; ``OSError`` when it cannot be read.

    ``expect_head``: a record hash that must still be in the log (detects truncation up to it).
    ``key``: check every record's HMAC under this key (a keyed log); without it, a log whose ``open``
    records name a key gets one ``key_required`` problem instead of a hash mismatch per record.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    problems: list[ChainProblem] = []
    expected_i = 0
    prev: str | None = GENESIS
    records = 0
    anchor_index: int | None = None
    last_good_line = 0
    keyed_seen = False  # a keyed log met without a key: hashes cannot be checked
    lines = data.split(b"\n")
    complete = len(lines) - 1  # the element after the last newline is b"" or a torn tail
    for n, raw in enumerate(lines, start=1):
        if n > complete:
            if raw:
                problems.append(ChainProblem(n, expected_i, "torn_tail", f"last line has no newline ({len(raw)} "
                                             "bytes): a write was cut off (crash) or the end was edited"))  # fmt: skip
            break
        rec, found = _parse_record(raw)
        if rec is None:
            problems.extend(ChainProblem(n, expected_i, kind, message) for kind, message in found)
            expected_i += 1  # assume one record was damaged in place; the next line shows if not
            prev = None
            continue
        if n == 1 and _continues(rec):
            expected_i, prev = rec["i"], rec["prev"]  # a rotated file: the chain goes on from its predecessor
        found, keyed_seen = _record_problems(rec, raw, key, expected_i, prev, keyed_seen)
        problems.extend(ChainProblem(n, expected_i, kind, message) for kind, message in found)
        if not found:
            last_good_line = n
            records += 1
        if expect_head is not None and rec["hash"] == expect_head and anchor_index is None:
            anchor_index = rec["i"] if isinstance(rec["i"], int) else None
        # re-synchronise on this record so later damage is located too
        expected_i = rec["i"] + 1 if isinstance(rec["i"], int) else expected_i + 1
        prev = rec["hash"] if isinstance(rec["hash"], str) else None
    head_hash = prev if prev is not None else GENESIS
    if expect_head is not None and anchor_index is None:
        problems.append(
            ChainProblem(
                last_good_line + 1,
                expected_i,
                "anchor_missing",
                f"no record has the expected head hash {expect_head[:16]}...: the log was "
                "truncated or rewritten after that record was published",
            )
        )
    return VerifyReport(path, records, LogHead(expected_i, head_hash), tuple(problems), anchor_index)


def _parse_record(raw: bytes) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """The record on one line, or ``None`` and why it is not one (``not_json``, ``bad_record``)."""
    try:
        rec = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, [("not_json", f"not a JSON record ({type(exc).__name__})")]
    if not isinstance(rec, dict) or set(rec) != set(_FIELDS):
        return None, [("bad_record", f"expected exactly the fields {', '.join(_FIELDS)}")]
    return rec, []


def _record_problems(
    rec: dict[str, Any], raw: bytes, key: bytes | None, expected_i: int, prev: str | None, keyed_seen: bool
) -> tuple[list[tuple[str, str]], bool]:
    """``(kind, message)`` for everything wrong with one parsed record at chain position ``expected_i``
    after the hash ``prev`` (``None``: unknown, after damage), and the updated ``keyed_seen``."""
    found: list[tuple[str, str]] = []
    try:
        line_ok = raw.decode("ascii") == canonical_json(rec)
    except ValueError:
        line_ok = False
    if not line_ok:
        found.append(("not_canonical", "line differs from the canonical form of its record (edited)"))
    mac = rec["body"].get("mac") if rec["kind"] == "open" and isinstance(rec["body"], dict) else None
    if isinstance(mac, dict):
        if key is None and not keyed_seen:
            keyed_seen = True
            found.append(("key_required", "the log is keyed (HMAC-SHA256, key id "
                          f"{mac.get('key_id')}): verify it with --key"))  # fmt: skip
        elif key is not None and mac.get("key_id") != audit_key_id(key):
            found.append(("wrong_key", f"written with key id {mac.get('key_id')}, checked with {audit_key_id(key)}"))
    if not keyed_seen and rec["hash"] != record_hash(rec, key):
        found.append(("hash_mismatch", "record hash does not match its content (edited"
                      + (", or written without the key)" if key is not None else ")")))  # fmt: skip
    if rec["i"] != expected_i:
        what = "deleted" if isinstance(rec["i"], int) and rec["i"] > expected_i else "inserted or moved"
        found.append(("index_mismatch", f"found record index {rec['i']!r}, expected {expected_i} (records {what})"))
    if prev is not None and rec["prev"] != prev:
        found.append(("chain_broken", "prev hash does not match the previous record's hash"))
    if rec["kind"] not in KINDS:
        found.append(("bad_record", f"unknown kind {rec['kind']!r}"))
    elif rec["kind"] == "checkpoint":
        body = rec["body"] if isinstance(rec["body"], dict) else {}
        if body.get("count") != rec["i"] or body.get("running_hash") != rec["prev"]:
            found.append(("bad_checkpoint", "checkpoint count/running_hash do not match its position"))
    return found, keyed_seen


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict]]:
    """``(line_number, record)`` for each parseable record line (no chain checks; use ``verify_log``)."""
    with open(os.fspath(path), "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield n, rec


def find_records(path: str | os.PathLike[str], request_id: str) -> list[tuple[int, dict]]:
    """Every record (with its line number) whose body names ``request_id``: its decisions, completion."""
    want = str(request_id)
    return [
        (n, rec)
        for n, rec in iter_records(path)
        if isinstance(rec.get("body"), dict) and rec["body"].get("request_id") == want
    ]
