"""The worker side of ``@agentic_ray.task`` without a cluster: the context argument and the signature Ray
checks, the runner's three paths, the typed events and their wire form, and cheap worker start-up."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time

import pytest

from agentic_ray.actors import _worker as worker
from agentic_ray.actors._worker import (
    CONTEXT_KWARG,
    EVENT_TYPES,
    Ended,
    Placed,
    Refused,
    Started,
    TaskContext,
    decode_events,
    encode_events,
    make_worker_function,
    worker_signature,
)
from agentic_ray.errors import BudgetExhausted


def _ctx(deadline_at: float, submitted_at: float, **fields) -> TaskContext:
    values = dict(qos="critical", workflow="fraud", stage="score", policy_version="3", traceparent=None)
    values.update(fields)
    return TaskContext(deadline_at=deadline_at, submitted_at=submitted_at, request_id=None, **values)


def test_importing_the_worker_side_stays_cheap():
    """A Ray worker unpickling a task imports ``_worker``: not Ray itself, the policy engine, pydantic,
    YAML, OpenTelemetry, or ``agentic_ray.control`` (whose package pulls in the policy engine)."""
    code = (
        "import sys, agentic_ray.actors._worker\n"
        "heavy = ('ray', 'pydantic', 'yaml', 'opentelemetry', 'agentic_ray.policies', 'agentic_ray.control')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_signature_gains_the_keyword_only_context_before_var_keyword():
    def f(a, /, b, *args, c=1, **kw):
        return a

    sig = worker_signature(f)
    assert list(sig.parameters) == ["a", "b", "args", "c", CONTEXT_KWARG, "kw"]
    ctx_param = sig.parameters[CONTEXT_KWARG]
    assert ctx_param.kind is inspect.Parameter.KEYWORD_ONLY and ctx_param.default is None

    def g(x, y=2):
        return x

    sig = worker_signature(g)
    assert list(sig.parameters) == ["x", "y", CONTEXT_KWARG]
    sig.bind(1, **{CONTEXT_KWARG: [0.0]})  # what Ray checks at .remote(): the context is accepted
    sig.bind(1, y=3)  # and a call without one too
    with pytest.raises(TypeError):
        sig.bind(1, 2, 3)  # the user's own signature still holds
    assert worker_signature(max) is None  # no readable signature: Ray accepts any arguments, as for max


def test_a_parameter_named_like_the_context_is_refused_at_decoration():
    import agentic_ray

    def clash(x, _agentic_ctx=None):
        return x

    with pytest.raises(TypeError, match=r"_agentic_ctx.*reserved"):
        worker_signature(clash)
    with pytest.raises(TypeError, match=r"_agentic_ctx.*reserved"):
        agentic_ray.task(qos="standard")(clash)
    with pytest.raises(TypeError, match=r"_agentic_ctx.*reserved"):
        agentic_ray.task(clash)

    def fine(x, **kwargs):  # a **kwargs catch-all is no clash: the wrapper takes the context first
        return x

    assert agentic_ray.task(fine).__name__ == "fine"


def test_runner_shows_the_signature_and_runs_unchecked_without_context(monkeypatch):
    events: list = []
    monkeypatch.setattr(worker, "_account", lambda ev, node_id=None: events.append(ev))

    def add(a, b=1):
        """Adds."""
        return a + b

    runner = make_worker_function(add)
    assert inspect.signature(runner) == worker_signature(add)
    assert (runner.__name__, runner.__qualname__, runner.__doc__) == ("add", add.__qualname__, "Adds.")
    assert not hasattr(runner, "__wrapped__")  # Ray would pickle add by reference
    assert runner(2, b=3) == 5  # plain Ray use of the wrapped function: no context, no accounting
    assert events == []


def test_runner_with_context_runs_in_the_deadline_scope_and_accounts_start_and_end(monkeypatch):
    from agentic_ray._budget import current_deadline

    events: list = []
    monkeypatch.setattr(worker, "_account", lambda ev, node_id=None: events.append(ev))
    now = time.time()
    ctx = _ctx(deadline_at=now + 60.0, submitted_at=now - 0.01)

    def seen(x, **kwargs):
        return x, current_deadline().at, kwargs

    runner = make_worker_function(seen)
    x, deadline, kwargs = runner(7, extra=1, **{CONTEXT_KWARG: ctx.to_wire()})
    assert (x, deadline, kwargs) == (7, ctx.deadline_at, {"extra": 1})  # the context is not passed on
    assert current_deadline() is None
    assert events[0] == Started("critical")
    end = events[1]
    assert type(end) is Ended and (end.qos, end.workflow, end.stage, end.ok, end.met) == (
        "critical",
        "fraud",
        "score",
        True,
        True,
    )
    assert end.latency_ms >= 10.0 and 0 < end.budget_left_ms <= 60_000.0 and end.service_ms >= 0

    def boom():
        raise RuntimeError("user error")

    events.clear()
    with pytest.raises(RuntimeError, match="user error"):
        make_worker_function(boom)(**{CONTEXT_KWARG: ctx.to_wire()})
    assert [type(e) for e in events] == [Started, Ended] and events[1].ok is False


def test_runner_refuses_a_task_whose_deadline_passed(monkeypatch):
    events: list = []
    monkeypatch.setattr(worker, "_account", lambda ev, node_id=None: events.append(ev))
    calls: list = []
    runner = make_worker_function(lambda: calls.append(1))
    now = time.time()
    ctx = _ctx(deadline_at=now - 0.05, submitted_at=now - 0.2)._replace(request_id="abc-1")
    with pytest.raises(BudgetExhausted, match=r"request abc-1.*deadline passed") as info:
        runner(**{CONTEXT_KWARG: ctx.to_wire()})
    assert info.value.reason == "deadline_passed" and calls == []
    (refused,) = events
    assert type(refused) is Refused and (refused.qos, refused.workflow, refused.stage) == ("critical", "fraud", "score")
    assert refused.latency_ms >= 200.0


def test_async_functions_run_to_completion():
    async def double(x):
        return 2 * x

    assert make_worker_function(double)(21) == 42


def test_context_and_events_round_trip_through_their_wire_form():
    ctx = _ctx(1_800_000_000.123456, 1_799_999_999.5, traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    wire = ctx.to_wire()
    assert type(wire) is list and all(v is None or type(v) in (str, float) for v in wire)  # msgpack-native
    assert TaskContext.from_wire(wire) == ctx and type(TaskContext.from_wire(wire)) is TaskContext
    with pytest.raises(TypeError):
        TaskContext.from_wire(wire[:-1])
    events = [
        Placed("critical", 1_800_000_000.0),
        Started("critical"),
        Ended("critical", "fraud", "score", 1.5, 2.5, True, False, -3.0),
        Refused("standard", None, None, 9.0),
    ]
    rows = encode_events(events)
    assert all(type(r) is list for r in rows) and [r[0] for r in rows] == [0, 1, 2, 3]
    back = decode_events(rows)
    assert back == events and [type(e) for e in back] == list(EVENT_TYPES)
    assert back[2].budget_left_ms == -3.0


def test_agent_keys_stage_tasks_by_workflow_and_stage():
    from agentic_ray.actors._node_agent import NodeAgentImpl

    agent = NodeAgentImpl("n" * 56, {"zone": "eu-west"})
    applied = agent.record_batch(
        [
            Started("critical"),
            Ended("critical", "fraud", "score", 4.0, 9.0, True, True, 10.0),
            Refused("critical", "fraud", None, 30.0),
            ("end", "critical"),  # not an event type: skipped, not counted
        ]
    )
    assert applied == 3
    summaries = agent.take_report().summaries
    assert summaries["critical|fraud/score"].count == 1 and summaries["critical|fraud"].missed == 1
    assert agent.snapshot().service_ms == {"critical|fraud/score": 4.0}


def test_a_stage_task_fixes_its_deadline_when_it_starts(monkeypatch):
    """A stage's context carries its workflow run's deadline and its share; the worker gives the stage
    its share of what the run has left at start, and runs the stage inside the run's scope."""
    from agentic_ray._budget import current_deadline, current_workflow

    seen = {}

    def stage():
        seen["deadline"], seen["run"] = current_deadline().at, current_workflow()
        return "ok"

    events = []
    monkeypatch.setattr(worker, "_account", lambda ev, node_id=None: events.append(ev))
    runner = make_worker_function(stage)
    now = time.time()
    ctx = TaskContext(now + 10.0, now, "standard", "rag", "rerank", "v1", None, None, now + 10.0, 0.25).to_wire()
    assert runner(_agentic_ctx=ctx) == "ok"
    assert seen["deadline"] == pytest.approx(now + 2.5, abs=0.05)  # a quarter of the ~10 s left
    assert seen["run"].name == "rag" and seen["run"].deadline == pytest.approx(now + 10.0)
    ended = events[-1]
    assert ended.met and ended.budget_left_ms == pytest.approx(2500, abs=60)
