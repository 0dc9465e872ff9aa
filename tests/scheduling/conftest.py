"""Small builders for scheduling tests."""

from __future__ import annotations

import itertools

import pytest

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.types import Request

CLASSES = {
    "critical": QosClass("critical", priority=0, budget_ms=500, shedding=Shedding.NEVER),
    "standard": QosClass("standard", priority=1, budget_ms=1000, shedding=Shedding.WHEN_OVERLOADED),
    "sheddable": QosClass("sheddable", priority=2, budget_ms=5000, shedding=Shedding.FIRST),
}

_ids = itertools.count()


def req(
    qos: str = "standard",
    *,
    now: float = 0.0,
    budget_ms: float | None = None,
    model: str = "default",
    id=None,
    allows=None,
    deadline: float | None = None,
    classes=CLASSES,
    **kw,
) -> Request:
    """A request of class ``qos`` arriving at ``now`` with the class budget (or ``budget_ms``)."""
    cls = classes[qos]
    b = cls.budget_ms if budget_ms is None else budget_ms
    return Request(
        id=next(_ids) if id is None else id,
        qos=qos,
        priority=cls.priority,
        arrival=now,
        deadline=now + b / 1000.0 if deadline is None else deadline,
        model=model,
        shedding=cls.shedding,
        hedge_after_ms=cls.hedge_after_ms,
        allows=allows,
        **kw,
    )


@pytest.fixture
def classes():
    return dict(CLASSES)
