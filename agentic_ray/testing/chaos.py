"""Fault injection and load for the chaos suite (``benchmarks/chaos.py``, ``tests/reliability``).

Load, each request followed to its end in a ``ledger.Ledger``:

- ``drive_handle(handle, ledger, ...)``: open-loop Poisson arrivals on a Serve handle of an
  ``@agentic_ray.deployment`` through ``agentic_ray.serve.call`` (class and budget per request, the mix
  drawn with a seeded ``random.Random``);
- ``drive_tasks(fn, ledger, ...)``: the same on the task path (an ``@agentic_ray.task``);
- ``records_to_ledger(records, ...)``: the records of ``http_load`` (HTTP) into a ledger.

An answer is ``ok``, ``typed`` (an ``AgenticRayError``, or an HTTP error status the front door chose:
4xx, 503, 504) or ``untyped`` (anything else: a Ray error of a dead actor, HTTP 500, a failed
connection); a request with no answer ``answer_timeout_s`` after its deadline is left unanswered
(``lost`` when judged).

Faults (each kills only what it names, by handle or pid): ``kill_agent(node_id)``,
``kill_global_coordinator()``, ``kill_replica(app, deployment)``, ``cpu_hog()`` (a busy process of our
own, one core). Observation: ``agents_info()``, ``VersionWatch`` (every member's policy revision over
time; a member seen running an older revision than it ran before is a regression), ``pid_of(actor)``,
``actor_pids(kind)`` (from the GCS actor table), ``rss_mb(pid)``, ``cpu_s(pid)`` and ``open_fds(pid)``
(from ``/proc``; NaN elsewhere), ``router_state(target)`` (this process's agentic router of a
deployment).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from agentic_ray.testing.http_load import bounded
from agentic_ray.testing.ledger import Ledger

__all__ = [
    "VersionWatch",
    "actor_pids",
    "agents_info",
    "answer_kind",
    "cpu_hog",
    "cpu_s",
    "quantile_ms",
    "wakeup_lag",
    "drive_handle",
    "drive_tasks",
    "global_coordinator",
    "kill_agent",
    "kill_global_coordinator",
    "kill_replica",
    "open_fds",
    "pid_of",
    "records_to_ledger",
    "replica_actors",
    "router_state",
    "rss_mb",
]

MIX = {"critical": 0.2, "standard": 0.4, "sheddable": 0.4}


def answer_kind(error: BaseException) -> tuple[str, str]:
    """``("typed", "Overloaded:queue_full")`` for agentic-ray's errors, ``("untyped", TYPE)`` otherwise."""
    from agentic_ray.errors import AgenticRayError

    if isinstance(error, AgenticRayError):
        name = type(error).__name__
        if name.startswith("RayTaskError(") and name.endswith(")"):
            name = name[len("RayTaskError(") : -1]  # raised in a replica or task: Ray's wrapper of it
        return "typed", f"{name}:{getattr(error, 'reason', '')}"
    return "untyped", type(error).__name__


def _arrivals(rate_rps: float, duration_s: float, rng: random.Random) -> Iterator[float]:
    at = 0.0
    while True:
        at += rng.expovariate(rate_rps)
        if at >= duration_s:
            return
        yield at


