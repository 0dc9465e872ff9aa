"""Tamper-evident decision log: append-only JSON lines, each record chained to the previous one by hash.

Record layout (one line, canonical JSON: keys sorted, no spaces, ASCII only, no NaN)::

    {"body": {...}, "hash": H_i, "i": i, "kind": "decision", "prev": H_(i-1), "ts": 1732560000.123}

``H_i = sha256(canonical_json(record without "hash"))`` in lower-case hex, and ``H_(-1)`` is
``GENESIS`` (64 zeros). Each hash covers the index ``i`` and the previous hash, so editing, deleting,
inserting or reordering any record breaks the chain at (or before) that line; because every line must
also equal the canonical serialisation of what it parses to, any byte-level edit is caught even when it
would parse to the same JSON. This is the hash-chain construction of tamper-evident logs (Haber &
Stornetta 1991, "How to time-stamp a digital document"; Schneier & Kelsey 1999, "Secure audit logs to
support computer forensics"). Without a key it detects accidental or naive edits, not an attacker who
rewrites the whole tail and recomputes the hashes. **Keyed logs** (``key=``, from configuration:
``AGENTIC_DECISION_LOG_KEY`` or ``AGENTIC_DECISION_LOG_KEY_FILE``) chain with
``H_i = HMAC-SHA256(key, canonical_json(record without "hash"))`` (RFC 2104) instead, as Schneier &
Kelsey's secure audit logs do: a writer without the key cannot produce a chain that verifies under it,
however much it recomputes. The ``open`` record names the key by ``key_id(key)`` (a hash of it, never the
key). ``agentic-ray trace verify --key`` checks every record with the key; start a new file when turning
keys on (records written before it are unkeyed and fail a keyed check). Against **truncation of the
tail** (dropping the last records leaves a valid shorter chain), only an *anchor* kept elsewhere helps: the
log writes a ``checkpoint`` record every ``checkpoint_every`` records (count and running hash) and
hands each one to ``on_checkpoint`` so the caller can publish it (log it, send it to the coordinator);
``agentic-ray trace verify --expect-head HASH`` then checks that the log still reaches that record.

Record kinds: ``open`` (a writer (re)opened the log), ``decision``, ``completion``, ``checkpoint``,
``recovery`` (a torn last line, left by a crash mid-write, was cut off when the log was reopened).

**Rotation.** With ``max_bytes``, a file that reaches that size is renamed ``<path>.1`` (older ones
shift to ``.2`` ... ``.<backups>``; the oldest beyond ``backups`` is deleted) and a new file starts at
``path``. The chain does not restart: the new file's first record is an ``open`` record that continues
the index and the hash of the last record before it and names it in ``body.continues``
(``{"i": N, "prev": H, "from": "<name>.1"}``), so each file verifies on its own and the previous file's
head (``agentic-ray trace head``) must equal its ``prev``. Deleting the oldest file is the
point of rotation; what a checkpoint anchored in a deleted file proved is gone with it. Processes that
log through the environment (``AGENTIC_DECISION_LOG_DIR``) rotate at ``AGENTIC_DECISION_LOG_MAX_BYTES``
(default 64 MiB; 0 turns rotation off) and keep ``AGENTIC_DECISION_LOG_BACKUPS`` old files (default 3):
``options_from_env()``.

Writers: one ``DecisionLog`` per file per process (``open_decision_log`` returns the same object for the
same path); appends are serialised by a lock, each line goes to the file in one ``os.write`` on an
``O_APPEND`` descriptor, so a crash leaves at most one torn last line. ``fsync=True`` also survives
power loss, at the cost of one disk flush per record. Several *processes* must not share one file:
give each its own (for example with the node id and pid in the name).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GENESIS",
    "KINDS",
    "DecisionLog",
    "LogHead",
    "canonical_json",
    "jsonable",
    "key_from_env",
    "key_id",
    "open_decision_log",
    "options_from_env",
    "record_hash",
]

GENESIS = "0" * 64
KINDS = ("open", "decision", "completion", "checkpoint", "recovery")
_TAIL_SCAN_BYTES = 1 << 20
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_BACKUPS = 3


def jsonable(value: Any) -> Any:
    """``value`` made JSON-safe: tuples to lists, NaN/inf to ``None``, dataclass-like objects via ``to_dict``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    return str(value)


def canonical_json(obj: Any) -> str:
    """The one serialisation hashed and written: sorted keys, no whitespace, ASCII, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def record_hash(record: Mapping[str, Any], key: bytes | None = None) -> str:
    """sha256 (hex) of the canonical JSON of ``record`` without its ``hash`` field; with ``key``, its
    HMAC-SHA256 under that key."""
    body = canonical_json({k: v for k, v in record.items() if k != "hash"}).encode("ascii")
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A name for a log key that does not reveal it: 16 hex digits of a domain-separated sha256."""
    return hashlib.sha256(b"agentic-ray decision log key\x00" + key).hexdigest()[:16]


