"""``DecisionEvent``: one decision of a router or an admission gate, as reported to telemetry.

The one definition of a decision record: the Serve router and the replica gate report each decision as
a ``DecisionEvent`` (through a decision hook: ``serve/_hooks.py``), the telemetry hook buffers them
(``telemetry/hotpath.py``: ``DECISION_FIELDS`` is this tuple's field order) and the decision log writes
them. A NamedTuple, so a record is a plain tuple with names.

Hot path: calling ``DecisionEvent(...)`` runs a Python-level ``__new__`` (with defaults), which costs
more than building a plain tuple of the same values; ``new_event(values)`` (``tuple.__new__`` on the
class) builds the same object from a tuple of all 13 values in field order at about the cost of a
tuple, for the adapters that report a decision per request (figures: the commit that made this).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = ["NO_EXTRA", "DecisionEvent", "new_event"]

NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


class DecisionEvent(NamedTuple):
    """One decision. ``where`` is ``"router"`` or ``"gate"``; ``outcome`` is ``route``, ``shed``,
    ``wait`` (router) or ``start``, ``enqueue``, ``reject``, ``drop``, ``evict`` (gate).

    ``decision_us`` is the time the pure core took to decide (router only, else ``None``);
    ``predicted_ms`` and ``remaining_ms`` are the figures the decision used (``None`` when unknown);
    ``at`` is when it was made (seconds, the caller's clock); ``extra`` carries a sampled trace context
    (``{"trace": carrier}``) when the decision should be traced under its caller's span.
    """

    where: str
    outcome: str
    request_id: Any
    qos: str
    reason: str = ""
    replica_id: str | None = None
    predicted_ms: float | None = None
    remaining_ms: float | None = None
    rule_ids: tuple[str, ...] = ()
    policy_version: str = ""
    decision_us: float | None = None
    at: float = 0.0
    extra: Mapping[str, Any] = NO_EXTRA


new_event = functools.partial(tuple.__new__, DecisionEvent)
"""``new_event((13 values in field order))``: a ``DecisionEvent`` without the Python-level constructor
(no defaults, no checks: give every field, ``NO_EXTRA`` last when there is no extra)."""
