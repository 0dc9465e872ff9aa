"""``DecisionEvent``: one decision of a router or an admission gate, as reported to telemetry.

The one definition of a decision record: the Serve router and the replica gate report each decision in
this shape (through a decision hook: ``serve/_hooks.py``), the telemetry hook buffers them
(``telemetry/hotpath.py``: ``DECISION_FIELDS`` is this tuple's field order) and the decision log writes
them. A NamedTuple: a record is a plain tuple with names.

Hot path. Per routed request the adapters push a *plain* tuple of the 13 values in this field order
(``None`` last: no extra) and readers view it with ``DecisionEvent._make`` off the hot path. Building
and buffering a NamedTuple costs about twice as much per record as the plain tuple (measured when this
was written; the figures are in that commit's message): the garbage collector untracks a tuple whose
values are all atomic but never an instance of a tuple subclass, so a buffer of NamedTuples makes every
collection longer, and ``DecisionEvent(...)`` adds a Python-level ``__new__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["DecisionEvent"]


class DecisionEvent(NamedTuple):
    """One decision. ``where`` is ``"router"`` or ``"gate"``; ``outcome`` is ``route``, ``shed``,
    ``wait``, ``refuse`` (router: refused before classification, for who sent it or what it asked),
    ``arrive`` (router, with a decision log: the request's attributes in ``extra["request"]``, for
    replay), ``shadow`` (router: what a shadow policy would have done differently, in ``reason``) or
    ``start``, ``enqueue``, ``reject``, ``drop``, ``evict`` (gate).

    ``decision_us`` is the time the pure core took to decide (router only, else ``None``);
    ``predicted_ms`` and ``remaining_ms`` are the figures the decision used (``None`` when unknown);
    ``at`` is when it was made (seconds, the caller's clock); ``extra`` carries a sampled trace context
    (``{"trace": carrier}``) when the decision should be traced under its caller's span (None: nothing).
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
    extra: Mapping[str, Any] | None = None