async def _paced(
    start: float, rate_rps: float, duration_s: float, seed: int, mix: Mapping[str, float], send: Callable
) -> None:
    """Call ``send(i, qos)`` at Poisson times from ``start`` (loop time) and wait for every call."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    classes, weights = list(mix), list(mix.values())
    tasks: set[asyncio.Task] = set()
    for i, at in enumerate(_arrivals(rate_rps, duration_s, rng)):
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(send(i, rng.choices(classes, weights)[0]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks), return_exceptions=True)


async def drive_handle(
    handle: Any,
    ledger: Ledger,
    *,
    rate_rps: float,
    duration_s: float,
    budgets_ms: Mapping[str, float],
    mix: Mapping[str, float] = MIX,
    seed: int = 0,
    tag: str = "h",
    payload: Any = None,
    answer_timeout_s: float = 10.0,
) -> None:
    """Open-loop load on ``handle`` for ``duration_s``; every request goes into ``ledger`` under
    ``(tag, i)``. Returns when every request has an answer or timed out."""
    from agentic_ray.serve import call

    async def send(i: int, qos: str) -> None:
        budget = float(budgets_ms[qos])
        sent = time.time()
        key = (tag, i)
        ledger.sent(key, qos, sent, sent + budget / 1000.0)
        try:
            coro = call(handle, payload, qos=qos, budget_ms=budget)
            await bounded(coro, budget / 1000.0 + ledger.grace_s + answer_timeout_s)  # in this task: no hop
            ledger.answered(key, time.time(), "ok")
        except asyncio.TimeoutError:
            return  # no answer: lost
        except Exception as exc:
            ledger.answered(key, time.time(), *answer_kind(exc))

    await _paced(asyncio.get_running_loop().time(), rate_rps, duration_s, seed, mix, send)


async def drive_tasks(
    fn: Any,
    ledger: Ledger,
    *,
    rate_rps: float,
    duration_s: float,
    budgets_ms: Mapping[str, float],
    mix: Mapping[str, float] = MIX,
    seed: int = 0,
    tag: str = "t",
    args: Sequence[Any] = (),
    check: Callable[[Any], str | None] | None = None,
    answer_timeout_s: float = 30.0,
    ref_answers: dict[Any, float] | None = None,
) -> None:
    """Open-loop ``fn.options(qos=..., budget_ms=...).remote(*args)`` calls (an ``@agentic_ray.task``),
    each awaited with ``agentic_ray.get_async`` (a typed ``BudgetExhausted`` at its deadline when the
    task has not answered by then); ``ref_answers`` (when given) receives, per request key, when its
    ``ObjectRef`` itself resolved, which is what a caller of plain ``ray.get`` waits for.
    ``check(result)`` may turn a result into an untyped error (its message) e.g. a residency breach."""
    from agentic_ray.sdk._results import get_async

    async def send(i: int, qos: str) -> None:
        budget = float(budgets_ms[qos])
        sent = time.time()
        key = (tag, i)
        ledger.sent(key, qos, sent, sent + budget / 1000.0)
        try:
            ref = fn.options(qos=qos, budget_ms=budget).remote(*args)
            if ref_answers is not None:
                ref.future().add_done_callback(lambda _f, key=key: ref_answers.setdefault(key, time.time()))
            result = await get_async(ref, timeout=budget / 1000.0 + answer_timeout_s)
        except asyncio.TimeoutError:
            return
        except Exception as exc:
            ledger.answered(key, time.time(), *answer_kind(exc))
            return
        problem = check(result) if check is not None else None
        ledger.answered(key, time.time(), "untyped" if problem else "ok", problem or "")

    await _paced(asyncio.get_running_loop().time(), rate_rps, duration_s, seed, mix, send)


def records_to_ledger(
    records: Sequence[Mapping[str, Any]],
    ledger: Ledger,
    start: float,
    budgets_ms: Mapping[str, float],
    tag: str = "http",
) -> None:
    """``http_load`` records (``sent_s`` from ``start``, ``status``, ``latency_ms``, ``error``) into
    ``ledger``. 200: ok; 4xx, 503, 504: typed (the front door's JSON refusals; detail ``http:STATUS`` and
    the body's ``:error`` when it named one); status 0 after the generator's timeout: no answer; anything
    else: untyped."""
    for i, r in enumerate(records):
        qos = str(r["qos"])
        sent = start + float(r["sent_s"])
        budget = float(budgets_ms.get(qos, 1000.0))
        key = (tag, i)
        ledger.sent(key, qos, sent, sent + budget / 1000.0)
        status, at = int(r["status"]), sent + float(r["latency_ms"]) / 1000.0
        if status == 200:
            ledger.answered(key, at, "ok")
        elif 400 <= status < 500 or status in (503, 504):
            error = r.get("error")
            ledger.answered(key, at, "typed", f"http:{status}:{error}" if error else f"http:{status}")
        elif status == 0 and float(r["latency_ms"]) >= 0.99 * float(r.get("timeout_ms", math.inf)):
            continue  # the generator gave up waiting: no answer
        else:
            ledger.answered(key, at, "untyped", f"http:{status}")


# -- faults --------------------------------------------------------------------------------------------
def global_coordinator() -> Any:
    import ray

    from agentic_ray.actors._common import GLOBAL_NAME, NAMESPACE

    return ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)


def agents_info(timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """``GlobalCoordinator.agents_info()``: per node id its agent's name, incarnation, registrations."""
    import ray

    return ray.get(global_coordinator().agents_info.remote(), timeout=timeout_s)


def kill_agent(node_id: str) -> str:
    """Crash the node agent of ``node_id`` (Ray restarts it); returns its incarnation before."""
    import ray

    from agentic_ray.actors._common import NAMESPACE, agent_name

    agent = ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
    before = ray.get(agent.identity.remote(), timeout=30)["incarnation"]
    ray.kill(agent, no_restart=False)
    return str(before)


def kill_global_coordinator() -> None:
    """Crash the global coordinator (Ray restarts it; it resumes from its checkpoint)."""
    import ray

    ray.kill(global_coordinator(), no_restart=False)


def replica_actors(app: str, deployment: str) -> list[tuple[str, Any]]:
    """``(actor name, handle)`` of every live Serve replica of ``app``/``deployment``."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    out = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") == "serve" and entry["name"].startswith(prefix):
            with contextlib.suppress(ValueError):
                out.append((entry["name"], ray.get_actor(entry["name"], namespace="serve")))
    return sorted(out, key=lambda x: x[0])


def kill_replica(app: str, deployment: str, index: int = 0) -> str:
    """Kill one replica of ``app``/``deployment`` for good (Serve's controller starts a new one);
    returns its actor name."""
    import ray

    name, actor = replica_actors(app, deployment)[index]
    ray.kill(actor, no_restart=True)
    return name


@contextlib.contextmanager
def cpu_hog(cores: int = 1) -> Iterator[list[int]]:
    """``cores`` busy-looping processes of our own for the duration of the block (their pids)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


@contextlib.contextmanager
def wakeup_lag(period_s: float = 0.002) -> Iterator[list[float]]:
    """How late this process gets to run, for the duration of the block: a thread sleeps ``period_s`` at a
    time and records how much longer each sleep took (ms) in the list it yields. That is the wait a
    synchronous piece of this process's work sees (a refusal in the caller, ``serve._handle_throttle``):
    the kernel running other processes on a busy host, and the GIL held by this process's other threads
    (Serve's router thread)."""
    import threading

    samples: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            at = time.perf_counter()
            time.sleep(period_s)
            samples.append(max(0.0, (time.perf_counter() - at - period_s) * 1000.0))

    thread = threading.Thread(target=probe, name="wakeup-lag", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=5)


def host_loop_s(iterations: int = 10_000_000, timer: Callable[[], float] = time.perf_counter) -> float:
    """Seconds this process takes for an empty Python loop of ``iterations`` run as module-level code (as
    ``python -c "for i in range(10_000_000): pass"`` runs it: the loop variable is a global), how fast the
    host runs Python now, so that results of runs on different hosts (or one host at different times) can
    be told apart. (Without the interpreter's start-up: ``time python3 -c ...`` adds ~0.1 s. The chaos
    suite's floors were measured on hosts where that command took 0.33 s to 0.56 s.)"""
    if iterations < 1:
        raise ValueError(f"iterations: must be >= 1, got {iterations!r}")
    code = compile(f"for i in range({int(iterations)}): pass", "<host_loop_s>", "exec")
    start = timer()
    exec(code, {})
    return timer() - start


def quantile_ms(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by nearest rank (NaN when empty)."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q * len(ranked)) - 1)] if ranked else math.nan


def router_state(target: str) -> Any:
    """This process's agentic router of ``target`` (``"app/deployment"``): its ``RoutingState``, or None
    when no router of it has joined this process's Serve plane yet (before its first request)."""
    from agentic_ray.serve._plane import plane

    for m in list(plane().members):
        owner = m._owner() if m.kind == "router" else None
        if owner is not None and getattr(owner, "_target", "").endswith(target):
            return owner.state
    return None


def pid_of(actor: Any, timeout_s: float = 10.0) -> int | None:
    """The process id of ``actor`` (None when it does not answer)."""
    import ray

    try:
        return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=timeout_s))
    except Exception:
        return None


def actor_pids(kind: str) -> list[int]:
    """The process ids of the live actors whose class name contains ``kind`` (``"ProxyActor"``,
    ``"ServeReplica:<app>:"``), from the GCS actor table, not through the actors (after a saturating run a
    call to them can wait behind the work still draining; no dashboard is needed either)."""
    import ray

    table = ray._private.state.actors()
    return sorted({int(a["Pid"]) for a in table.values()
                   if a.get("State") == "ALIVE" and kind in (a.get("ActorClassName") or "")})  # fmt: skip


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` so far, from ``/proc/<pid>/stat`` (NaN when unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime: fields 14 and 15 of stat(5)
    except (OSError, ValueError, IndexError):
        return math.nan


def rss_mb(pid: int | None) -> float:
    """Resident memory of ``pid`` in MiB from ``/proc`` (NaN when unknown)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, TypeError):
        pass
    return math.nan


def open_fds(pid: int | None) -> float:
    """Open file descriptors of ``pid`` (NaN when unknown)."""
    try:
        return float(len(os.listdir(f"/proc/{pid}/fd")))
    except (OSError, TypeError):
        return math.nan


class VersionWatch:
    """Polls the control plane's status and remembers, per member (agent, router, replica), the highest
    policy revision it was seen running; a later sighting of a lower one is a regression.

    Revisions come from the rollout history (``status()["history"]``); agents report the sha256 they
    acknowledged, Serve members the version they run. Members whose policy is not in the history
    (a deployment's own deploy-time policy) are not judged."""

    def __init__(self) -> None:
        self.highest: dict[str, int] = {}
        self.regressions: list[dict[str, Any]] = []
        self.polls = 0
        self.failures = 0

    def poll(self, timeout_s: float = 5.0) -> None:
        import ray

        try:
            status = ray.get(global_coordinator().status.remote(), timeout=timeout_s)
        except Exception:
            self.failures += 1  # restarting: nothing to see
            return
        self.polls += 1
        self.observe(status, time.time())

    def observe(self, status: Mapping[str, Any], at: float) -> None:
        """One status document (``GlobalCoordinator.status()``)."""
        by_sha = {h["sha256"]: int(h["revision"]) for h in status.get("history", ())}
        by_version = {h["version"]: int(h["revision"]) for h in status.get("history", ())}
        seen: list[tuple[str, int | None]] = []
        for zone in status.get("zones", {}).values() if isinstance(status.get("zones"), dict) else ():
            for agent in zone if isinstance(zone, list) else ():
                seen.append((f"agent:{agent.get('node_id')}", by_sha.get(str(agent.get("policy_sha")))))
        for dep in (status.get("serve") or {}).get("deployments", {}).values():
            for row in dep.get("routers", ()):
                seen.append((f"router:{row['router_id']}", by_version.get(row.get("policy_version"))))
            for row in dep.get("replicas", ()):
                seen.append((f"replica:{row['replica_id']}", by_version.get(row.get("policy_version"))))
        for member, revision in seen:
            if revision is None:
                continue
            top = self.highest.get(member)
            if top is not None and revision < top:
                self.regressions.append({"member": member, "was": top, "now": revision, "at": at})
            if top is None or revision > top:
                self.highest[member] = revision
