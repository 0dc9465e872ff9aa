"""Helpers for simulator tests: a tiny FIFO router of our own and scenario builders."""

from __future__ import annotations

import textwrap

import pytest

from agentic_ray.scheduling.types import Route, Wait
from agentic_ray.sim import parse_scenario


class FirstFreeRouter:
    """Routes to the first replica with room, else ``Wait`` (held FIFO): a central FIFO queue."""

    name = "first_free"
    replica_discipline = "fifo"

    def wait_order(self, request):
        return (request.arrival,)

    def choose(self, request, replicas, now):
        for r in replicas:
            if r.ongoing < r.max_ongoing:
                return Route(r.replica_id)
        return Wait()

    def on_dispatch(self, request, replica_id, now):
        pass

    def observe(self, request, replica_id, service_ms, latency_ms, ok, now):
        pass


class RoundRobinRouter(FirstFreeRouter):
    """Binds each request to the next replica in turn on arrival (no waiting at the router)."""

    name = "test_rr"

    def __init__(self):
        self.i = 0

    def choose(self, request, replicas, now):
        r = replicas[self.i % len(replicas)]
        self.i += 1
        return Route(r.replica_id)


def scenario_from(text: str, base_dir: str | None = None):
    return parse_scenario(textwrap.dedent(text), "test.yaml", base_dir)


@pytest.fixture
def first_free():
    return FirstFreeRouter()
