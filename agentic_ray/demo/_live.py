"""Live runs: replay a simulator scenario's seeded requests against real Ray Serve.

``run_live(scenario, seed, paths=("agentic", "tuned", "default"), rounds=1)`` builds the scenario's
workload with the simulator's own generator (``sim.workload.build_workload``: the same arrival times,
classes and per-group service times as ``agentic-ray sim``), deploys the demo service once per path and
round and sends every request open-loop at its arrival time (a request is sent when due, whether or not
earlier ones have answered). Rounds run every path once, in an order that rotates from round to round
(round k starts with path k mod 3), so drift in the host's load hits the paths alike; each path's
figures are summed over its rounds.

- ``agentic``: ``@agentic_ray.deployment`` (``AgenticRequestRouter`` + a replica ``AdmissionGate``);
  each request carries its class and an absolute deadline fixed when it is sent;
- ``default``: Serve as users get it: a plain ``@serve.deployment`` with the same replicas and Serve's
  defaults (power-of-two-choices router, ``max_ongoing_requests`` 5, no bound on the caller's queue);
- ``tuned``: Serve as a competent user would tune it: the same, with ``max_ongoing_requests`` = the
  replicas' slots (the largest group's) and ``max_queued_requests`` = twice the replicas' slots in all
  (a request over it fails at once with Serve's ``BackPressureError``, counted shed).

Both plain paths run the replica's own ``slots`` requests at a time, FIFO (``PlainDemoModel``). Claims
are made against ``tuned``. Each path's report carries the cost of the replica time it used per 1,000
requests completed in budget (``cost_per_1k_good``: the answered requests' service times on the group
that served them, times that group's cost per replica-second), as the simulator's.

Latency is measured at the caller from send to answer. A request counts within budget when it completes
in at most its class budget; ``AdmissionError`` counts as shed, any other error or a timeout as failed;
requests sent during the warm-up are not counted. The caller is this process, which also runs the
Serve router of the handle: before a replay it collects and freezes its heap (``gc.freeze``) and keeps
only unfinished request tasks, because generation-2 collections of everything Ray, Serve and the
workload had allocated took 60-90 ms here and landed on every request in flight (critical requests
have 100 ms). Both paths run the same way. The report has the shape of ``agentic-ray sim --json``
(built by the simulator's ``RunResult``), so both can be compared field by field.

``local_ray()`` starts a private single-node Ray (own temp dir, free ports outside Ray's worker range,
no dashboard, ``RAY_AUTH_MODE=disabled`` for the processes it starts) and stops exactly what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from agentic_ray.errors import AdmissionError
from agentic_ray.policies import NodeAttrs, Policy, RequestMeta
from agentic_ray.sim.cluster import group_cost
from agentic_ray.sim.metrics import ClassStats
from agentic_ray.sim.runner import RunResult
from agentic_ray.sim.scenario import Scenario
from agentic_ray.sim.workload import Workload, build_workload

__all__ = ["LiveOptions", "local_ray", "run_live"]

PATHS = ("agentic", "tuned", "default")
SERVE_DEFAULT_MAX_ONGOING = 5  # Ray Serve's default max_ongoing_requests (2.60)
_RESERVED_PORTS = range(10002, 20000)


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """Knobs of a live run. ``request_timeout_s`` fails a request that takes longer (a hang guard);
    ``progress`` receives one line per ``progress_every_s`` (``None``: silent)."""

    request_timeout_s: float = 60.0
    progress_every_s: float = 2.0
    progress: Callable[[str], None] | None = None
    deploy_timeout_s: float = 120.0


def free_port() -> int:
    """A free TCP port outside Ray's worker range 10002-19999 (the kernel's ephemeral range)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _RESERVED_PORTS:
            return port
    raise RuntimeError("no free port outside 10002-19999")


