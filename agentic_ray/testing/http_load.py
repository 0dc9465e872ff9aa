"""A small HTTP load generator that records every request: class, status, latency, ``Retry-After``.

Off-the-shelf generators (wrk, hey, oha) report one latency distribution for a whole run; judging a
front door needs the figures per QoS class and per status. This one sends ``POST`` requests with the
agentic headers over persistent HTTP/1.1 connections (plain asyncio streams, no HTTP library, so the
generator itself stays cheap next to the server on a small host) and returns one record per request.

Two ways to drive load:

- **closed loop** (``clients=N``): N connections, each sending its next request when the last one was
  answered, like ``wrk -c N``. A client answered 429/503 with ``Retry-After`` sends at once, as wrk
  does, unless ``honor_retry_after`` (then it waits that long, capped at ``retry_after_cap_s``).
- **open loop** (``rate_rps=R``): Poisson arrivals at R requests per second, each on an idle
  connection of a pool (a new one when all are busy), so a slow server does not slow the arrivals.

The class of each request is drawn from ``mix`` with a seeded ``random.Random``; ``bad_fraction`` of the
requests are malformed on purpose (a bad ``x-budget-ms``, an unknown class, a negative budget, a body
that is not JSON), each recorded with class ``"bad"``. With ``bad_window_s`` (open loop only) the
malformed draws are sent only in odd windows of that length (0 is clean, 1 has bad input, ...) and
dropped in even ones: the well-formed arrivals are the same Poisson stream in both, so one run compares
clean and dirty windows side by side under the same host conditions (``benchmarks/http_front_door.py``).

    python -m agentic_ray.testing.http_load http://127.0.0.1:8000/infer --clients 60 --duration 10 \\
        --mix critical=0.2,standard=0.4,sheddable=0.4 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadSpec", "Record", "run_load", "summarize_records"]

_BAD_KINDS = ("bad_budget", "unknown_class", "negative_budget", "bad_body")


@dataclass(frozen=True, slots=True)
class Record:
    """One request: when it was sent (seconds from the run's start), its class, HTTP status (0: the
    connection failed), latency in ms, the ``Retry-After`` it got (None when none) and, for an answer
    other than 200, the ``error`` of its JSON body (agentic-ray's refusals name their reason there: a
    door's ``door_throttled``, the router's ``deadline_exceeded``; None when the body has none)."""

    sent_s: float
    qos: str
    status: int
    latency_ms: float
    retry_after_s: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to send. Exactly one of ``clients`` (closed loop) and ``rate_rps`` (open loop) is set."""

    url: str
    duration_s: float
    mix: Mapping[str, float] = field(default_factory=lambda: {"critical": 0.2, "standard": 0.4, "sheddable": 0.4})
    clients: int | None = None
    rate_rps: float | None = None
    seed: int = 0
    body: str = '{"prompt": "hi"}'
    headers: Mapping[str, str] = field(default_factory=dict)
    bad_fraction: float = 0.0
    bad_window_s: float | None = None
    honor_retry_after: bool = False
    retry_after_cap_s: float = 1.0
    timeout_s: float = 30.0
    max_connections: int = 512

    def __post_init__(self) -> None:
        if (self.clients is None) == (self.rate_rps is None):
            raise ValueError("set exactly one of clients (closed loop) and rate_rps (open loop)")
        if self.clients is not None and self.clients < 1:
            raise ValueError(f"clients: must be >= 1, got {self.clients!r}")
        if self.rate_rps is not None and not self.rate_rps > 0:
            raise ValueError(f"rate_rps: must be > 0, got {self.rate_rps!r}")
        if not self.duration_s > 0:
            raise ValueError(f"duration_s: must be > 0, got {self.duration_s!r}")
        if not 0.0 <= self.bad_fraction < 1.0:
            raise ValueError(f"bad_fraction: must be in [0, 1), got {self.bad_fraction!r}")
        if self.bad_window_s is not None and not (self.bad_window_s > 0 and self.rate_rps is not None):
            raise ValueError(f"bad_window_s: must be > 0 and needs rate_rps (open loop), got {self.bad_window_s!r}")
        if not self.mix or any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"mix: needs a positive weight, got {dict(self.mix)!r}")


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, float | None, str | None]:
        """Send one request, read its response; ``(status, retry_after_s, error)`` (``error``: see
        ``Record``). Reconnects when closed, by
        either side: a server closes a keep-alive connection idle past its timeout (Serve's proxies after
        90 s), and reusing it would fail the request, as a pooling HTTP client checks before reuse."""
        if self.writer is None or self.writer.is_closing() or (self.reader is not None and self.reader.at_eof()):
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, retry, close, chunked = 0, None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "retry-after":
                try:
                    retry = float(value)
                except ValueError:
                    retry = None
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        body = b""
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)  # the chunk and its CRLF
                if status != 200 and len(body) < 4096:  # a refusal's small JSON body, for its ``error``
                    body += chunk[:-2]
                if size == 0:
                    break
        elif length:
            body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, retry, _error_of(body) if status != 200 else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class _Requests:
    """Builds each request's bytes: its class from the mix, sometimes a malformed one."""

    def __init__(self, spec: LoadSpec) -> None:
        parts = urlsplit(spec.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.classes = list(spec.mix)
        self.weights = [float(spec.mix[c]) for c in self.classes]

    def next(self) -> tuple[str, bytes]:
        spec = self.spec
        headers = dict(spec.headers)
        body = spec.body
        if spec.bad_fraction and self.rng.random() < spec.bad_fraction:
            kind = self.rng.choice(_BAD_KINDS)
            qos = "bad"
            if kind == "bad_budget":
                headers["x-budget-ms"] = "soon"
            elif kind == "unknown_class":
                headers["x-qos"] = "platinum"
            elif kind == "negative_budget":
                headers["x-budget-ms"] = "-5"
            else:
                body = '{"prompt": '
        else:
            qos = self.rng.choices(self.classes, self.weights)[0]
            headers["x-qos"] = qos
        data = body.encode()
        lines = [f"POST {self.path} HTTP/1.1", f"host: {self.host}:{self.port}", "content-type: application/json",
                 f"content-length: {len(data)}"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return qos, ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def _error_of(body: bytes) -> str | None:
    """The ``error`` field of a JSON object ``body``, or None."""
    try:
        value = json.loads(body).get("error") if body.startswith(b"{") else None
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


async def bounded(work: Any, timeout_s: float) -> Any:
    """``await work`` (a coroutine) for at most ``timeout_s`` (``TimeoutError`` after), in the calling task.

    Not ``asyncio.wait_for``: on Python 3.11 it runs a coroutine as a new task, which starts one turn of
    the event loop later, and a load generator's loop is busy: that turn (milliseconds at hundreds of
    requests a second) was counted as the request's latency, before the request was even sent."""
    if hasattr(asyncio, "timeout"):  # Python >= 3.11
        async with asyncio.timeout(timeout_s):
            return await work
    return await asyncio.wait_for(work, timeout_s)


async def _one(conn: _Connection, raw: bytes, qos: str, start: float, timeout_s: float) -> Record:
    sent = time.perf_counter()
    try:
        status, retry, error = await bounded(conn.request(raw), timeout_s)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
        conn.close()
        status, retry, error = 0, None, None
    latency_ms = round((time.perf_counter() - sent) * 1000.0, 3)
    return Record(round(sent - start, 6), qos, status, latency_ms, retry, error)


async def _closed_loop(spec: LoadSpec, requests: _Requests, start: float, end: float) -> list[Record]:
    records: list[Record] = []

    async def client() -> None:
        conn = _Connection(requests.host, requests.port)
        try:
            while time.perf_counter() < end:
                qos, raw = requests.next()
                record = await _one(conn, raw, qos, start, spec.timeout_s)
                records.append(record)
                if record.status == 0:
                    await asyncio.sleep(0.05)  # refused connection: do not spin
                elif spec.honor_retry_after and record.retry_after_s is not None:
                    await asyncio.sleep(min(record.retry_after_s, spec.retry_after_cap_s))
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(int(spec.clients or 1))))
    return records


