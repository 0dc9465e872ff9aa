"""What a replica publishes to the routers: its static facts and its periodic routing stats.

Two typed contracts, each defined once and used by the producer (the replica's gate wrapper in
``serve/``) and the consumer (``routing_state.RoutingState``) alike:

- ``ReplicaMetadata`` -- published once when the replica starts (Serve's ``record_replica_metadata``):
  zone, accelerator, labels, slots, cost, node id, and a prior of the service time per model that
  routers use until the replica has measured its own;
- ``RoutingStats`` -- published every stats period (Serve's ``record_routing_stats``): what executes and
  what is queued (in all, per class priority, per class), each class's queue bound, the concurrency
  limit the replica runs with now, the delay signal behind it, the measured service times per model,
  running totals (started, dropped, rejected, completed, failed), its recent per-call service-time
  samples (``ServiceSample``: sequence number, model, milliseconds) and, when it serves LLM streams, its
  recent completed streams (``StreamReport``: sequence number and a ``streams.StreamSample``), which
  teach routers its prefill and decode rates.

Serve carries both as plain dicts (``record_routing_stats`` must return one), so each has ``to_dict()``
(JSON-ready: string keys, lists) and ``from_dict()``. ``from_dict`` ignores keys it does not know (a
replica of a newer version may publish more) and raises ``ValueError`` naming the field when a known one
holds a bad value. Pure: no Ray, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agentic_ray.scheduling.streams import StreamSample

__all__ = ["ReplicaMetadata", "RoutingStats", "ServiceSample", "StreamReport"]


class ServiceSample(NamedTuple):
    """One measured call: ``seq`` increases per replica, so a router takes each sample once."""

    seq: int
    model: str
    service_ms: float


class StreamReport(NamedTuple):
    """One completed stream a replica publishes: ``seq`` increases per replica (a router takes each
    once); the rest is its ``StreamSample`` (``sample``)."""

    seq: int
    prompt_tokens: int
    output_tokens: int
    prefill_ms: float
    tpot_ms: float | None
    hold_ms: float

    @property
    def sample(self) -> StreamSample:
        return StreamSample(self.prompt_tokens, self.output_tokens, self.prefill_ms, self.tpot_ms, self.hold_ms)


def _whole(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _int(d: Mapping[str, Any], name: str, default: int = 0, minimum: int = 0) -> int:
    value = d.get(name)
    return default if value is None else _whole(value, name, minimum)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return float(value)


def _opt_number(d: Mapping[str, Any], name: str) -> float | None:
    value = d.get(name)
    return None if value is None else _number(value, name)


def _mapping(d: Mapping[str, Any], name: str) -> Mapping[Any, Any]:
    value = d.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: must be a mapping, got {type(value).__name__}")
    return value


def _counts(d: Mapping[str, Any], name: str) -> dict[str, int]:
    return {str(k): _whole(n, f"{name}.{k}") for k, n in _mapping(d, name).items()}


def _service(d: Mapping[str, Any], name: str) -> dict[str, float]:
    return {str(m): _number(v, f"{name}.{m}") for m, v in _mapping(d, name).items()}


@dataclass(frozen=True, slots=True)
class ReplicaMetadata:
    """A replica's static facts. ``service_ms``: a prior per model (ms) until it has measured its own."""

    zone: str = "default"
    accelerator: str = "cpu"
    labels: Mapping[str, str] = field(default_factory=dict)
    slots: int = 1
    cost: float = 1.0
    node_id: str = ""
    service_ms: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise ValueError(f"slots: must be an integer >= 1, got {self.slots!r}")
        _number(self.cost, "cost")

    def to_dict(self) -> dict[str, Any]:
        """The plain dict ``record_replica_metadata`` returns."""
        return {
            "zone": self.zone,
            "accelerator": self.accelerator,
            "labels": dict(self.labels),
            "slots": self.slots,
            "cost": self.cost,
            "node_id": self.node_id,
            "service_ms": dict(self.service_ms),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ReplicaMetadata:
        """Parse a published dict (unknown keys ignored; ``ValueError`` names a bad field)."""
        d = d or {}
        return cls(
            zone=str(d.get("zone") or "default"),
            accelerator=str(d.get("accelerator") or "cpu"),
            labels={str(k): str(v) for k, v in _mapping(d, "labels").items()},
            slots=_int(d, "slots", 1, minimum=1),
            cost=_number(d["cost"], "cost") if d.get("cost") is not None else 1.0,
            node_id=str(d.get("node_id") or ""),
            service_ms=_service(d, "service_ms"),
        )


@dataclass(frozen=True, slots=True)
class RoutingStats:
    """A replica's state as of one stats period (see the module docstring).

    ``queued_by_priority`` maps class priority to queued requests, ``queued_by_class`` and
    ``queue_bounds`` class name to queued requests and to the class's current queue bound. ``limit`` is
    the number of calls the replica runs at once now (its slots, or fewer while the process in front of
    it lags; ``None``: not reported), ``delay_ms`` the delay signal behind that limit. For each class the
    control plane capped here, ``cap_room`` is the cap minus what the class holds (running plus queued)
    and ``class_caps`` the cap itself (so a router can count its own requests sent since against it)."""

    executing: int = 0
    queued: int = 0
    queued_by_priority: Mapping[int, int] = field(default_factory=dict)
    queued_by_class: Mapping[str, int] = field(default_factory=dict)
    queue_bounds: Mapping[str, int] = field(default_factory=dict)
    limit: int | None = None
    delay_ms: float | None = None
    service_ms: Mapping[str, float] = field(default_factory=dict)
    ewma_service_ms: float | None = None
    started_total: int = 0
    dropped_total: int = 0
    rejected_total: int = 0
    completed_total: int = 0
    failed_total: int = 0
    service_samples: tuple[ServiceSample, ...] = ()
    stream_samples: tuple[StreamReport, ...] = ()
    cap_room: Mapping[str, int] = field(default_factory=dict)
    class_caps: Mapping[str, int] = field(default_factory=dict)

    @property
    def ongoing(self) -> int:
        """Executing plus queued."""
        return self.executing + self.queued

    def class_room(self) -> dict[str, int]:
        """Per class, how many more requests the replica's gate would take: its queue bound minus what is
        queued, and no more than what the class's cap leaves (``cap_room``, for a class the control plane
        capped here)."""
        queued = self.queued_by_class
        room = {q: b - queued.get(q, 0) for q, b in self.queue_bounds.items()}
        for q, left in self.cap_room.items():
            room[q] = min(room.get(q, left), left)
        return room

    def capped(self) -> frozenset[str]:
        """The classes whose cap here is what leaves them no room (``Overloaded(reason="class_cap")``)."""
        return frozenset(q for q, left in self.cap_room.items() if left <= 0)

    def to_dict(self) -> dict[str, Any]:
        """The plain, JSON-ready dict ``record_routing_stats`` returns (priority keys as strings;
        ``stream_samples`` only when there are some)."""
        out = {
            "limit": self.limit,
            "delay_ms": self.delay_ms,
            "executing": self.executing,
            "queued": self.queued,
            "queued_by_priority": {str(p): n for p, n in self.queued_by_priority.items()},
            "queued_by_class": dict(self.queued_by_class),
            "queue_bounds": dict(self.queue_bounds),
            "service_ms": dict(self.service_ms),
            "ewma_service_ms": self.ewma_service_ms,
            "started_total": self.started_total,
            "dropped_total": self.dropped_total,
            "rejected_total": self.rejected_total,
            "completed_total": self.completed_total,
            "failed_total": self.failed_total,
            "service_samples": [list(s) for s in self.service_samples],
        }
        if self.stream_samples:
            out["stream_samples"] = [list(s) for s in self.stream_samples]
        if self.cap_room:
            out["cap_room"] = dict(self.cap_room)
        if self.class_caps:
            out["class_caps"] = dict(self.class_caps)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RoutingStats:
        """Parse a published dict (unknown keys ignored; ``ValueError`` names a bad field)."""
        d = d or {}
        by_priority: dict[int, int] = {}
        for p, n in _counts(d, "queued_by_priority").items():
            try:
                by_priority[int(p)] = n
            except ValueError:
                raise ValueError(f"queued_by_priority: priority must be an integer, got {p!r}") from None
        samples = []
        for i, item in enumerate(d.get("service_samples") or ()):
            if not isinstance(item, (list, tuple)) or len(item) != 3:
                raise ValueError(f"service_samples[{i}]: must be [seq, model, service_ms], got {item!r}")
            seq, model, ms = item
            where = f"service_samples[{i}]"
            samples.append(ServiceSample(_whole(seq, where), str(model), _number(ms, where)))
        streams = []
        for i, item in enumerate(d.get("stream_samples") or ()):
            where = f"stream_samples[{i}]"
            if not isinstance(item, (list, tuple)) or len(item) != 6:
                raise ValueError(f"{where}: must be [seq, prompt_tokens, output_tokens, prefill_ms, tpot_ms, "
                                 f"hold_ms], got {item!r}")  # fmt: skip
            seq, prompt, output, prefill, tpot, hold = item
            streams.append(StreamReport(_whole(seq, where), _whole(prompt, where), _whole(output, where),
                                        _number(prefill, where), None if tpot is None else _number(tpot, where),
                                        _number(hold, where)))  # fmt: skip
        return cls(
            executing=_int(d, "executing"),
            queued=_int(d, "queued"),
            queued_by_priority=by_priority,
            queued_by_class=_counts(d, "queued_by_class"),
            queue_bounds=_counts(d, "queue_bounds"),
            cap_room=_counts(d, "cap_room"),
            class_caps=_counts(d, "class_caps"),
            limit=None if d.get("limit") is None else _whole(d["limit"], "limit", 1),
            delay_ms=_opt_number(d, "delay_ms"),
            service_ms=_service(d, "service_ms"),
            ewma_service_ms=_opt_number(d, "ewma_service_ms"),
            started_total=_int(d, "started_total"),
            dropped_total=_int(d, "dropped_total"),
            rejected_total=_int(d, "rejected_total"),
            completed_total=_int(d, "completed_total"),
            failed_total=_int(d, "failed_total"),
            service_samples=tuple(samples),
            stream_samples=tuple(streams),
        )