@contextlib.contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[str]:
    """Start a private one-node Ray, connect this process, yield its address; stop it all afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    from agentic_ray._ray_env import prepare

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    prepare()  # the front door in Serve's proxies, workers at normal priority (they inherit this environment)
    tmp = tempfile.mkdtemp(prefix="agr-demo-", dir="/tmp" if os.path.isdir("/tmp") else None)
    old_tmpdir = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = tmp
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args=dict(
                num_cpus=num_cpus,
                include_dashboard=False,
                temp_dir=os.path.join(tmp, "ray"),
                redis_port=free_port(),
                dashboard_agent_listen_port=free_port(),
                metrics_export_port=free_port(),
                runtime_env_agent_port=free_port(),
            ),
        )
        ray.init(address=cluster.address, namespace="agentic-demo", log_to_driver=False, logging_level="ERROR")
        serve_log = logging.getLogger("ray.serve")
        serve_log.setLevel(logging.WARNING)  # Serve's INFO lines would drown the progress
        if PROBE_TIMEOUTS not in serve_log.filters:
            serve_log.addFilter(PROBE_TIMEOUTS)
        yield cluster.address
    finally:
        if ray.is_initialized():
            with contextlib.suppress(Exception):
                from ray import serve

                serve.shutdown()
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        if old_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmpdir
        shutil.rmtree(tmp, ignore_errors=True)


class _ProbeTimeouts(logging.Filter):
    """Counts and drops Serve's "Failed to get queue length from Replica" warnings: its default router
    probes each replica's queue before routing, and overloaded replicas (the point of the burst) answer
    late, which would print dozens of identical lines; ``run_live`` reports the count per path."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "Failed to get queue length" in str(record.msg):
            self.count += 1
            return False
        return True


PROBE_TIMEOUTS = _ProbeTimeouts()


def _groups(scenario: Scenario) -> list[dict[str, Any]]:
    return [
        {"name": g.name, "count": g.count, "slots": g.slots, "accelerator": g.accelerator, "zone": g.zone,
         "cost": g.cost, "labels": dict(g.labels),
         "service_ms": {m: d.mean_ms for m, d in g.service.items() if getattr(d, "mean_ms", None)}}
        for g in scenario.replicas
    ]  # fmt: skip


def _max_ongoing(scenario: Scenario) -> int:
    values = [g.max_ongoing for g in scenario.replicas if g.max_ongoing != float("inf")]
    return int(max(values)) if values else 5


def serve_options(path: str, scenario: Scenario) -> dict[str, Any]:
    """The Serve options of a plain path: ``default`` sets none (Serve's own); ``tuned`` sets
    ``max_ongoing_requests`` to the replicas' slots and ``max_queued_requests`` to twice their slots."""
    if path == "default":
        return {}
    slots = max(g.slots for g in scenario.replicas)
    total = sum(g.count * g.slots for g in scenario.replicas)
    return {"max_ongoing_requests": slots, "max_queued_requests": 2 * total}