async def _open_loop(spec: LoadSpec, requests: _Requests, start: float, end: float) -> list[Record]:
    records: list[Record] = []
    idle: list[_Connection] = []
    tasks: set[asyncio.Task] = set()
    arrivals = random.Random(spec.seed + 1)
    rate = float(spec.rate_rps or 1.0)

    async def send(qos: str, raw: bytes) -> None:
        conn = idle.pop() if idle else _Connection(requests.host, requests.port)
        record = await _one(conn, raw, qos, start, spec.timeout_s)
        records.append(record)
        if conn.writer is not None and len(idle) < spec.max_connections:
            idle.append(conn)
        else:
            conn.close()

    at = start
    while True:
        at += arrivals.expovariate(rate)
        if at >= end:
            break
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        qos, raw = requests.next()
        if qos == "bad" and spec.bad_window_s and int((at - start) // spec.bad_window_s) % 2 == 0:
            continue  # a clean window: the malformed draw is dropped, the well-formed stream unchanged
        task = asyncio.ensure_future(send(qos, raw))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=spec.timeout_s)
    for conn in idle:
        conn.close()
    return records


async def run_load(spec: LoadSpec) -> list[Record]:
    """Drive ``spec`` against its URL and return every request's record (in completion order)."""
    requests = _Requests(spec)
    start = time.perf_counter()
    end = start + spec.duration_s
    if spec.clients is not None:
        return await _closed_loop(spec, requests, start, end)
    return await _open_loop(spec, requests, start, end)


