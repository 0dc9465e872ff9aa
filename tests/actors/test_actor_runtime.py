"""The inside of a governed actor, run in this process without Ray: the governed class, the threaded and
the async admission. Threads and an event loop are real; every wait is on an event, not a sleep."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from agentic_ray.actors import _actor_class
from agentic_ray.actors._actor_class import ACTOR_KWARG, ActorSpec, governed_class, is_async_class
from agentic_ray.actors._worker import CONTEXT_KWARG
from agentic_ray.errors import BudgetExhausted, Overloaded
from tests.scheduling.conftest import CLASSES


@pytest.fixture(autouse=True)
def _no_admission_left():
    yield
    _actor_class._ADMISSION = None


def _spec(slots: int = 1, max_queued: int = 8) -> ActorSpec:
    return ActorSpec("Worker", slots, max_queued, CLASSES, {"": ("standard", 1000.0)}, ("rule-a",), "v1", "", False)


def _ctx(qos: str, budget_ms: float = 5000.0) -> list:
    now = time.time()
    return [now + budget_ms / 1000.0, now, qos, None, None, "v1", None, None, None, None]


class Worker:
    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate
        self.order: list[str] = []
        self.blocked = threading.Event()

    def block(self):
        self.blocked.set()
        self.gate.wait(10)
        return "unblocked"

    def work(self, tag):
        self.order.append(tag)
        return tag

    def deadline(self):
        from agentic_ray import current_deadline

        d = current_deadline()
        return None if d is None else d.at

    def outer(self):
        return self.work("inner")  # a call on itself: not gated again (one slot would deadlock)

    def stream(self, n):
        yield from range(n)


def _queued(obj, n: int) -> None:
    deadline = time.monotonic() + 10
    while obj.agentic_actor_stats()["queued"] < n:
        assert time.monotonic() < deadline, obj.agentic_actor_stats()
        time.sleep(0.002)


def _in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, list]:
    out: list = []

    def run():
        try:
            out.append(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the test
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_governed_class_adds_the_context_and_spec_arguments():
    import inspect

    Governed = governed_class(Worker)
    assert Governed.__name__ == "Worker" and issubclass(Governed, Worker)
    assert CONTEXT_KWARG in inspect.signature(Governed.work).parameters
    assert ACTOR_KWARG in inspect.signature(Governed.__init__).parameters
    assert not hasattr(Governed.work, "__wrapped__")
    assert inspect.isgeneratorfunction(Governed.stream)
    assert not is_async_class(Worker)


def test_reserved_parameter_names_are_refused():
    class Bad:
        def f(self, _agentic_ctx=None): ...

    with pytest.raises(TypeError, match="_agentic_ctx"):
        governed_class(Bad)

    class BadInit:
        def __init__(self, _agentic_actor=None): ...

    with pytest.raises(TypeError, match="_agentic_actor"):
        governed_class(BadInit)


def test_ray_method_options_are_kept():
    class WithOptions:
        def two(self):
            return 1, 2

    WithOptions.two.__ray_num_returns__ = 2
    assert governed_class(WithOptions).two.__ray_num_returns__ == 2


def test_critical_call_overtakes_queued_sheddable_calls():
    gate = threading.Event()
    worker = governed_class(Worker)(gate, **{ACTOR_KWARG: _spec()})
    blocker, _ = _in_thread(worker.block, _agentic_ctx=_ctx("standard"))
    assert worker.blocked.wait(10)
    threads = []
    for i in range(3):
        threads.append(_in_thread(worker.work, f"shed{i}", _agentic_ctx=_ctx("sheddable"))[0])
        _queued(worker, i + 1)
    threads.append(_in_thread(worker.work, "critical", _agentic_ctx=_ctx("critical"))[0])
    _queued(worker, 4)
    gate.set()
    for t in [blocker, *threads]:
        t.join(10)
    assert worker.order == ["critical", "shed0", "shed1", "shed2"]
    stats = worker.agentic_actor_stats()
    assert stats["completed_total"] == 5 and stats["queued"] == 0


def test_full_queue_refuses_with_overloaded_and_evicts_for_a_more_critical_call():
    gate = threading.Event()
    worker = governed_class(Worker)(gate, **{ACTOR_KWARG: _spec(max_queued=2)})
    _in_thread(worker.block, _agentic_ctx=_ctx("standard"))
    assert worker.blocked.wait(10)
    first, first_out = _in_thread(worker.work, "s1", _agentic_ctx=_ctx("sheddable", 5000))
    _queued(worker, 1)
    second, second_out = _in_thread(worker.work, "s2", _agentic_ctx=_ctx("sheddable", 4000))
    _queued(worker, 2)
    with pytest.raises(Overloaded) as info:
        worker.work("s3", _agentic_ctx=_ctx("sheddable"))  # refused at once, in this thread
    assert info.value.reason == "queue_full"
    crit, crit_out = _in_thread(worker.work, "critical", _agentic_ctx=_ctx("critical"))
    first.join(10)  # the latest-deadline sheddable call is evicted
    assert isinstance(first_out[0], Overloaded) and first_out[0].reason == "evicted"
    gate.set()
    crit.join(10)
    second.join(10)
    assert worker.order == ["critical", "s2"]
    assert crit_out == ["critical"] and second_out == ["s2"]


def test_a_call_whose_deadline_passes_while_queued_never_runs():
    gate = threading.Event()
    worker = governed_class(Worker)(gate, **{ACTOR_KWARG: _spec()})
    _in_thread(worker.block, _agentic_ctx=_ctx("standard"))
    assert worker.blocked.wait(10)
    t, out = _in_thread(worker.work, "late", _agentic_ctx=_ctx("standard", 300))
    t.join(10)
    assert isinstance(out[0], BudgetExhausted) and out[0].reason == "deadline_passed_in_queue"
    gate.set()
    assert worker.work("after", _agentic_ctx=_ctx("standard")) == "after"
    assert worker.order == ["after"]
    assert worker.agentic_actor_stats()["dropped_total"] == 1


def test_context_deadline_is_current_inside_and_self_calls_are_not_gated():
    worker = governed_class(Worker)(None, **{ACTOR_KWARG: _spec()})
    ctx = _ctx("standard", 2000)
    assert worker.deadline(_agentic_ctx=ctx) == pytest.approx(ctx[0])
    assert worker.outer(_agentic_ctx=_ctx("standard")) == "inner"
    # without a context (a plain Ray handle): the spec's default class and budget
    before = time.time()
    assert before < worker.deadline() <= time.time() + 1.0 + 0.01
    assert list(worker.stream(3, _agentic_ctx=_ctx("standard"))) == [0, 1, 2]
    assert worker.agentic_actor_stats()["executing"] == 0


def test_outside_a_governed_actor_methods_run_directly():
    worker = governed_class(Worker)(None)  # no spec: a plain instance, nothing installed
    assert worker.work("x") == "x" and worker.agentic_actor_stats() is None


class AsyncWorker:
    def __init__(self):
        self.order: list[str] = []
        self.gate = asyncio.Event()
        self.blocked = asyncio.Event()

    async def block(self):
        self.blocked.set()
        await self.gate.wait()

    async def work(self, tag):
        self.order.append(tag)
        return tag

    def sync_work(self, tag):
        self.order.append(tag)
        return tag

    async def tokens(self, n):
        for i in range(n):
            yield i


def test_async_actor_orders_by_priority_and_expires():
    assert is_async_class(AsyncWorker)

    async def main():
        worker = governed_class(AsyncWorker)(**{ACTOR_KWARG: _spec(max_queued=8)})
        blocker = asyncio.ensure_future(worker.block(_agentic_ctx=_ctx("standard")))
        await worker.blocked.wait()
        shed = [asyncio.ensure_future(worker.work(f"s{i}", _agentic_ctx=_ctx("sheddable"))) for i in range(2)]
        late = asyncio.ensure_future(worker.sync_work("late", _agentic_ctx=_ctx("standard", 30)))
        await asyncio.sleep(0)
        crit = asyncio.ensure_future(worker.work("critical", _agentic_ctx=_ctx("critical")))
        await asyncio.sleep(0)
        assert worker.agentic_actor_stats()["queued"] == 4
        with pytest.raises(BudgetExhausted):
            await late
        worker.gate.set()
        await asyncio.gather(blocker, crit, *shed)
        assert [i async for i in worker.tokens(3, _agentic_ctx=_ctx("standard"))] == [0, 1, 2]
        return worker.order

    assert asyncio.run(main()) == ["critical", "s0", "s1"]


def test_the_governed_class_still_sees_its_admission_after_pickling_by_value():
    """Ray pickles the governed class by value: the wrappers must reach the module's admission, not a
    copy of it taken when they were pickled."""
    cloudpickle = pytest.importorskip("ray.cloudpickle")

    Governed = cloudpickle.loads(cloudpickle.dumps(governed_class(Worker)))
    worker = Governed(None, **{ACTOR_KWARG: _spec()})
    assert worker.work("x", _agentic_ctx=_ctx("critical")) == "x"
    stats = worker.agentic_actor_stats()
    assert stats is not None and stats["started_total"] == 1 and stats["completed_total"] == 1
