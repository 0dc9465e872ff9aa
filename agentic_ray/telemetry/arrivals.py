"""Recorded arrivals from decision logs, for what-if replay in the simulator (``agentic-ray trace export``).

A request's records join by its id across the logs of every process (router, replica gate, SDK):

- **arrival time**: the router's ``arrive`` record (written with a decision log on), else the request's
  earliest decision record (``route``, ``shed``, ``wait``, ``refuse``, a gate's ``start`` or
  ``enqueue``, an SDK ``place``);
- **class, tenant, workflow, stage, model, data class**: the ``arrive`` record's (or a ``place``
  record's) inputs, the class from its ``qos``;
- **observed service time**: from the gate's ``completion`` record, minus the gate's ``start`` record
  when there is one (the time it ran, not its wait), else the completion's latency at the replica; empty
  for requests that never ran (shed, refused, expired);
- **outcome**: ``completed``, ``failed``, or the last decision's outcome (``shed:...``).

Coordinator records (``control:...``) and shadow evaluations are not requests and are skipped. Times
are seconds from the first arrival, so a trace replays from 0 (``sim.arrivals.read_trace``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from typing import Any

__all__ = ["COLUMNS", "export_arrivals", "write_csv"]

COLUMNS = ("at_s", "class", "tenant", "workflow", "stage", "model", "data_class", "service_ms", "outcome")
_ARRIVAL_ACTIONS = {"arrive", "route", "shed", "wait", "refuse", "start", "enqueue", "place"}
_ATTRS = ("tenant", "workflow", "stage", "model", "data_class")


def _records(paths: Iterable[str | os.PathLike[str]]) -> Iterable[tuple[str, dict[str, Any], float]]:
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{path}:{line_no}: not a decision-log record") from None
                kind, body = rec.get("kind"), rec.get("body") or {}
                if kind in ("decision", "completion") and body.get("request_id") is not None:
                    yield kind, body, float(rec.get("ts") or 0.0)


def export_arrivals(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """One row per request (``COLUMNS``) from the decision logs at ``paths``, in arrival order."""
    seen: dict[str, dict[str, Any]] = {}
    for kind, body, ts in _records(paths):
        action = str(body.get("action") or "")
        if kind == "decision" and (action.startswith("control:") or action == "shadow"):
            continue
        rid = str(body["request_id"])
        r = seen.setdefault(rid, {"at": None, "class": None, "start": None, "done": None, "outcome": None})
        if kind == "completion":
            r["done"] = (ts, body.get("latency_ms"), bool(body.get("ok", True)))
            continue
        if action == "arrive":  # the router's own arrival record wins
            r["at"], r["arrived"], r["class"] = ts, True, body.get("qos") or r["class"]
        elif action in _ARRIVAL_ACTIONS and not r.get("arrived"):
            r["at"] = ts if r["at"] is None else min(ts, r["at"])
        r["class"] = r["class"] or body.get("qos") or None
        inputs = body.get("inputs") or {}
        for attr in _ATTRS:
            if inputs.get(attr) is not None:
                r.setdefault(attr, inputs[attr])
        if action == "start":
            r["start"] = ts
        if action not in ("arrive", "enqueue", "start"):
            r["outcome"] = body.get("outcome")
    rows = [_row(r) for r in seen.values() if r["at"] is not None]
    rows.sort(key=lambda row: row["at_s"])
    first = rows[0]["at_s"] if rows else 0.0
    for row in rows:
        row["at_s"] = round(row["at_s"] - first, 6)
    return rows


def _row(r: dict[str, Any]) -> dict[str, Any]:
    service: float | None = None
    outcome = r["outcome"] or ""
    if r["done"] is not None:
        end, latency, ok = r["done"]
        service = (end - r["start"]) * 1000.0 if r["start"] is not None and end >= r["start"] else latency
        outcome = "completed" if ok else "failed"
    row = {"at_s": r["at"], "class": r["class"] or "", "service_ms": "" if service is None else round(service, 3),
           "outcome": outcome}  # fmt: skip
    for attr in _ATTRS:
        row[attr] = r.get(attr) or ""
    return row


def write_csv(rows: list[dict[str, Any]], out: str | os.PathLike[str]) -> None:
    """Write ``rows`` as CSV with the ``COLUMNS`` header (what ``sim --replay`` reads)."""
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
