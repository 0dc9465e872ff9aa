"""Value objects shared by the policy engine and everything that uses its decisions.

These are the *compiled* side of a policy: frozen, slot-based and cheap to read on the hot path. The
YAML schema (``schema.py``) compiles into them. Nothing here imports Ray or asyncio or reads a clock:
time (``now``, ``deadline``) is seconds on whatever monotonic clock the caller uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

__all__ = [
    "BreakerSettings",
    "NodeAttrs",
    "QosClass",
    "RequestMeta",
    "RetrySettings",
    "Shedding",
    "StageBudget",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})


class Shedding(str, Enum):
    """When a class's work may be shed. ``first`` is shed before anything else."""

    NEVER = "never"
    WHEN_OVERLOADED = "when_overloaded"
    FIRST = "first"


@dataclass(frozen=True, slots=True)
class QosClass:
    """A compiled QoS class. Lower ``priority`` runs first.

    ``queue_bound`` (max requests queued per replica) and ``max_queue_wait_ms`` come from the policy's
    admission section; when only the wait is given, admission derives a bound from it with Little's law.
    ``shed_threshold`` is the replica utilisation (0..1, queued work / capacity) above which work of this
    class is shed when its shedding mode allows it. ``ttft_ms`` / ``tpot_ms`` (None: not set) are the
    token budgets of the class's streams: time to first token, and time per output token after the first.
    """

    name: str
    priority: int
    budget_ms: float
    shedding: Shedding = Shedding.WHEN_OVERLOADED
    max_queue_wait_ms: float | None = None
    hedge_after_ms: float | None = None
    queue_bound: int | None = None
    shed_threshold: float | None = None
    max_budget_ms: float | None = None  # the longest budget a request of this class may ask for
    ttft_ms: float | None = None  # streams: time to first token
    tpot_ms: float | None = None  # streams: time per output token after the first


@dataclass(frozen=True, slots=True)
class StageBudget:
    """The budget of one workflow stage, in milliseconds."""

    name: str
    budget_ms: float


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Circuit breaker / outlier ejection settings (Envoy-style outlier detection)."""

    consecutive_failures: int = 5
    ejection_s: float = 5.0
    max_ejection_s: float = 300.0
    max_ejected_fraction: float = 0.5
    latency_outlier_factor: float | None = None


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retry budget (Finagle-style): retries at most ``ratio`` of requests plus ``min_per_s``."""

    ratio: float = 0.1
    min_per_s: float = 5.0
    max_attempts: int = 3


_REQUEST_KEYS = ("qos", "budget_ms", "tenant", "data_class", "model", "workflow", "stage")


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What a caller says about one piece of work; the policy classifies it.

    Every field is optional: the policy supplies the class's default budget and the default class.
    ``budget_ms`` must be a finite number > 0 when given (``ValueError`` otherwise).
    """

    qos: str | None = None
    budget_ms: float | None = None
    tenant: str | None = None
    data_class: str | None = None
    model: str | None = None
    workflow: str | None = None
    stage: str | None = None

    def __post_init__(self) -> None:
        if self.budget_ms is not None:
            b = self.budget_ms
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
                raise ValueError(f"budget_ms: must be a finite number > 0, got {b!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> RequestMeta:
        """Build from ``key=value`` pairs (CLI ``--request``, HTTP headers, kwargs).

        Keys may use ``-`` or ``_`` (``data-class``); ``budget_ms`` is parsed as a number. An unknown key
        or a bad value raises ``ValueError`` naming the key.
        """
        kwargs: dict[str, object] = {}
        for raw_key, value in values.items():
            key = str(raw_key).strip().lower().replace("-", "_")
            if key not in _REQUEST_KEYS:
                raise ValueError(f"{raw_key}: unknown request attribute; expected one of {', '.join(_REQUEST_KEYS)}")
            if key == "budget_ms" and value is not None and not isinstance(value, (int, float)):
                try:
                    value = float(str(value))
                except ValueError:
                    raise ValueError(f"budget_ms: not a number: {value!r}") from None
            elif value is not None and key != "budget_ms":
                value = str(value)
            kwargs[key] = value
        return cls(**kwargs)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """The fields that are set, as a plain dict."""
        return {k: getattr(self, k) for k in _REQUEST_KEYS if getattr(self, k) is not None}


@dataclass(frozen=True, slots=True)
class NodeAttrs:
    """What placement rules can see of a node or a replica.

    ``accelerator`` is a kind name: ``"cpu"`` when there is none, else e.g. ``"gpu"``, ``"a100"``.
    ``labels`` are arbitrary string labels (Ray node labels, replica metadata).
    """

    node_id: str = ""
    zone: str = "default"
    accelerator: str = "cpu"
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not isinstance(self.labels, MappingProxyType):
            object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (NodeAttrs, (self.node_id, self.zone, self.accelerator, dict(self.labels)))