def _deploy(path: str, scenario: Scenario, policy: Policy, timeout_s: float) -> Any:
    from ray import serve

    from agentic_ray.demo._models import DemoModel, PlainDemoModel
    from agentic_ray.serve._deployment import deployment

    groups = _groups(scenario)
    replicas = sum(g["count"] for g in groups)
    if path == "agentic":
        slots = max(g["slots"] for g in groups)
        bound_sum = _max_ongoing(scenario) - slots
        app = deployment(
            policy=policy,
            slots=slots,
            default_queue_bound=max(1, bound_sum // max(1, len(policy.classes))),  # classes without a bound
            router_hook="agentic_ray.serve._hooks:PROCESS_STATS",
            router_options=dict(scenario.router_config.get("agentic", {})),
            num_replicas=replicas,
            ray_actor_options={"num_cpus": 0},
            name="AgenticModel",
        )(DemoModel)
    else:
        app = serve.deployment(
            PlainDemoModel,
            name="PlainModel" if path == "default" else "TunedModel",
            num_replicas=replicas,
            ray_actor_options={"num_cpus": 0},
            **serve_options(path, scenario),
        )
    serve.start(proxy_location="Disabled")
    handle = serve.run(app.bind(groups), name=f"demo-{path}", route_prefix=None, blocking=False)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = serve.status().applications.get(f"demo-{path}")
        if status is not None and status.status == "RUNNING":
            return handle
        time.sleep(0.2)
    raise TimeoutError(f"the {path} demo service did not start within {timeout_s:.0f} s")


async def _send(path: str, handle: Any, payload: Any, qos: str, budget_ms: float) -> Any:
    """One request of the replay: on the agentic path through ``agentic_ray.serve.call`` inside a budget
    scope of ``budget_ms`` (the SDK's call from async code: the class as metadata, the scope's deadline,
    the caller-side throttle; a scope, not ``budget_ms=``, because a workload's budget is the class's up to
    float rounding, and asking for more than the class's budget is refused), on the default path a plain
    handle call."""
    if path != "agentic":
        return await handle.remote(payload)
    from agentic_ray.sdk._tasks import budget
    from agentic_ray.serve import call

    with budget(budget_ms):
        return await call(handle, payload, qos=qos)


async def _replay(path: str, handle: Any, workload: Workload, scenario: Scenario, policy: Policy,
                  options: LiveOptions, records: list[dict[str, Any]] | None = None) -> RunResult:  # fmt: skip
    budgets = dict(workload.class_budget_ms)
    result = RunResult(path, {c: ClassStats() for c in budgets}, scenario.measured_s)
    groups = [g.name for g in scenario.replicas]
    costs = scenario.costs if scenario.costs is not None else dict(policy.costs)
    cost_of = {g.name: group_cost(g, costs) for g in scenario.replicas}
    counters = {"sent": 0, "done": 0, "shed": 0, "failed": 0}
    loop = asyncio.get_running_loop()

    async def one(item: Any) -> None:
        req = item.request
        payload = {"service_ms": {g: round(ms, 3) for g, ms in zip(groups, item.service_ms, strict=True)}}
        budget_ms = budgets[req.qos]
        sent = time.time()
        outcome, reason, answer = "failed", "", None
        try:
            answer = await asyncio.wait_for(_send(path, handle, payload, req.qos, budget_ms), options.request_timeout_s)
            outcome = "completed"
        except AdmissionError as exc:
            outcome, reason = "shed", exc.reason
        except Exception as exc:  # every other error is a failed request, but Serve's own refusal
            if type(exc).__name__ == "BackPressureError":  # max_queued_requests reached: shed at the caller
                outcome, reason = "shed", "backpressure"
            else:
                reason = type(exc).__name__
        latency_ms = (time.time() - sent) * 1000.0
        counters["done" if outcome == "completed" else outcome] += 1
        if not item.measured:
            return
        if records is not None:
            records.append({"arrival_s": req.arrival, "qos": req.qos, "outcome": outcome, "reason": reason,
                            "latency_ms": round(latency_ms, 3), "budget_ms": budget_ms,
                            "group": (answer or {}).get("group")})  # fmt: skip
        st = result.classes.setdefault(req.qos, ClassStats())
        st.requests += 1
        if outcome == "completed":
            st.completed += 1
            st.latencies_ms.append(latency_ms)
            group = (answer or {}).get("group")
            if group in cost_of:
                result.busy_cost += item.service_ms[groups.index(group)] / 1000.0 * cost_of[group]
            if latency_ms <= budget_ms:
                st.within_budget += 1
            attrs = NodeAttrs(zone=str(answer.get("zone")), accelerator=str(answer.get("accelerator")))
            if not policy.classify(RequestMeta(qos=req.qos), sent).allows(attrs):
                result.violations += 1
        elif outcome == "shed":
            st.shed += 1
            result.shed_reasons[reason] = result.shed_reasons.get(reason, 0) + 1
        else:
            st.failed += 1
            result.shed_reasons[f"failed:{reason}"] = result.shed_reasons.get(f"failed:{reason}", 0) + 1

    async def progress(start: float) -> None:
        while True:
            await asyncio.sleep(options.progress_every_s)
            if options.progress is not None:
                t = loop.time() - start
                options.progress(
                    f"  [{path:>7}] t={t:5.1f}s/{scenario.duration_s:.0f}s  sent {counters['sent']:5d}  "
                    f"answered {counters['done']:5d}  shed {counters['shed']:4d}  failed {counters['failed']:3d}"
                )

    await drive_open_loop(workload, one, counters, progress)
    result.total_requests = len(workload.items)
    return result


async def drive_open_loop(
    workload: Workload,
    one: Callable[[Any], Awaitable[None]],
    counters: dict[str, int],
    progress: Callable[[float], Awaitable[None]],
) -> None:
    """Send ``workload``'s items at their arrival times (open loop: ``one(item)`` as a task each, never
    waiting for earlier ones), counting ``counters["sent"]``, with ``progress(start)`` reporting meanwhile;
    returns when every item has finished."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    reporter = loop.create_task(progress(start))
    pending: set[asyncio.Task] = set()  # finished tasks are dropped at once: less for the collector
    gc.collect()
    gc.freeze()  # the heap built so far (Ray, Serve, the workload) is never scanned again during the replay
    try:
        for item in workload.items:
            delay = start + item.request.arrival - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            counters["sent"] += 1
            task = loop.create_task(one(item))
            pending.add(task)
            task.add_done_callback(pending.discard)
        while pending:
            await asyncio.gather(*list(pending))
    finally:
        reporter.cancel()
        gc.unfreeze()


def _merge(into: RunResult, run: RunResult) -> None:
    """Add one round's figures of a path to its total (same classes; measured time summed)."""
    for cls, st in run.classes.items():
        into.classes.setdefault(cls, ClassStats()).merge(st)
    for reason, n in run.shed_reasons.items():
        into.shed_reasons[reason] = into.shed_reasons.get(reason, 0) + n
    into.violations += run.violations
    into.busy_cost += run.busy_cost
    into.total_requests += run.total_requests
    into.measured_s += run.measured_s


def round_order(paths: Sequence[str], k: int) -> list[str]:
    """The order of round ``k``: ``paths`` rotated by ``k`` (each path leads in turn)."""
    n = len(paths)
    return [paths[(i + k) % n] for i in range(n)] if n else []


def _live_policy(scenario: Scenario, paths: Sequence[str], rounds: int, policy: Policy | None) -> Policy:
    """The policy of a live run (the scenario's when none is given), after checking its arguments."""
    from agentic_ray.policies import load_policy

    for path in paths:
        if path not in PATHS:
            raise ValueError(f"path: unknown {path!r}; expected one of {', '.join(PATHS)}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: must be an integer >= 1, got {rounds!r}")
    if policy is None:
        if scenario.policy is None:
            raise ValueError("scenario: a live run needs the scenario's policy (field 'policy')")
        policy = load_policy(scenario.policy)
    return policy


def run_live(
    scenario: Scenario,
    seed: int | None = None,
    paths: Sequence[str] = PATHS,
    policy: Policy | None = None,
    options: LiveOptions | None = None,
    latencies_out: dict[str, dict[str, list[float]]] | None = None,
    records_out: dict[str, list[dict[str, Any]]] | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Replay ``scenario`` on the connected Ray ``rounds`` times per path (the order rotating between
    rounds); the ``agentic-ray sim --json`` document, each path's figures over all its rounds.

    Ray must be initialised (see ``local_ray``). Each path's Serve app is deleted after its run.
    ``latencies_out`` (when given) receives every completed request's latency, per path and class;
    ``records_out`` one record per measured request and path (arrival, class, outcome, latency, budget,
    round).
    """
    from ray import serve

    from agentic_ray.serve._hooks import PROCESS_STATS

    options = options or LiveOptions()
    seed = scenario.seed if seed is None else seed
    policy = _live_policy(scenario, paths, rounds, policy)
    workload = build_workload(scenario, seed, policy)
    totals: dict[str, RunResult] = {}
    decisions: list[float] = []
    timeouts = dict.fromkeys(paths, 0)
    outcomes: dict[Any, int] = {}
    for k in range(rounds):
        for path in round_order(list(paths), k):
            handle = _deploy(path, scenario, policy, options.deploy_timeout_s)
            PROCESS_STATS.reset()
            probes_before = PROBE_TIMEOUTS.count
            try:
                records = records_out.setdefault(path, []) if records_out is not None else None
                mark = len(records) if records is not None else 0
                run = asyncio.run(_replay(path, handle, workload, scenario, policy, options, records))
                for rec in (records or [])[mark:]:
                    rec["round"] = k
            finally:
                serve.delete(f"demo-{path}")
            if path == "agentic":
                decisions.extend(PROCESS_STATS.decision_us)
                for key, n in PROCESS_STATS.outcomes.items():
                    outcomes[key] = outcomes.get(key, 0) + n
            timeouts[path] += PROBE_TIMEOUTS.count - probes_before
            if path in totals:
                _merge(totals[path], run)
            else:
                totals[path] = run
    results: dict[str, Any] = {}
    for path in paths:
        run = totals[path]
        run.decision_ns = [int(us * 1000) for us in sorted(decisions)] if path == "agentic" else []
        results[path] = run.to_json()
        results[path]["rounds"] = rounds
        results[path]["serve_options"] = serve_options(path, scenario) if path != "agentic" else {}
        results[path]["serve_queue_probe_timeouts"] = timeouts[path]
        if timeouts[path] and options.progress is not None:
            options.progress(f"  [{path:>7}] Serve's router: {timeouts[path]} queue-length probes answered late "
                             "(replicas overloaded; Serve's warnings hidden)")  # fmt: skip
        if latencies_out is not None:
            latencies_out[path] = {c: list(st.latencies_ms) for c, st in run.classes.items()}
        if path != "agentic":
            results[path]["decision_us_note"] = "Serve's default router is not instrumented"
        if path == "agentic" and outcomes:
            results[path]["router_outcomes"] = {f"{w}:{o}:{r}": n for (w, o, r), n in sorted(outcomes.items())}
    return {"scenario": scenario.name, "seed": seed, "results": results, "mode": "live", "rounds": rounds,
            "service": "asyncio.sleep of each request's sampled service time (no real model work)"}  # fmt: skip


def print_progress(line: str) -> None:
    """Progress lines go to stderr so ``--json -`` keeps stdout clean."""
    print(line, file=sys.stderr, flush=True)