def key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The decision-log key from ``AGENTIC_DECISION_LOG_KEY`` (its UTF-8 bytes) or the file named by
    ``AGENTIC_DECISION_LOG_KEY_FILE`` (its bytes, trailing whitespace stripped); ``None`` when neither is
    set. ``ValueError`` for an empty key."""
    env = os.environ if environ is None else environ
    value = env.get("AGENTIC_DECISION_LOG_KEY")
    if value is not None:
        key = value.encode("utf-8")
    elif env.get("AGENTIC_DECISION_LOG_KEY_FILE"):
        with open(env["AGENTIC_DECISION_LOG_KEY_FILE"], "rb") as fh:
            key = fh.read().rstrip()
    else:
        return None
    if not key:
        raise ValueError("decision log key: empty")
    return key


@dataclass(frozen=True, slots=True)
class LogHead:
    """Where a log ends: ``count`` records, the last one's ``hash`` (``GENESIS`` when empty)."""

    count: int
    hash: str

    def to_dict(self) -> dict[str, object]:
        return {"count": self.count, "hash": self.hash}


class DecisionLog:
    """Append-only, hash-chained JSON-lines log. Thread-safe; use one object per file per process.

    ``checkpoint_every``: write a checkpoint record after every N records (0: never). ``key``: chain
    with HMAC-SHA256 under this key (module docstring).
    ``on_checkpoint(head)``: called (outside the lock) with the head after each checkpoint, to anchor
    it elsewhere. ``clock``: wall-clock seconds for ``ts`` (``time.time`` by default). ``max_bytes``:
    rotate the file at this size, keeping ``backups`` old files (module docstring; None: never).
    Opening an existing file continues its chain; a torn last line is cut off and a ``recovery`` record
    says how many bytes were dropped.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        checkpoint_every: int = 1000,
        fsync: bool = False,
        on_checkpoint: Callable[[LogHead], None] | None = None,
        clock: Callable[[], float] = time.time,
        key: bytes | None = None,
        max_bytes: int | None = None,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every: must be >= 0, got {checkpoint_every!r}")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
            raise ValueError(f"max_bytes: must be an integer >= 1 or None, got {max_bytes!r}")
        if isinstance(backups, bool) or not isinstance(backups, int) or backups < 1:
            raise ValueError(f"backups: must be an integer >= 1, got {backups!r}")
        self.max_bytes = max_bytes
        self.backups = backups
        self.rotations = 0
        self.path = os.fspath(path)
        self.checkpoint_every = checkpoint_every
        self.fsync = fsync
        self.on_checkpoint = on_checkpoint
        self._clock = clock
        if key is not None and not key:
            raise ValueError("key: must not be empty")
        self._key = key
        self._lock = threading.Lock()
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            count, last_hash, torn = self._resume()
        except Exception:
            os.close(self._fd)
            raise
        self._size = os.fstat(self._fd).st_size
        self._rotating = False
        self._count = count
        self._prev = last_hash
        self._since_checkpoint = 0
        if torn:
            self._append_locked("recovery", {"discarded_bytes": torn, "reason": "torn last line (crash mid-write)"})
        opened: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
        if key is not None:
            opened["mac"] = {"alg": "hmac-sha256", "key_id": key_id(key)}
        self._append_locked("open", opened)

    def _resume(self) -> tuple[int, str, int]:
        """Index and hash to continue from, and the byte count of a torn tail (cut off here)."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0, GENESIS, 0
        start = max(0, size - _TAIL_SCAN_BYTES)
        tail = os.pread(self._fd, size - start, start)
        torn = 0
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            keep = start + cut + 1 if cut >= 0 else start
            if cut < 0 and start > 0:
                raise ValueError(f"{self.path}: last line longer than {_TAIL_SCAN_BYTES} bytes; not a decision log")
            torn = size - keep
            os.ftruncate(self._fd, keep)
            tail = tail[: keep - start]
        lines = tail.rstrip(b"\n").split(b"\n") if tail else []
        if not lines or not lines[-1]:
            return 0, GENESIS, torn
        try:
            last = json.loads(lines[-1])
            return int(last["i"]) + 1, str(last["hash"]), torn
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"{self.path}: last record is not a decision-log record ({exc}); refusing to append"
            raise ValueError(msg) from exc

    @property
    def head(self) -> LogHead:
        """Records written so far and the hash of the last one (an anchor for ``--expect-head``)."""
        with self._lock:
            return LogHead(self._count, self._prev)

    def append(self, kind: str, body: Mapping[str, Any], ts: float | None = None) -> str:
        """Append one record of ``kind`` (see ``KINDS``) with a JSON-able ``body``; returns its hash."""
        if kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        checkpoint = None
        with self._lock:
            h = self._append_locked(kind, body, ts)
            if self.checkpoint_every and kind != "checkpoint":
                self._since_checkpoint += 1
                if self._since_checkpoint >= self.checkpoint_every:
                    self._since_checkpoint = 0
                    self._append_locked("checkpoint", {"count": self._count, "running_hash": self._prev})
                    checkpoint = LogHead(self._count, self._prev)
        if checkpoint is not None and self.on_checkpoint is not None:
            self.on_checkpoint(checkpoint)
        return h

    def _append_locked(self, kind: str, body: Mapping[str, Any], ts: float | None = None) -> str:
        if self._fd < 0:
            raise ValueError(f"{self.path}: decision log is closed")
        record = {
            "i": self._count,
            "kind": kind,
            "ts": round(self._clock() if ts is None else ts, 6),
            "prev": self._prev,
            "body": jsonable(body),
        }
        h = record_hash(record, self._key)
        record["hash"] = h
        line = (canonical_json(record) + "\n").encode("ascii")
        written = os.write(self._fd, line)
        if written != len(line):  # a short write on a regular file means the disk is full
            raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
        if self.fsync:
            os.fsync(self._fd)
        self._count += 1
        self._prev = h
        self._size += written
        if self.max_bytes is not None and self._size >= self.max_bytes and not self._rotating:
            self._rotate_locked()
        return h

    def _rotate_locked(self) -> None:
        """Shift the old files, start a new one whose ``open`` record continues the chain."""
        os.close(self._fd)
        self._fd = -1
        for k in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{k}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{k + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0
        self.rotations += 1
        opened: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(),
                                  "continues": {"i": self._count, "prev": self._prev,
                                                "from": os.path.basename(self.path) + ".1"}}  # fmt: skip
        if self._key is not None:
            opened["mac"] = {"alg": "hmac-sha256", "key_id": key_id(self._key)}
        self._rotating = True
        try:
            self._append_locked("open", opened)
        finally:
            self._rotating = False

    def log_decision(
        self,
        *,
        request_id: str,
        action: str,
        qos: str,
        policy_version: str,
        policy_sha256: str,
        rule_ids: Sequence[str] = (),
        inputs: Mapping[str, Any] | None = None,
        predicted: Mapping[str, Any] | None = None,
        outcome: str | None = None,
        ts: float | None = None,
    ) -> str:
        """Append a ``decision`` record: what was decided for ``request_id`` and from which figures.

        ``action``: ``route``/``shed``/``wait``/``start``/``enqueue``/``reject``/``place``;
        ``inputs``: a small summary (remaining budget, queue depths, candidate count), never payloads;
        ``predicted``: predicted figures (``predicted_ms``, ``replica_id``); ``outcome``: what happened
        (``routed``, ``shed:deadline_passed``...).
        """
        body = {
            "request_id": str(request_id),
            "action": action,
            "qos": qos,
            "policy": {"version": policy_version, "sha256": policy_sha256},
            "rule_ids": list(rule_ids),
            "inputs": dict(inputs or {}),
            "predicted": dict(predicted or {}),
            "outcome": outcome,
        }
        return self.append("decision", body, ts)

    def log_completion(
        self,
        *,
        request_id: str,
        qos: str,
        ok: bool,
        latency_ms: float,
        budget_left_ms: float,
        replica_id: str | None = None,
        ts: float | None = None,
    ) -> str:
        """Append a ``completion`` record: the observed end of ``request_id`` against its budget."""
        body = {
            "request_id": str(request_id),
            "qos": qos,
            "ok": bool(ok),
            "latency_ms": latency_ms,
            "budget_left_ms": budget_left_ms,
            "replica_id": replica_id,
        }
        return self.append("completion", body, ts)

    def close(self) -> None:
        """Close the file; later appends raise ``ValueError``. Idempotent."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        with _OPEN_LOCK:
            if _OPEN_LOGS.get(os.path.realpath(self.path)) is self:
                del _OPEN_LOGS[os.path.realpath(self.path)]

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_OPEN_LOGS: dict[str, DecisionLog] = {}
_OPEN_LOCK = threading.Lock()


def options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``max_bytes`` / ``backups`` for a process's log from ``AGENTIC_DECISION_LOG_MAX_BYTES`` (default
    64 MiB; 0: no rotation) and ``AGENTIC_DECISION_LOG_BACKUPS`` (default 3). ``ValueError`` names a bad
    variable."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, key, default in (("AGENTIC_DECISION_LOG_MAX_BYTES", "max_bytes", DEFAULT_MAX_BYTES),
                               ("AGENTIC_DECISION_LOG_BACKUPS", "backups", DEFAULT_BACKUPS)):  # fmt: skip
        text = env.get(name)
        try:
            value = int(text) if text not in (None, "") else default
        except ValueError:
            raise ValueError(f"{name}: must be an integer, got {text!r}") from None
        if value < 0 or (key == "backups" and value < 1):
            raise ValueError(f"{name}: must be {'>= 1' if key == 'backups' else '>= 0'}, got {value}")
        out[key] = value
    if out["max_bytes"] == 0:
        out["max_bytes"] = None
    return out


def open_decision_log(path: str | os.PathLike[str], **options: Any) -> DecisionLog:
    """The process's ``DecisionLog`` for ``path`` (created on first use with ``options``; later calls
    return the same object, so two components of one process never interleave two chains in one file)."""
    key = os.path.realpath(os.fspath(path))
    with _OPEN_LOCK:
        log = _OPEN_LOGS.get(key)
        if log is None:
            log = _OPEN_LOGS[key] = DecisionLog(path, **options)
        return log