def summarize_records(
    records: Sequence[Record], budgets_ms: Mapping[str, float], duration_s: float, warmup_s: float = 0.0
) -> dict:
    """Per-class and total figures of a run (requests sent before ``warmup_s`` are left out).

    Per class: ``requests``; ``ok`` (status 200); ``in_budget`` (200 within the class's budget);
    ``attainment`` = in_budget / requests (shed and failed requests count as misses); ``statuses``;
    ``p50_ms`` / ``p99_ms`` of the 200s (nearest rank). Total: ``goodput_rps`` (in-budget answers per
    second of the measured window), ``throughput_rps`` (200s per second), ``reject_p99_ms`` (p99
    latency of 429/503 answers)."""
    window = max(1e-9, duration_s - warmup_s)
    kept = [r for r in records if r.sent_s >= warmup_s]
    by_class: dict[str, list[Record]] = {}
    for r in kept:
        by_class.setdefault(r.qos, []).append(r)
    classes: dict[str, dict] = {}
    good = ok_total = 0
    rejects: list[float] = []
    for qos, rs in sorted(by_class.items()):
        budget = budgets_ms.get(qos)
        ok = sorted(r.latency_ms for r in rs if r.status == 200)
        in_budget = sum(1 for v in ok if budget is not None and v <= budget)
        statuses: dict[str, int] = {}
        for r in rs:
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
            if r.status in (429, 503):
                rejects.append(r.latency_ms)
        classes[qos] = {
            "requests": len(rs),
            "ok": len(ok),
            "in_budget": in_budget,
            "attainment": in_budget / len(rs) if rs else float("nan"),
            "statuses": statuses,
            "p50_ms": _rank(ok, 0.50),
            "p99_ms": _rank(ok, 0.99),
        }
        if budget is not None:
            good += in_budget
        ok_total += len(ok)
    return {
        "requests": len(kept),
        "goodput_rps": good / window,
        "throughput_rps": ok_total / window,
        "reject_p99_ms": _rank(sorted(rejects), 0.99),
        "classes": classes,
    }


def _rank(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (NaN when empty)."""
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, math.ceil(q * len(values) - 1e-9) - 1))
    return float(values[k])


def _parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if not name.strip() or not weight.strip():
            raise argparse.ArgumentTypeError(f"mix: expected CLASS=WEIGHT[,...], got {text!r}")
        mix[name.strip()] = float(weight)
    return mix


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agentic_ray.testing.http_load URL ...``: run, print a summary, write every record."""
    parser = argparse.ArgumentParser(prog="http_load", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--rate", type=float, dest="rate_rps")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--mix", type=_parse_mix, default={"critical": 0.2, "standard": 0.4, "sheddable": 0.4})
    parser.add_argument("--budgets", type=_parse_mix, default={"critical": 100, "standard": 500, "sheddable": 2000})
    parser.add_argument("--bad-fraction", type=float, default=0.0)
    parser.add_argument("--bad-window", type=float, dest="bad_window_s", help="bad input in odd windows only (s)")
    parser.add_argument("--honor-retry-after", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write {summary, records} here")
    args = parser.parse_args(argv)
    if (args.clients is None) == (args.rate_rps is None):
        parser.error("give exactly one of --clients and --rate")
    try:
        spec = LoadSpec(url=args.url, duration_s=args.duration, mix=args.mix, clients=args.clients,
                        rate_rps=args.rate_rps, seed=args.seed, bad_fraction=args.bad_fraction,
                        bad_window_s=args.bad_window_s, honor_retry_after=args.honor_retry_after)  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    records = asyncio.run(run_load(spec))
    summary = summarize_records(records, args.budgets, args.duration, args.warmup)
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "records": [asdict(r) for r in records]}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
